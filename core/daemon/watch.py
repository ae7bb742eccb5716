"""Watching the served folder: watchdog events mark paths dirty, and when each is due.

Every watchdog event only marks a path dirty (``Pending``); one sync thread looks at what
is on disk once the path is due, so the order and number of events do not matter.  On
Linux (inotify) a file is due when it is closed after writing or moved into place;
without close events a file is due once it has not changed for ``settle`` seconds.  A
path that disappears is due only after ``delete_grace`` seconds.  ``FileReader`` reads a
due file only when no writer has it open and it did not change while read.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .layout import classify
from .settings import DaemonSettings

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

__all__ = ["FileReader", "Pending", "Watcher"]

WRITER_RECHECK: Final = 0.5
"""Seconds until a file found still open for writing is looked at again."""
MOVE_HINT_TTL: Final = 10.0
"""Seconds a rename event is remembered to pair a vanished path with its new name."""


class Pending:
    """Dirty paths and when each is due; the watchdog thread adds, the sync thread takes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.due: dict[Path, float] = {}
        self.last_event: dict[Path, float] = {}
        self.moves: dict[Path, tuple[Path, float]] = {}  # destination -> (source, when) of a recent rename
        self.closed = False
        self.busy = False  # paths were taken and are being synced

    def mark(self, path: Path, delay: float) -> None:
        now = time.monotonic()
        with self.cond:
            self.due[path] = now + delay
            self.last_event[path] = now
            self.cond.notify_all()

    def move(self, src: Path, dest: Path) -> None:
        now = time.monotonic()
        with self.cond:
            self.moves[dest] = (src, now)
            if len(self.moves) > 1024:  # hints nobody consumed (renames to ignored names)
                for d, (_, t) in list(self.moves.items()):
                    if now - t > MOVE_HINT_TTL:
                        del self.moves[d]

    def moved_from(self, dest: Path) -> Path | None:
        """The source of a recent rename to ``dest`` (consumed)."""
        with self.cond:
            hit = self.moves.pop(dest, None)
        return None if hit is None or time.monotonic() - hit[1] > MOVE_HINT_TTL else hit[0]

    def moved_to(self, src: Path) -> list[Path]:
        """Destinations of recent renames of ``src``."""
        now = time.monotonic()
        with self.cond:
            return [d for d, (s, t) in self.moves.items() if s == src and now - t <= MOVE_HINT_TTL]

    def recheck(self, path: Path, delay: float) -> None:
        """Look at ``path`` again later (without counting it as a new event)."""
        with self.cond:
            self.due[path] = time.monotonic() + delay
            self.cond.notify_all()

    def since_event(self, path: Path) -> float | None:
        with self.cond:
            last = self.last_event.get(path)
        return None if last is None else time.monotonic() - last

    def forget(self, path: Path) -> None:
        with self.cond:
            self.last_event.pop(path, None)

    def gone_recently(self, path: Path, grace: float) -> bool:
        """A missing path is acted on only once it stayed gone ``grace`` seconds after its
        last event; until then it is looked at again later."""
        since = self.since_event(path)
        if since is None:
            return False
        left = grace - since
        if left > 0:
            self.recheck(path, left)
            return True
        self.forget(path)
        return False

    def take(self, timeout: float) -> list[Path]:
        """Paths that are due, oldest deadline first; waits up to ``timeout`` for one."""
        with self.cond:
            deadline = time.monotonic() + timeout
            while not self.closed:
                now = time.monotonic()
                ready = sorted((t, str(p), p) for p, t in self.due.items() if t <= now)
                if ready:
                    for _, _, p in ready:
                        del self.due[p]
                    self.busy = True
                    return [p for _, _, p in ready]
                nxt = min(self.due.values(), default=deadline)
                if now >= deadline:
                    return []
                self.cond.wait(max(0.0, min(nxt, deadline) - now))
            return []

    def synced(self) -> None:
        """The paths last taken are synced."""
        with self.cond:
            self.busy = False
            self.cond.notify_all()

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until no path is due (later ones included: a deletion's grace, a recheck)
        and none is being synced: every change seen so far is applied."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed or (not self.due and not self.busy), timeout)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class _Handler:
    """watchdog event handler: classify nothing, just mark paths dirty (cheap, never blocks)."""

    def __init__(self, root: Path, pending: Pending, settings: DaemonSettings, close_events: bool) -> None:
        self.root = root
        self.pending = pending
        self.settings = settings
        self.close_events = close_events

    def dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = Path(os.fsdecode(event.src_path))
        s = self.settings
        pending = self.pending
        item = classify(self.root, src)
        if item is not None and item.path != src and item.kind in ("nvar", "wvar"):
            # Inside a variable directory: it is packed once it has been quiet for `settle`.
            pending.mark(item.path, s.settle)
            if kind != "moved":
                return
        if kind == "moved":
            dest = Path(os.fsdecode(event.dest_path))
            pending.move(src, dest)
            pending.mark(src, s.delete_grace)
            pending.mark(dest, s.settle if event.is_directory else 0.0)
        elif kind == "deleted":
            pending.mark(src, s.delete_grace)
        elif kind == "closed":
            pending.mark(src, 0.0)
        elif kind in ("created", "modified"):
            if event.is_directory:
                if kind == "created":
                    pending.mark(src, s.settle)
            elif not self.close_events:
                pending.mark(src, s.settle)
            # else: a file being written counts when it is closed (the "closed" event)


class Watcher:
    """The watchdog observer of the served folder, feeding ``pending``."""

    def __init__(self, root: Path, pending: Pending, settings: DaemonSettings) -> None:
        self.root = root
        self.pending = pending
        self.settings = settings
        self.close_events = False
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        from watchdog.events import (
            DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent,
            FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
        )
        from watchdog.observers import Observer

        observer = Observer()
        # Inotify tells when a file is closed after writing: the only reliable "complete".
        self.close_events = type(observer).__name__ == "InotifyObserver"
        wanted = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
                  DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        handler = _Handler(self.root, self.pending, self.settings, self.close_events)
        observer.schedule(handler, str(self.root), recursive=True, event_filter=wanted)  # type: ignore[arg-type]
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()

    def join(self) -> None:
        if self._observer is not None:
            self._observer.join(timeout=5)


class FileReader:
    """Reads a due file whole, or not at all: not while a writer has it open, not if it
    changed while read, not past a size cap (it is then looked at again later)."""

    def __init__(self, pending: Pending, settle: float, log: logging.Logger) -> None:
        self.pending = pending
        self.settle = settle
        self.log = log
        # Leases signal their holder (SIGIO) when a writer opens the file; only safe to
        # take when that signal is ignored, which `serve` arranges.
        self.use_leases = bool(
            hasattr(signal, "SIGIO") and sys.platform.startswith("linux")
            and signal.getsignal(signal.SIGIO) == signal.SIG_IGN
        )

    def read(self, path: Path, st: os.stat_result, cap: int) -> bytes | None:
        """The file's bytes if it did not change while read (else it is tried again later)."""
        if st.st_size >= cap:
            self.log.error("file too large, ignored", extra={"fields": {"file": str(path), "bytes": st.st_size, "limit": cap - 1}})
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self.log.warning("cannot read file", extra={"fields": {"file": str(path), "error": exc.strerror}})
            return None
        try:
            if self._writer_has(fd):
                # Still open for writing (a slow writer, or found by a scan of a folder that
                # just appeared): its close event comes later; look again in a while anyway.
                self.pending.recheck(path, max(self.settle, WRITER_RECHECK))
                self.log.debug("file still open for writing, looked at later", extra={"fields": {"file": str(path)}})
                return None
            before = os.fstat(fd)
            chunks = []
            total = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total >= cap:
                    self.log.error("file too large, ignored", extra={"fields": {"file": str(path), "limit": cap - 1}})
                    return None
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or total != after.st_size:
            self.pending.recheck(path, max(self.settle, 0.01))
            return None
        return b"".join(chunks)

    def _writer_has(self, fd: int) -> bool:
        """Whether some process has this file open for writing, asked the Linux way: a read
        lease (``F_SETLEASE``) is refused while any writer has the file open.  The lease is
        dropped when ``fd`` closes (right after the read), so a writer opening the file
        meanwhile waits at most that long.  False where leases are unavailable."""
        if not self.use_leases:
            return False
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except BlockingIOError:
            return True
        except OSError:
            return False  # not the file's owner, or a filesystem without leases
        return False
