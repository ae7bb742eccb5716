"""Following ``out/<scope>/`` while the isolate runs (SPEC §4.3).

:class:`OutWatcher` is one watchdog observer that any number of action
folders share; :class:`FolderWatch` is one folder's use of it: a big
top-level file is staged (copied into the folder's
:class:`~isolde.files.staging.StageArea`) in the folder's own thread as soon
as it is closed after writing (or moved in), while the isolate still runs.
It is only a cache: the collector re-examines every entry and uses a staged
copy only when the file's identity is what it was when the copy was made.
Because file timestamps come from a coarse clock, a file is staged only once
its ctime is at least :data:`SETTLE_NS` old: any later write then gets a newer
ctime, so a stale copy can never match.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

from ..store import SCOPES, InvalidKey, check_key
from .outputs import INLINE_MAX
from .paths import open_output
from .staging import StageArea, identity

__all__ = ["FolderWatch", "OutWatcher", "SETTLE_NS"]

#: A file is staged by the watcher only once its ctime is this old (see module doc).
SETTLE_NS: Final = 30_000_000

_COPY_CHUNK: Final = 8 << 20


class _QuietStopRace(logging.Filter):
    """watchdog (7.1) logs an ERROR, "queue_events() called when the thread is
    inactive", when a watch is removed while the kernel reports that removal
    (IN_IGNORED) to the emitter's pending read.  It is harmless and would
    otherwise print on stderr every few actions."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


def _quiet_watchdog() -> None:
    log = logging.getLogger("watchdog.observers.inotify")
    if not any(isinstance(f, _QuietStopRace) for f in log.filters):
        log.addFilter(_QuietStopRace())


