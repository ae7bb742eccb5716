"""What states, the CLI and the daemon need from an event bus: :class:`EventBus`.

The in-process bus (:class:`isolde.events.bus.InProcessEventBus`) is one
backend; another (the PostgreSQL plugin's, shared by workers) implements the
same protocol and proves it
by running :class:`isolde.conformance.events.EventBusConformance` against
itself.  The delivery rules every backend keeps are in ``docs/events.md``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from .filters import EventFilter

Received = list[tuple[int, dict[str, Any]]]
"""What a wait gives back: ``(index of the filter, event)`` pairs, in filter order."""


class EventBus(Protocol):
    """Publish / wait / subscribe for CloudEvents, separate per namespace.

    Events are dicts in CloudEvents' JSON format; ``publish`` checks and
    completes them (:func:`isolde.events.normalize`).  Waits and sleeps raise
    :class:`isolde.events.Cancelled` when the bus closes or ``interrupt`` names
    their owner.  Every method is safe to call from any thread.
    """

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        ...

    def publish(self, namespace: str, event: Mapping[str, Any], *, retain_for: float | None = None) -> dict[str, Any]:
        """Deliver ``event`` to every current waiter it matches, else keep it for
        ``retain_for`` seconds (default: the bus's retention); returns the event as delivered."""
        ...

    def publish_later(self, namespace: str, event: Mapping[str, Any], delay: float) -> dict[str, Any]:
        """Check ``event`` now, publish it after ``delay`` seconds (dropped if the bus closes first)."""
        ...

    def pending(self, namespace: str) -> list[dict[str, Any]]:
        """Events kept in ``namespace`` because nobody has taken them yet, oldest first."""
        ...

    def wait(
        self,
        namespace: str,
        filters: Sequence[EventFilter],
        timeout: float | None,
        *,
        all: bool = False,
        owner: str | None = None,
    ) -> Received | None:
        """Block until an event matches one filter (``all``: one for each), kept
        events first; None when ``timeout`` passes (0: do not block, None: forever)."""
        ...

    def sleep(self, seconds: float, *, owner: str | None = None, namespace: str | None = None) -> None:
        """Sleep unless the bus closes or ``interrupt(owner)`` comes first."""
        ...

    def interrupt(self, owner: str, reason: str = "the instance was cancelled") -> int:
        """Wake every wait and sleep of ``owner`` with ``Cancelled(reason)``; returns how many."""
        ...

    def waiting(self, namespace: str) -> list[tuple[str | None, list[EventFilter], bool]]:
        """``(owner, filters, all)`` of each wait and sleep in progress in ``namespace``."""
        ...

    def subscribe(
        self,
        namespace: str,
        filters: Sequence[EventFilter],
        callback: Callable[[Received], None],
        *,
        all: bool = False,
    ) -> Callable[[], None]:
        """Call ``callback`` for every matching event without taking it from
        waiters; returns the function that ends the subscription."""
        ...

    def close(self) -> None:
        """Cancel every wait and sleep, drop delayed events and subscriptions; idempotent."""
        ...

    def cancel_all(self) -> None:
        """What the engine calls first when it closes: every waiting instance wakes cancelled."""
        ...
