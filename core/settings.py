"""The configuration's tables, each defined once with its keys' types (issue: typed config).

``isolde.toml`` (or ``[tool.isolde]`` in pyproject.toml) is checked against these
definitions when it is read: an unknown table or key, or a value of the wrong type,
anywhere, is one clear line naming the file, the table, the key and what is expected,
with a did-you-mean.  Modules then read values that are known to be well-formed.
A plugin's own table (``[plugins.NAME]``) and ``[images."NAME"]`` (the runners
plugin's) are checked by their plugins at engine start (``isolde_configure``).
"""

from __future__ import annotations

import math

from .errors import ConfigError
from .loopback import loopback_address
from .records import Frozen

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeAlias

    Check: TypeAlias = Callable[[Any], str | None]
    """Returns None when a value is fine, else what was expected ("a positive integer")."""


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)
        if ok:
            return None
        if lo is not None and hi is not None:
            return f"an integer from {lo} to {hi}"
        return "a positive integer" if lo == 1 else "an integer" if lo is None else f"an integer of at least {lo}"
    return check


def _number(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "a number of 0 or more"


def _positive(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "a positive, finite number"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _pg_url(v: Any) -> str | None:
    if isinstance(v, str) and v.startswith(("postgresql://", "postgres://")):
        return None
    return 'a PostgreSQL URL starting with postgresql:// (e.g. "postgresql://user@127.0.0.1:5432/isolde")'


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def _path(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a path (a non-empty string)"


def _seconds(v: Any) -> str | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return None
    from .durations import parse_duration  # only when a table sets a duration

    if isinstance(v, str) and (parse_duration(v) or 0) > 0:
        return None
    return 'a positive number of seconds or an ISO-8601 duration like "PT5M"'


def _loopback(v: Any) -> str | None:
    if isinstance(v, str) and loopback_address(v) is not None:
        return None
    return "a loopback address (127.x.x.x, ::1 or localhost): it serves variables to anyone who can reach it"


def _choice(*values: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in values else " or ".join(f'"{x}"' for x in values)
    return check


def _names(what: str, example: str) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, list) and all(isinstance(n, str) for n in v)
        return None if ok else f"a list of {what}, e.g. {example}"
    return check


class Table(Frozen):
    """One table: its keys and their checks; ``open`` tables take any key (``[secrets]``)."""

    __slots__ = ("keys", "open", "subtables")
    __match_args__ = ("keys", "open", "subtables")
    keys: dict[str, Check]
    open: Check | None
    """For a table of free names: the check of each value."""
    subtables: bool
    """Whether other keys may hold tables owned by someone else (``[plugins.NAME]``)."""

    def __init__(self, keys: dict[str, Check], open: Check | None = None, subtables: bool = False) -> None:
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "open", open)
        object.__setattr__(self, "subtables", subtables)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(keys={self.keys!r}, open={self.open!r}, subtables={self.subtables!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Table = other
            return (self.keys, self.open, self.subtables) == (o.keys, o.open, o.subtables)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.keys, self.open, self.subtables))


DEFAULT_LIMITS: dict[str, float | int] = {
    "jq_timeout": 5.0,  # seconds a guarded jq program may run
    "jq_max_output": 64 << 20,  # bytes of jq output from a guarded program
    "jq_workers": 4,  # jq worker processes for guarded programs (started as needed)
    "max_steps": 10_000,  # state transitions per instance
    "max_input_bytes": 32 << 20,  # instance input
    "max_data_bytes": 64 << 20,  # state data after each state (JSON), so a loop can't grow it without bound
    "max_variable_bytes": 64 << 20,  # one variable value
    "max_yaml_bytes": 1 << 20,  # one workflow document
    "max_yaml_nodes": 100_000,  # YAML nodes after alias expansion
    "max_event_bytes": 1 << 20,  # one CloudEvent, as JSON
    "event_retain_count": 100,  # events kept per namespace while no instance waits for them
    "event_retain_seconds": 60,  # how long such an event is kept
    "lock_wait": 30.0,  # seconds an instance waits for a locked variable (lock: true)
    "max_subflow_depth": 10,  # subflows nested in subflows (direktiv.limits.depth)
    "foreach_concurrency": 10,  # calls of one foreach state running at once
    "archive_max_members": 10_000,  # entries of one tar / tar.gz (files: and out/ directories)
    "archive_max_member_bytes": 1 << 30,  # one file inside an archive
    "archive_max_total_bytes": 4 << 30,  # all files of one archive, unpacked
}

TABLES: dict[str, Table] = {
    "store": Table({"durability": _choice("full", "fast"), "blob_threshold": _int(1), "url": _pg_url}),
    "limits": Table({name: _positive for name in DEFAULT_LIMITS}),
    "actions": Table({"timeout": _seconds, "startup_timeout": _seconds, "keep_folders": _bool, "temp_dir": _path,
                      "pass_env": _names("environment variable names", '["HTTPS_PROXY"]')}),
    "sidecar": Table({"host": _loopback, "port": _int(0, 65535), "pinned": _bool, "max_body": _int(1), "max_log": _int(1),
                      "request_timeout": _positive}),
    "daemon": Table({
        "api": _str, "token": _str, "delete_vars_with_files": _bool, "settle": _number, "delete_grace": _number,
        "max_running": _int(1), "max_queue": _int(1), "keep_instances": _int(1), "keep_log_lines": _int(0),
        "stop_grace": _number, "status_interval": _number, "max_wait": _number,
    }),
    "history": Table({"enabled": _bool, "keep": _int(0), "max_age": _seconds, "max_data_bytes": _int(0),
                      "max_log_lines": _int(0), "flush_interval": _positive,
                      "with_state_commit": _bool}),
    "log": Table({"format": _choice("text", "json"), "progress": _bool}),
    "secrets": Table({}, open=lambda v: None if isinstance(v, (str, int, float, bool)) else "a string"),
    "images": Table({}, subtables=True),  # [images."NAME"]: checked by the runners plugin
    "plugins": Table({"disable": _names("plugin names", '["checksum"]')}, subtables=True),  # [plugins.NAME]: each plugin's own
}
TOP: dict[str, Check] = {"data_dir": _path}


def check(data: dict[str, Any], where: str) -> None:
    """Raise ``ConfigError`` for the first unknown or ill-typed setting of ``data``."""
    for key, value in data.items():
        if key in TOP:
            _check_value(TOP[key], value, f"{where}: {key}")
            continue
        table = TABLES.get(key)
        if table is None:
            raise ConfigError(f"{where}: unknown setting '{key}'{_hint(key, [*TOP, *TABLES])} "
                              f"(known: {', '.join(sorted([*TOP, *TABLES]))})")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a table ([{key}]), got {type(value).__name__}")
        _check_table(key, table, value, where)


def _check_table(name: str, table: Table, values: dict[str, Any], where: str) -> None:
    for key, value in values.items():
        label = f"{where}: [{name}] {key}"
        known = table.keys.get(key)
        if known is not None:
            _check_value(known, value, label)
        elif table.open is not None:
            _check_value(table.open, value, label)
        elif table.subtables and isinstance(value, dict):
            continue
        else:
            raise ConfigError(f"{where}: unknown setting [{name}] '{key}'{_hint(key, list(table.keys))} "
                              f"(known: {', '.join(sorted(table.keys)) or 'none'})")


def _check_value(check: Check, value: Any, label: str) -> None:
    expected = check(value)
    if expected is not None:
        raise ConfigError(f"{label} must be {expected}, got {value!r}")


def _hint(word: str, choices: list[str]) -> str:
    from difflib import get_close_matches  # only for a hint on an error

    close = get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


__all__ = ["DEFAULT_LIMITS", "TABLES", "TOP", "Table", "check"]
