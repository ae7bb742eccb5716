"""Group commit: concurrent writers of one environment share one transaction and one fsync.

A writer that finds another commit in flight queues its work; the next leader
runs every queued item in one transaction (each in a nested transaction of its
own, so one item's failure undoes only that item) and pays one fsync for all of
them.  No writer returns before the commit that holds its item is durable, so
nothing is acknowledged early; throughput grows with the number of writers
instead of being one fsync per write.  Without fsync (the fast store) there is
nothing to share and each write runs on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

    # A transaction body: fn(txn, arg) -> (commit?, result).
    Body = Callable[[Any, Any], tuple[bool, Any]]

__all__ = ["Pending", "GroupCommit"]


class Pending:
    """One queued write of the group commit."""

    __slots__ = ("fn", "arg", "buffers", "result", "error", "done", "shown")

    def __init__(self, fn: Body, arg: Any, buffers: bool) -> None:
        self.fn = fn
        self.arg = arg
        self.buffers = buffers
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.shown: list[bytes] | None = None  # keys shown ahead of the commit (SharedEnv.overlay)


class GroupCommit:
    """The write queue of one environment.  ``run`` applies a batch in one
    transaction and marks every item done (result or error); it is called by
    one leader at a time."""

    __slots__ = ("_run", "_grouped", "_cond", "_queue", "_busy", "_waiting", "batches")

    def __init__(self, run: Callable[[list[Pending]], None], *, grouped: bool) -> None:
        self._run = run
        self._grouped = grouped
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Pending] = []
        self._busy = False
        self._waiting = 0  # writers asleep in cond.wait(): only then is there anyone to wake
        self.batches = 0  # transactions run (each one fsync when durable): how well writes group

    def submit(
        self, fn: Body, arg: Any, buffers: bool, *,
        queued: Callable[[Pending], None] | None = None, handed: Callable[[], None] | None = None,
    ) -> Any:
        """Run ``fn`` in a write transaction; return its result once durable,
        or raise its error.  ``queued(item)`` runs when the item enters the
        queue, under the queue's lock (before any leader can take it);
        ``handed()`` runs after that, before the wait for the commit."""
        item = Pending(fn, arg, buffers)
        if not self._grouped:  # no fsync to share: run it directly
            self.batches += 1
            self._run([item])
            if handed is not None and item.error is None:
                handed()
        else:
            cond = self._cond
            batch: list[Pending] | None = None
            if queued is not None or handed is not None:
                with cond:
                    self._queue.append(item)
                    if queued is not None:
                        queued(item)
                if handed is not None:
                    handed()
                appended = True
            else:
                appended = False
            with cond:
                if not appended and not self._busy:
                    # Uncontended: nobody queued, nobody committing; lead a batch of one
                    # without going through the queue.
                    self._busy = True
                    batch = self._queue
                    batch.append(item)
                    self._queue = []
                else:
                    if not appended:
                        self._queue.append(item)
                    while not item.done:
                        if not self._busy:
                            self._busy = True
                            batch, self._queue = self._queue, []
                            break
                        self._waiting += 1
                        try:
                            cond.wait()
                        finally:
                            self._waiting -= 1
            if batch is not None:
                self.batches += 1  # only the leader counts: under _busy, one at a time
                try:
                    self._run(batch)
                finally:
                    with cond:
                        self._busy = False
                        if self._waiting:
                            cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.result
