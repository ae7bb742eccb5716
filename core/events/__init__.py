"""CloudEvents between workflows: the event, filters, the bus protocol and the
in-process bus (one per ``Engine``), and ``isolde run --event`` arguments.

Modules: ``cloudevents`` (checking and completing an event), ``filters``
(:class:`EventFilter`), ``protocol`` (:class:`EventBus`, what states, the CLI
and the daemon use), ``bus`` (:class:`InProcessEventBus`), ``args``
(``--event`` arguments), ``errors``.  The delivery rules are in
``isolde.events.bus`` and docs/events.md.
"""

from __future__ import annotations

from .args import CLI_SOURCE, parse_event_args
from .bus import InProcessEventBus
from .cloudevents import SPECVERSION, normalize, now_rfc3339
from .errors import CANCELLED, Cancelled, EventError
from .filters import EventFilter
from .protocol import EventBus, Received

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
