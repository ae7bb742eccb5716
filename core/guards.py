"""Workflow-wide rules of an instance: ``timeouts`` (interrupt / kill) and ``singular``.

The instance loop (``isolde.instance.run_instance``) makes one :class:`InstanceGuard`
for an instance whose workflow declares either, and consults it at three points:
before each state (:meth:`InstanceGuard.at_boundary`), for the time an action may
take (:meth:`InstanceGuard.time_left`), and when a state fails
(:meth:`InstanceGuard.translate`).  Workflows without them pay nothing.

Decisions (Direktiv's codes; its cluster-wide mechanics replaced by local ones):

* ``timeouts.interrupt`` (ISO-8601, counted from the instance's start) raises the
  **catchable** ``direktiv.cancels.timeout.soft`` once: at the next state boundary,
  inside a waiting state (``delay``, event states: their wait is interrupted), or
  as the deadline of an action call under way (it is cut off as by its own
  timeout).  The state running at that moment gets the error, so its ``catch``
  decides; a handler runs with the time left until ``kill``.
* ``timeouts.kill`` raises the **uncatchable** ``direktiv.cancels.timeout.hard`` in
  the same places; the instance ends at once.
* Work that cannot be interrupted (a jq program) is stopped at the next state
  boundary.  A subflow call is an action call: the child gets the call's
  deadline (``deadline``) and ends there as at its own ``kill``.
* ``singular: true``: while an instance of the workflow runs, another one of the
  same workflow id in the same namespace fails at its start with ``direktiv.mutex``
  (not catchable: no state ran).  The rule holds for every engine and process on
  one data directory: it uses the data directory's lock table
  (``isolde.locks``), whose locks the kernel drops when a process dies.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING

from .errors import InstanceFailure, IsoldeError, WorkflowError

if TYPE_CHECKING:
    from .events import EventBus
    from .lazy import Lazy
    from .locks import VariableLocks
    from .workflow import Workflow

SOFT = "direktiv.cancels.timeout.soft"
HARD = "direktiv.cancels.timeout.hard"
MUTEX = "direktiv.mutex"
CANCELLED = "isolde.cancelled"
REASON = "the workflow's timeout passed"
"""The reason given to ``EventBus.interrupt``; a wait cancelled with it is this guard's doing."""
POKE = 0.05
"""Seconds between two interrupts of a late instance's waits, until it takes the error."""


def needs_guard(wf: Workflow) -> bool:
    return bool(wf.fields.get("timeouts") or wf.fields.get("singular"))


