"""The seam through which a plugin makes several daemons one: ``DaemonServices``.

A plugin answering the ``isolde_daemon_services`` hook (the PostgreSQL one does when the
store is PostgreSQL) gives the daemon its instance records, its cron scheduler and its
event bus and its ``eventsAnd`` gatherings, shared by every worker on the same database, and asks the daemon to look for
orphaned instances every ``claim_interval`` seconds.  Without such a plugin the daemon
keeps its single-host services (LMDB records, a cron thread, the in-process bus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:  # logging too: a plugin that names this class at import does not load it
    import logging

    from ..events import EventBus
    from .records import InstanceRecords
    from .triggers import CronScheduler, FireFn, Gatherings

__all__ = ["DaemonServices"]


class DaemonServices(Protocol):
    """What a plugin gives a daemon that shares its work with other daemons.

    The daemon calls ``start`` once before it recovers anything (the worker announces
    itself and begins renewing its lease), then ``records``, ``scheduler``, ``gatherings``
    and ``events`` once each, and ``close`` after its instances stopped (the worker's claims are then
    released to the others at once)."""

    @property
    def claim_interval(self) -> float:
        """Seconds between two looks for orphaned instances (a dead worker's), > 0."""
        ...

    def start(self) -> None: ...

    def records(self, *, keep: int, log: logging.Logger) -> InstanceRecords: ...

    def scheduler(self, fire: FireFn, log: logging.Logger) -> CronScheduler: ...

    def events(self, make_local: Callable[[], EventBus]) -> EventBus:
        """The engine's event bus; ``make_local`` makes the in-process one it may wrap."""
        ...

    def gatherings(self) -> Gatherings | None:
        """Where ``eventsAnd`` starts gather their events, shared by the workers (None:
        each daemon in its own memory)."""
        ...

    def close(self) -> None: ...
