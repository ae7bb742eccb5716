"""The in-process event bus (:class:`InProcessEventBus`), one per ``Engine``.

Direktiv routes CloudEvents between workflows of a namespace: ``generateEvent``
publishes one, ``consumeEvent`` / ``eventsAnd`` / ``eventsXor`` wait for them,
and workflows whose ``start`` is an event type are started by them.  isolde keeps
that model inside one process: ``engine.events`` is an :class:`InProcessEventBus`; the
state plugins, the CLI (``isolde run --event``) and the daemon's HTTP API all
publish into it.

Delivery rules (decided here, where Direktiv is silent or needs a cluster):

* **Namespaces are separate**: an event only reaches waiters and subscribers of
  the namespace it was published in.
* **Broadcast to waiters**: an event is given to *every* instance that is waiting
  for a matching event at the moment it is published (as in Direktiv).
* **Kept when nobody waits**: an event that no waiting instance took is kept, at
  most ``[limits] event_retain_count`` per namespace (oldest dropped first) for
  ``[limits] event_retain_seconds``, and handed to the first instance that starts
  waiting for it (the kept copy is then gone).  This closes the race where a
  listener starts waiting just after a generator published (Direktiv's
  ``simple-listener`` spins off a publisher and only then waits).
* **Subscriptions** (``subscribe``: what the daemon uses for ``start`` types) see
  every matching event at publish time; they never take an event away from
  waiters or from the kept list.
* **Matching**: an :class:`EventFilter` matches an event of exactly its ``type``
  whose context attributes (``source``, ``subject``, extension attributes, ...;
  never ``data``) match every entry of its ``context``.  A string value is a
  glob (``fnmatch`` rules: ``*``, ``?``, ``[abc]``), so a value without glob
  characters is an exact match; a number or boolean must be equal (or equal as
  text); ``null`` matches a missing attribute.  Direktiv's v0.1 documents
  described these values as regular expressions; isolde reads them as globs.
* **Cancellation**: ``close()`` (called by ``Engine.close()``) wakes every waiter
  and sleeper; they raise :class:`Cancelled` (code ``isolde.cancelled``, not
  catchable), as does ``interrupt(owner)`` for the waits of one instance.

The event itself is a plain dict in CloudEvents' JSON format (``specversion``,
``id``, ``source``, ``type``, optional ``time``, ``subject``,
``datacontenttype``, extension attributes, and ``data`` or ``data_base64``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from ..errors import IsoldeError
from .cloudevents import copy_value, normalize
from .errors import Cancelled
from .filters import EventFilter
from .protocol import Received

if TYPE_CHECKING:
    from ..config import Config


class _Waiter:
    """One wait (or sleep) in progress; woken through its own ``threading.Event``."""

    __slots__ = ("namespace", "filters", "all", "owner", "got", "done", "ready", "cancelled")

    def __init__(self, namespace: str | None, filters: Sequence[EventFilter], all: bool, owner: str | None) -> None:
        self.namespace = namespace
        self.filters = filters
        self.all = all
        self.owner = owner
        self.got: list[dict[str, Any] | None] = [None] * len(filters)
        self.done = False
        self.ready = threading.Event()
        self.cancelled: str | None = None

    def offer(self, event: dict[str, Any]) -> bool:
        """Take ``event`` if it fills a slot still open; True when it was taken.

        When several open filters match, the one with the most context
        conditions takes it (then the first listed), so a general filter does
        not use up an event that only a specific one of the same type accepts.
        """
        if self.done:
            return False
        best = -1
        for i, flt in enumerate(self.filters):
            if self.got[i] is None and flt.matches(event):
                if best < 0 or len(flt.context) > len(self.filters[best].context):
                    best = i
                if not self.all:
                    break
        if best < 0:
            return False
        self.got[best] = copy_value(event)
        self.done = not self.all or all(g is not None for g in self.got)
        return True

    def result(self) -> Received:
        return [(i, e) for i, e in enumerate(self.got) if e is not None]

    def reset(self) -> None:
        self.got = [None] * len(self.filters)
        self.done = False


@dataclass(slots=True)
class _Subscription:
    waiter: _Waiter
    callback: Callable[[Received], None]


@dataclass(slots=True)
class _Kept:
    expires: float
    event: dict[str, Any]


class InProcessEventBus:
    """Thread-safe publish / wait / subscribe for one engine (see the module docstring);
    implements :class:`isolde.events.protocol.EventBus`."""

    def cancel_all(self) -> None:
        """Engine.close() calls this first: every waiting instance wakes up cancelled."""
        self.close()

    def __init__(
        self,
        *,
        max_event_bytes: int = 1 << 20,
        retain_count: int = 100,
        retain_seconds: float = 60.0,
        on_callback_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.max_event_bytes = max_event_bytes
        self.retain_count = retain_count
        self.retain_seconds = retain_seconds
        self._on_error = on_callback_error
        self._lock = threading.Lock()
        self._closed = False
        self._waiters: dict[str, list[_Waiter]] = {}
        self._sleepers: set[_Waiter] = set()
        self._kept: dict[str, deque[_Kept]] = {}
        self._subs: dict[str, list[_Subscription]] = {}
        self._timers: set[threading.Timer] = set()

    @classmethod
    def from_config(cls, config: Config, on_callback_error: Callable[[BaseException], None] | None = None) -> InProcessEventBus:
        return cls(
            max_event_bytes=int(config.limit("max_event_bytes")),
            retain_count=int(config.limit("event_retain_count")),
            retain_seconds=float(config.limit("event_retain_seconds")),
            on_callback_error=on_callback_error,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    # -- publishing --------------------------------------------------------------------
    def publish(self, namespace: str, event: Mapping[str, Any], *, retain_for: float | None = None) -> dict[str, Any]:
        """Deliver ``event`` in ``namespace``; returns the event as delivered (id and time filled in).

        ``retain_for`` overrides how long the event is kept when no instance is
        waiting for it (seconds; ``math.inf`` keeps it until taken or pushed out
        by the count limit).  Raises :class:`EventError` for a malformed event and
        ``IsoldeError`` once the bus is closed.
        """
        ev = normalize(dict(event), max_bytes=self.max_event_bytes)
        calls: list[tuple[Callable[[Received], None], Received]] = []
        with self._lock:
            if self._closed:
                raise IsoldeError("the event bus is closed (its Engine was closed)")
            taken = False
            waiters = self._waiters.get(namespace)
            if waiters:
                for w in list(waiters):
                    if w.offer(ev):
                        taken = True
                        if w.done:
                            waiters.remove(w)
                            w.ready.set()
            for sub in self._subs.get(namespace, ()):
                if sub.waiter.offer(ev) and sub.waiter.done:
                    calls.append((sub.callback, sub.waiter.result()))
                    sub.waiter.reset()
            if not taken:
                keep = self.retain_seconds if retain_for is None else retain_for
                if keep > 0:
                    kept = self._kept.setdefault(namespace, deque())
                    kept.append(_Kept(time.monotonic() + keep, ev))
                    self._purge(namespace)
        for callback, received in calls:
            try:
                callback(received)
            except Exception as exc:  # a subscriber's bug must not break the publisher
                if self._on_error is not None:
                    self._on_error(exc)
        return ev

    def publish_later(self, namespace: str, event: Mapping[str, Any], delay: float) -> dict[str, Any]:
        """Check ``event`` now and publish it after ``delay`` seconds (dropped if the bus closes first)."""
        ev = normalize(dict(event), max_bytes=self.max_event_bytes)
        if delay <= 0:
            return self.publish(namespace, ev)

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
                if self._closed:
                    return
            self.publish(namespace, ev)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                raise IsoldeError("the event bus is closed (its Engine was closed)")
            self._timers.add(timer)
        timer.start()
        return ev

    def _purge(self, namespace: str) -> None:
        """Drop expired kept events and the oldest beyond the count limit (lock held)."""
        kept = self._kept.get(namespace)
        if not kept:
            return
        now = time.monotonic()
        if any(k.expires <= now for k in kept):
            kept = deque(k for k in kept if k.expires > now)
            self._kept[namespace] = kept
        while len(kept) > self.retain_count:
            kept.popleft()
        if not kept:
            del self._kept[namespace]

    def pending(self, namespace: str) -> list[dict[str, Any]]:
        """The events kept in ``namespace`` because no instance has taken them yet (oldest first)."""
        with self._lock:
            self._purge(namespace)
            return [copy_value(k.event) for k in self._kept.get(namespace, ())]

    # -- waiting -----------------------------------------------------------------------
    def wait(
        self,
        namespace: str,
        filters: Sequence[EventFilter],
        timeout: float | None,
        *,
        all: bool = False,
        owner: str | None = None,
    ) -> Received | None:
        """Block until an event matches one of ``filters`` (``all=True``: one event for each).

        Kept events are looked at first, oldest first.  Returns ``(filter index,
        event)`` pairs in filter order, or None when ``timeout`` seconds pass
        first (``None`` waits forever).  Raises :class:`Cancelled` when the bus
        closes or ``interrupt(owner)`` is called.  No lock is held while waiting.
        """
        if not filters:
            raise ValueError("wait needs at least one filter")
        w = _Waiter(namespace, filters, all, owner)
        with self._lock:
            if self._closed:
                raise Cancelled("the engine is closing")
            self._purge(namespace)
            kept = self._kept.get(namespace)
            if kept:
                for k in list(kept):
                    if w.offer(k.event):
                        kept.remove(k)
                        if w.done:
                            break
                if not kept:
                    del self._kept[namespace]
            if w.done:
                return w.result()
            if timeout is not None and timeout <= 0:
                return None
            self._waiters.setdefault(namespace, []).append(w)
        w.ready.wait(None if timeout is None or math.isinf(timeout) else timeout)
        with self._lock:
            waiters = self._waiters.get(namespace)
            if waiters and w in waiters:
                waiters.remove(w)
                if not waiters:
                    del self._waiters[namespace]
            if w.done:
                return w.result()
            if w.cancelled is not None:
                raise Cancelled(w.cancelled)
            return None

    def sleep(self, seconds: float, *, owner: str | None = None, namespace: str | None = None) -> None:
        """Sleep ``seconds`` unless the bus closes or ``interrupt(owner)`` comes first (then :class:`Cancelled`).

        ``namespace`` only makes the sleep visible in ``waiting(namespace)``.
        """
        w = _Waiter(namespace, (), False, owner)
        with self._lock:
            if self._closed:
                raise Cancelled("the engine is closing")
            self._sleepers.add(w)
        try:
            w.ready.wait(seconds)
        finally:
            with self._lock:
                self._sleepers.discard(w)
        if w.cancelled is not None:
            raise Cancelled(w.cancelled)

    def interrupt(self, owner: str, reason: str = "the instance was cancelled") -> int:
        """Wake every wait and sleep of ``owner`` (an instance id) with :class:`Cancelled`; returns how many."""
        count = 0
        with self._lock:
            for w in self._all_waiters():
                if w.owner == owner and not w.done and w.cancelled is None:
                    w.cancelled = reason
                    w.ready.set()
                    count += 1
        return count

    def waiting(self, namespace: str) -> list[tuple[str | None, list[EventFilter], bool]]:
        """``(owner, filters, all)`` of each wait and sleep in progress in ``namespace`` (a sleep has no filters)."""
        with self._lock:
            sleeps = [w for w in self._sleepers if w.namespace == namespace]
            return [(w.owner, list(w.filters), w.all) for w in [*self._waiters.get(namespace, ()), *sleeps]]

    def _all_waiters(self) -> Iterable[_Waiter]:
        for ws in self._waiters.values():
            yield from ws
        yield from self._sleepers

    # -- subscriptions -------------------------------------------------------------------
    def subscribe(
        self,
        namespace: str,
        filters: Sequence[EventFilter],
        callback: Callable[[Received], None],
        *,
        all: bool = False,
    ) -> Callable[[], None]:
        """Call ``callback`` for every event matching one of ``filters``; returns the unsubscribe function.

        With ``all=True`` the callback runs once an event has arrived for every
        filter (each later event fills the next round; Direktiv's ``eventsAnd``
        start).  The callback runs on the publisher's thread after the bus lock is
        released, so it should hand long work to another thread (the daemon
        starts the instance there).  An exception in it is reported, never raised
        to the publisher.
        """
        if not filters:
            raise ValueError("subscribe needs at least one filter")
        sub = _Subscription(_Waiter(namespace, filters, all, None), callback)
        with self._lock:
            if self._closed:
                raise IsoldeError("the event bus is closed (its Engine was closed)")
            self._subs.setdefault(namespace, []).append(sub)

        def unsubscribe() -> None:
            with self._lock:
                subs = self._subs.get(namespace)
                if subs and sub in subs:
                    subs.remove(sub)
                    if not subs:
                        del self._subs[namespace]

        return unsubscribe

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Wake every waiter and sleeper (they raise :class:`Cancelled`), drop delayed events and subscriptions."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for w in self._all_waiters():
                if not w.done:
                    w.cancelled = "the engine is closing"
                w.ready.set()
            timers = list(self._timers)
            self._timers.clear()
            self._subs.clear()
            self._kept.clear()
        for t in timers:
            t.cancel()