class OutWatcher:
    """One watchdog observer that any number of action folders share.

    Starting and stopping an observer costs milliseconds (threads and an
    inotify instance); scheduling a folder's three watches on a running one
    and removing them costs a fraction of a millisecond.  An engine keeps one:
    ``engine.resource("isolde.outwatcher", OutWatcher)``, passed to
    :meth:`isolde.files.ActionFolder.start_watch`; the engine closes it.  watchdog is
    imported when the first watch is scheduled.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observer: Any = None
        self._closed = False

    def schedule(self, handler: Any, directories: Sequence[str]) -> list[Any]:
        from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent
        from watchdog.observers import Observer

        with self._lock:
            if self._closed:
                raise RuntimeError("OutWatcher is closed")
            if self._observer is None:
                _quiet_watchdog()
                observer = Observer()
                observer.daemon = True
                observer.start()
                self._observer = observer
            observer = self._observer
        # Only the events that mean "a file is complete": no IN_MODIFY flood
        # while an isolate writes a big file.
        kinds = [FileClosedEvent, FileMovedEvent, FileCreatedEvent]
        watches: list[Any] = []
        try:
            for d in directories:
                watches.append(observer.schedule(handler, d, recursive=False, event_filter=kinds))
        except BaseException:
            self.unschedule(watches)
            raise
        return watches

    def unschedule(self, watches: Sequence[Any]) -> None:
        """Remove watches; returns after any dispatch to their handler finished
        (watchdog dispatches and unschedules under one lock)."""
        observer = self._observer
        if observer is None:
            return
        for w in watches:
            try:
                observer.unschedule(w)
            except KeyError:
                pass  # the watched directory disappeared and watchdog dropped it

    def close(self) -> None:
        with self._lock:
            self._closed = True
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()

class FolderWatch:
    """One folder's watches and its staging thread.

    Holds no reference to the folder object, so a forgotten folder is still
    removed when it is garbage-collected.
    """

    def __init__(self, path: str, root_fd: int, stage: StageArea, max_variable_bytes: int) -> None:
        self.path = path
        self.root_fd = root_fd
        self.stage = stage
        self.max_variable_bytes = max_variable_bytes
        self.lock = threading.Lock()
        self.watcher: OutWatcher | None = None
        self.own_watcher = False
        self.watches: list[Any] = []
        self.stager: threading.Thread | None = None
        self.pending: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stopping = threading.Event()

    def start(self, watcher: OutWatcher | None) -> None:
        """Schedule the three ``out/<scope>`` watches (on a private observer
        when ``watcher`` is None); a no-op once stopped or started."""
        if self.watcher is not None or self.stopping.is_set():
            return
        own = watcher is None
        w = OutWatcher() if watcher is None else watcher
        handler = _WatchHandler(self)
        try:
            self.watches = w.schedule(handler, list(handler.scopes))
        except BaseException:
            if own:
                w.close()
            raise
        self.watcher = w
        self.own_watcher = own

    # -- the watcher's side
    def on_event(self, scope: str, name: str) -> None:
        """Called in watchdog's dispatch thread, which all folders share:
        only a quick look here, the copy happens in this folder's own thread."""
        if self.stopping.is_set():
            return
        try:
            check_key(name)
        except InvalidKey:
            return  # collect() reports it
        fd = open_output(self.root_fd, scope, name)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(st.st_mode) or not INLINE_MAX < st.st_size <= self.max_variable_bytes:
            return  # small files are read by collect(), too big ones fail there
        with self.lock:
            if self.stager is None:
                self.stager = threading.Thread(target=self.stage_loop, name="isolde-out-stager", daemon=True)
                self.stager.start()
        self.pending.put((scope, name))

    def stage_loop(self) -> None:
        while True:
            item = self.pending.get()
            if item is None or self.stopping.is_set():
                return
            try:
                self.stage_file(*item)
            except Exception:  # noqa: BLE001 - only a cache; collect() re-reads anything it lacks
                pass

    def stage_file(self, scope: str, name: str) -> None:
        fd = open_output(self.root_fd, scope, name)
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_variable_bytes:
                return
            young = SETTLE_NS - (time.time_ns() - st.st_ctime_ns)
            if young > 0:
                if self.stopping.wait(young / 1e9):
                    return
                st = os.fstat(fd)
                if time.time_ns() - st.st_ctime_ns < SETTLE_NS:
                    return  # still being written; its close event comes later
            before = identity(st)
            if self.stage.known(scope, name) == before:
                return  # already have this version
            out, path = self.stage.new_file()
            ok = False
            try:
                ok = self.copy(fd, out, st.st_size) and identity(os.fstat(fd)) == before
            finally:
                os.close(out)
                if not ok:
                    os.unlink(path)
            if not ok:
                return
            self.stage.remember(scope, name, before, path)
        finally:
            os.close(fd)

    def copy(self, src: int, dst: int, size: int) -> bool:
        """Kernel-side copy of exactly ``size`` bytes; False if stopped or short."""
        offset = 0
        while offset < size:
            if self.stopping.is_set():
                return False
            n = os.sendfile(dst, src, offset, min(_COPY_CHUNK, size - offset))
            if n == 0:
                return False
            offset += n
        return True

    def stop(self) -> None:
        """Stop following ``out/``; when this returns no staging runs any more."""
        self.stopping.set()
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.unschedule(self.watches)
            self.watches = []
            if self.own_watcher:
                watcher.close()
        stager, self.stager = self.stager, None
        if stager is not None:
            self.pending.put(None)
            stager.join()


class _WatchHandler:
    """watchdog calls ``dispatch``; duck-typed so importing this module does not import watchdog."""

    def __init__(self, watch: FolderWatch) -> None:
        self.watch = watch
        out = os.path.join(watch.path, "out")
        self.scopes = {os.path.join(out, s): s for s in SCOPES}

    def dispatch(self, event: Any) -> None:
        try:
            if event.is_directory:
                return
            path = event.dest_path if event.event_type == "moved" else event.src_path
            if not path:
                return
            parent, name = os.path.split(os.fsdecode(path))
            scope = self.scopes.get(parent)
            if scope is not None:
                self.watch.on_event(scope, name)
        except Exception:  # noqa: BLE001 - only a cache; collect() re-reads anything it lacks
            pass