class InstanceGuard:
    """Timeouts and the singular lock of one instance (see the module docstring)."""

    __slots__ = ("locks", "deadlines", "events", "wf", "namespace", "instance_id", "soft_at", "hard_at", "soft_spent", "expired",
                 "lock", "done", "_mutex_key", "interrupt", "kill")

    def __init__(self, locks: Lazy[VariableLocks], deadlines: Lazy[Deadlines], events: Lazy[EventBus],
                 wf: Workflow, namespace: str, instance_id: str, started_at: float | None = None,
                 deadline: float | None = None) -> None:
        self.locks = locks
        self.deadlines = deadlines
        self.events = events
        self.wf = wf
        self.namespace = namespace
        self.instance_id = instance_id
        timeouts = wf.fields.get("timeouts") or {}
        # a resumed instance (``started_at``: wall-clock start) keeps counting from its start
        now = time.monotonic() - (0.0 if started_at is None else max(time.time() - started_at, 0.0))
        self.interrupt: float | None = timeouts.get("interrupt")
        self.kill: float | None = timeouts.get("kill")
        self.soft_at = None if self.interrupt is None else now + float(self.interrupt)
        self.hard_at = None if self.kill is None else now + float(self.kill)
        if deadline is not None and (self.hard_at is None or deadline < self.hard_at):
            # a subflow called with a timeout (``deadline``: ``time.monotonic()``) ends there like at kill
            self.hard_at = deadline
            self.kill = max(deadline - now, 0.0)
        self.soft_spent = False  # the soft error was raised (it is raised once)
        self.expired: str | None = None  # "soft" / "hard" once the watcher interrupted this instance
        self.lock = threading.Lock()
        self.done = False
        self._mutex_key: bytes | None = None

    # -- start and end -----------------------------------------------------------------
    def start(self) -> None:
        """Take the singular lock (``direktiv.mutex`` if taken) and arm the timeouts."""
        if self.wf.fields.get("singular"):
            key = f"{self.namespace}\x00singular\x00{self.wf.id}\x00".encode()
            try:
                self.locks.get().acquire(self.instance_id, [key], 0.0, {key: f"workflow '{self.wf.id}'"})
            except WorkflowError:
                raise WorkflowError(
                    MUTEX,
                    f"workflow '{self.wf.id}' is singular and an instance of it is already running in namespace "
                    f"'{self.namespace}' (remove `singular: true` to allow several at once)",
                ) from None
            self._mutex_key = key
        for when, kind in ((self.soft_at, "soft"), (self.hard_at, "hard")):
            if when is not None:
                self.deadlines.get().add(when, self, kind)

    def finish(self) -> None:
        with self.lock:
            self.done = True
        if self._mutex_key is not None:
            self.locks.get().release(self.instance_id, [self._mutex_key])
            self._mutex_key = None

    # -- consulted by the instance loop and by actions -----------------------------------
    def at_boundary(self) -> None:
        """Raise the timeout that is due before the next state runs."""
        now = time.monotonic()
        if self.hard_at is not None and now >= self.hard_at:
            raise self._hard()
        if self.soft_at is not None and now >= self.soft_at and not self.soft_spent:
            raise self._soft()

    def time_left(self) -> float | None:
        """Seconds until the next timeout that can still be raised (None: no limit)."""
        now = time.monotonic()
        left = [t - now for t in (None if self.soft_spent else self.soft_at, self.hard_at) if t is not None]
        return max(0.0, min(left)) if left else None

    def translate(self, exc: WorkflowError) -> WorkflowError:
        """The error a failing state really ends with: past ``kill`` anything is the hard
        timeout; a wait this guard interrupted, or an action cut off by the time left
        before ``interrupt``, is the soft one."""
        now = time.monotonic()
        if self.hard_at is not None and (now >= self.hard_at or self.expired == "hard"):
            return self._hard()
        ours = exc.code == CANCELLED and exc.msg == REASON
        if ours or (exc.code == SOFT and self.soft_at is not None and now >= self.soft_at - 0.01):
            if not self.soft_spent:
                return self._soft()
        return exc

    def _soft(self) -> WorkflowError:
        with self.lock:
            self.soft_spent = True
        return WorkflowError(SOFT, f"the workflow's interrupt timeout ({_span(self.interrupt)}) passed (timeouts.interrupt)")

    def _hard(self) -> InstanceFailure:
        return InstanceFailure(f"the workflow's kill timeout ({_span(self.kill)}) passed (timeouts.kill)", code=HARD)

    def poke(self, kind: str) -> bool:
        """Called by the watcher when a deadline is due: interrupt the instance's waits.
        Returns False once there is nothing more to do for this deadline."""
        with self.lock:
            if self.done or (kind == "soft" and self.soft_spent):
                return False
            if self.expired != "hard":
                self.expired = kind
            try:
                self.events.get().interrupt(self.instance_id, REASON)
            except IsoldeError:  # the engine is closing: it cancels the waits itself
                return False
        return True


def _span(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:g}s"


class Deadlines:
    """One watcher thread per engine for every instance's timeouts (a heap of due times)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, InstanceGuard, str]] = []
        self._seq = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, when: float, guard: InstanceGuard, kind: str) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (when, next(self._seq), guard, kind))
            if len(self._heap) > 64 and len(self._heap) % 64 == 0:
                self._heap = [e for e in self._heap if not e[2].done]  # drop entries of ended instances
                heapq.heapify(self._heap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isolde-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._closed:
                    return
                when, _, guard, kind = heapq.heappop(self._heap)
            if guard.done:
                continue
            if guard.poke(kind):
                with self._cond:
                    if not self._closed:
                        heapq.heappush(self._heap, (time.monotonic() + POKE, next(self._seq), guard, kind))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)


__all__ = ["HARD", "MUTEX", "SOFT", "Deadlines", "InstanceGuard", "needs_guard"]
