"""Events given on the command line: ``isolde run --event``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from ..variables import parse_json
from .cloudevents import kind, normalize
from .errors import EventError

CLI_SOURCE = "isolde-cli"


def parse_event_args(values: Iterable[str], read_stdin: Callable[[], str] | None = None) -> list[dict[str, Any]]:
    """Events given as ``isolde run --event``: JSON objects (or arrays of them), ``@FILE`` or ``@-`` (stdin).

    A missing ``source`` becomes ``isolde-cli``; the bus fills in ``id``,
    ``specversion`` and ``time``.  Raises :class:`EventError` naming the bad argument.
    """
    events: list[dict[str, Any]] = []
    for n, raw in enumerate(values, 1):
        where = f"--event #{n}"
        text = raw
        if raw.startswith("@"):
            name = raw[1:]
            where = f"--event {raw}"
            try:
                if name == "-":
                    if read_stdin is None:
                        raise EventError(f"{where}: standard input is not available")
                    text = read_stdin()
                else:
                    text = Path(name).read_text(encoding="utf-8")
            except OSError as exc:
                raise EventError(f"{where}: cannot read {name}: {exc.strerror or exc}") from None
        try:
            value = parse_json(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError(
                f"{where}: not valid JSON ({exc}); give an object such as "
                '\'{"type": "my.event", "data": {"x": 1}}\''
            ) from None
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                raise EventError(f"{where}: an event must be a JSON object, got {kind(item)}")
            item = dict(item)
            item.setdefault("source", CLI_SOURCE)
            try:
                events.append(normalize(item))
            except EventError as exc:
                raise EventError(f"{where}: {exc}") from None
    return events
