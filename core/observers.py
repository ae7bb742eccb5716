"""Observation points of running instances: what metrics and terminal progress listen to.

The instance loop, the instance context and the action machinery call an ``Observer``
(``Services.observer``) at a few points: an instance starts and ends, a state is done,
an action call ends, a state's writes are committed, a state reports progress
(``ctx.progress``).  Without an observer (the default for an ``Engine`` nobody asked for
metrics) each point costs one ``is None`` test.  Observers are called in the instance's
own thread, so they must be quick and must not raise; ``Observers`` fans one call out to
several.  ``ctx`` is the instance's context (``namespace``, ``workflow``,
``instance_id``, ``state``, ``depth``).
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["Observer", "Observers", "combine"]


class Observer:
    """Does nothing at every point; a listener overrides what it needs."""

    def instance_started(self, ctx: Any) -> None:
        """An instance (or a subflow's child instance: ``ctx.depth > 0``) starts."""

    def instance_ended(self, ctx: Any, status: str, error_code: str | None, seconds: float) -> None:
        """It ended: ``status`` is ``complete``, ``failed`` or ``cancelled``."""

    def state_done(self, ctx: Any, state_type: str, seconds: float) -> None:
        """A state of it is done (its transform and commit included), whatever its outcome."""

    def action_done(self, ctx: Any, function: str, seconds: float, error_code: str | None) -> None:
        """One action call ended (its retries included); ``error_code`` None: it succeeded."""

    def committed(self, seconds: float) -> None:
        """A state's writes were committed to the variable store (durably, by default)."""

    def progress(self, ctx: Any, done: int, total: int, failed: int) -> None:
        """A state reports how far it is (``foreach``, ``parallel``: calls ended of all)."""


class Observers(Observer):
    """Several observers, called in order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def instance_started(self, ctx: Any) -> None:
        for o in self.observers:
            o.instance_started(ctx)

    def instance_ended(self, ctx: Any, status: str, error_code: str | None, seconds: float) -> None:
        for o in self.observers:
            o.instance_ended(ctx, status, error_code, seconds)

    def state_done(self, ctx: Any, state_type: str, seconds: float) -> None:
        for o in self.observers:
            o.state_done(ctx, state_type, seconds)

    def action_done(self, ctx: Any, function: str, seconds: float, error_code: str | None) -> None:
        for o in self.observers:
            o.action_done(ctx, function, seconds, error_code)

    def committed(self, seconds: float) -> None:
        for o in self.observers:
            o.committed(seconds)

    def progress(self, ctx: Any, done: int, total: int, failed: int) -> None:
        for o in self.observers:
            o.progress(ctx, done, total, failed)


def combine(current: Observer | None, added: Observer) -> Observer:
    """``current`` with ``added`` after it (one observer needs no fan-out)."""
    if current is None:
        return added
    if isinstance(current, Observers):
        return Observers([*current.observers, added])
    return Observers([current, added])
