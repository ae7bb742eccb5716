"""CloudEvents between workflows: the event, filters, the bus protocol and the
in-process bus (one per ``Engine``), and ``isolde run --event`` arguments.

Modules: ``cloudevents`` (checking and completing an event), ``filters``
(:class:`EventFilter`), ``protocol`` (:class:`EventBus`, what states, the CLI
and the daemon use), ``bus`` (:class:`InProcessEventBus`), ``args``
(``--event`` arguments), ``errors``.  The delivery rules are in
``isolde.events.bus`` and docs/events.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .args import CLI_SOURCE, parse_event_args
    from .bus import InProcessEventBus
    from .cloudevents import SPECVERSION, normalize, now_rfc3339
    from .errors import CANCELLED, Cancelled, EventError
    from .filters import EventFilter
    from .protocol import EventBus, Received

# Each name is imported from its module on first use: a state plugin that names
# ``Cancelled`` does not load the bus, the filters and the argument parser at start.
_HOME = {
    "CLI_SOURCE": "args", "parse_event_args": "args", "InProcessEventBus": "bus", "SPECVERSION": "cloudevents",
    "normalize": "cloudevents", "now_rfc3339": "cloudevents", "CANCELLED": "errors", "Cancelled": "errors",
    "EventError": "errors", "EventFilter": "filters", "EventBus": "protocol", "Received": "protocol",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CANCELLED",
    "CLI_SOURCE",
    "Cancelled",
    "EventBus",
    "EventError",
    "EventFilter",
    "InProcessEventBus",
    "Received",
    "SPECVERSION",
    "normalize",
    "now_rfc3339",
    "parse_event_args",
]
