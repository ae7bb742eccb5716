"""Background work of the action machinery: delayed callbacks and clean-up off the hot path."""

from __future__ import annotations

import collections
import heapq
import threading
import time
from typing import Callable


class Later:
    """One thread that runs callbacks after a delay; scheduling costs a heap push.

    Used to start an action's ``out/`` watcher only when its call is still
    running after a moment: adding and removing inotify watches costs more than
    a whole fast call, and for a call that returns at once the sweep after it
    finds everything anyway.  A callback that is no longer wanted is simply
    left to run as a no-op (it checks its own flag).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                return
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isolde-later", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is fn:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a callback failing must not stop the others
                pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(2.0)


class Reaper:
    """Runs clean-up work (removing action folders) on one background thread.

    Removing a directory tree is filesystem metadata work that can take
    milliseconds on a busy disk; the instance need not wait for it.  ``close``
    finishes everything queued, so nothing is left behind by a closed engine.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def put(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._jobs.append(job)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="isolde-reaper", daemon=True)
                    self._thread.start()
                self._cond.notify()
        if closed:
            job()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # one failed removal must not stop the others
                pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()


__all__ = ["Later", "Reaper"]
