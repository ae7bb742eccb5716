"""The per-action folder an isolate works in (SPEC §4.3).

Life of one folder::

    with ActionFolder(limits=..., max_variable_bytes=...) as folder:
        folder.write_files(specs, read, read_into)   # variables -> files, before the call
        folder.start_watch(engine.resource("isolde.outwatcher", OutWatcher))  # optional
        ... call the isolate with Direktiv-TempDir = folder.path ...
        outputs = folder.collect_outputs()           # out/<scope>/ -> values, after the call
        ... stage ctx.set(scope, o.key, o.view(), o.mime) for each, commit ...

Decisions (also in the docs):

* **Layout.** ``<tmp>/isolde-action-XXXXXXXX`` made by ``mkdtemp`` (mode 0700,
  unguessable) holding ``out/instance``, ``out/workflow`` and
  ``out/namespace`` (0700).  Files we write are 0644 and directories 0755
  inside it: the folder's own mode already keeps other users out.
* **Input files** (``files:``).  ``plain`` is the stored bytes; ``base64``
  decodes the stored bytes, ignoring ASCII whitespace, and also accepts a
  JSON string of base64 (what a setter stores by default), so
  ``value: "aGk="`` with the default mime type works; ``tar`` / ``tar.gz`` go
  through :func:`isolde.archive.extract`.  A missing variable is an empty file
  or an empty directory.  ``as`` (or the key) is normalised like an archive
  member name: leading ``/`` stripped, ``..`` refused, parents created.
* **Output mime types.**  A top-level file is stored as
  ``application/octet-stream`` (Direktiv's sidecar stores out files with no
  type, which its API serves as octet-stream); a directory as
  ``application/gzip`` (RFC 6713), its bytes being a tar.gz.  Neither changes
  what a getter returns: the getter's rule looks at the bytes (JSON, else
  text, else base64), so ``echo -n 5 > out/instance/n`` reads back as the
  number 5.
* **Output names and kinds.**  Every top-level name must be a valid variable
  key (``direktiv.var.invalidKey``, nothing is returned); a top-level link,
  FIFO, socket or device is ``isolde.files.unsafe``; inside a directory the
  archive rules apply (``isolde.archive.unsafe``).  Nothing is followed: the
  folder is walked with directory descriptors and ``O_NOFOLLOW``.
* **Size.**  Each value is capped by ``max_variable_bytes``
  (``direktiv.limits.variable``); a directory's cap applies to its tar.gz.
* **Memory.**  Small outputs (≤ 1 MiB) are read into memory; bigger ones are
  staged in a private directory beside the folder (a kernel-side
  ``sendfile`` copy, or the packed tar.gz) and handed out as files:
  :meth:`Output.view` maps one read-only, so a store put can take it as one
  buffer without the value ever being copied into the Python heap.
  :meth:`ActionFolder.collect` keeps the simple ``bytes`` API.
* **Watcher.**  :meth:`ActionFolder.start_watch` follows ``out/<scope>/``
  with watchdog (one observer per engine, :class:`OutWatcher`) and stages a
  big top-level file in the folder's own thread as soon as it is closed after
  writing (or moved in), while the isolate still runs.  It is only a cache:
  ``collect`` re-examines every entry and uses a staged copy only when the
  file's identity (device, inode, size, mtime and ctime in ns) is what it was
  when the copy was made.  Because file timestamps come from a coarse clock,
  a file is staged only once its ctime is at least 30 ms old: any later write
  then gets a newer ctime, so a stale copy can never match.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import mmap
import os
import queue
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from . import archive
from .archive import DIR_FLAGS as _DIR_FLAGS
from .archive import READ_FLAGS as _READ_FLAGS
from .archive import WRITE_FLAGS as _WRITE_FLAGS
from .archive import ArchiveLimits, extract, file_kind, pack_dir, safe_relpath
from .errors import WorkflowError
from .store import SCOPES, InvalidKey, Variable, check_key

__all__ = ["FileSpec", "Output", "ActionFolder", "OutWatcher", "FILE_MIME", "DIR_MIME", "FILE_TYPES"]

FILE_MIME: Final = "application/octet-stream"
DIR_MIME: Final = "application/gzip"
FILE_TYPES: Final = ("plain", "base64", "tar", "tar.gz")

#: Outputs up to this size are read into memory; larger ones are staged as files.
INLINE_MAX: Final = 1 << 20
#: A file is staged by the watcher only once its ctime is this old (see module doc).
SETTLE_NS: Final = 30_000_000

_CHUNK: Final = 1 << 20
_QUEUE_CHUNKS: Final = 4
_WS: Final = b" \t\r\n\v\f"
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)

#: ``read(scope, key)``: a stored variable or None.
Reader = Callable[[str, str], Variable | None]
#: ``read_into(scope, key, write_chunk)``: streams the value to ``write_chunk``, returns its metadata or None.
StreamReader = Callable[[str, str, Callable[[Any], Any]], Variable | None]
Identity = tuple[int, int, int, int, int]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One entry of ``files:`` on an action or a function."""

    key: str
    scope: str = "instance"
    as_: str | None = None
    type: str = "plain"  # plain | base64 | tar | tar.gz

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> FileSpec:
        """From a validated YAML entry (``as`` is a keyword in Python, hence ``as_``)."""
        return cls(
            key=str(fields["key"]),
            scope=fields.get("scope") or "instance",
            as_=fields.get("as") or None,
            type=fields.get("type") or "plain",
        )

    def describe(self) -> str:
        return f"files entry {self.key!r} (scope {self.scope}, type {self.type})"


class Output:
    """One value collected from ``out/<scope>/``.

    Either held in memory (small files) or staged in a private file that lives
    until the folder is closed; :meth:`view` works for both and stays valid
    after ``close()`` (a mapping outlives the unlinked file).
    """

    __slots__ = ("scope", "key", "mime", "size", "_data", "_path")

    def __init__(self, scope: str, key: str, mime: str, size: int, *, data: bytes | None = None, path: str | None = None) -> None:
        self.scope = scope
        self.key = key
        self.mime = mime
        self.size = size
        self._data = data
        self._path = path

    def __repr__(self) -> str:
        where = "memory" if self._data is not None else "staged"
        return f"Output({self.scope!r}, {self.key!r}, {self.mime!r}, {self.size} bytes, {where})"

    def read_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        assert self._path is not None
        with open(self._path, "rb") as f:
            return f.read()

    def open(self) -> BinaryIO:
        """A binary file object, for reading the value in chunks."""
        if self._data is not None:
            return io.BytesIO(self._data)
        assert self._path is not None
        return open(self._path, "rb")

    def view(self) -> memoryview:
        """The value as one read-only buffer without copying it into the heap.

        For a staged value this is a memoryview of a read-only ``mmap``; the
        mapping is released when the last reference to the view goes away
        (drop it after the store put).
        """
        if self._data is not None:
            return memoryview(self._data)
        assert self._path is not None
        if self.size == 0:
            return memoryview(b"")
        fd = os.open(self._path, os.O_RDONLY | _O_CLOEXEC)
        try:
            m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return memoryview(m)


# --------------------------------------------------------------------------- helpers


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _var_limit(where: str, size: int | str, cap: int) -> WorkflowError:
    return WorkflowError(
        "direktiv.limits.variable",
        f"{where} is {size} bytes, over the {cap}-byte variable limit "
        "(raise [limits] max_variable_bytes in isolde.toml); nothing was stored",
    )


def _force_rmtree(path: str) -> None:
    """Remove a tree an isolate may have made read-only or very deep (see ``archive.remove_tree``)."""
    archive.remove_tree(path)


class _B64Writer:
    """Streaming base64 decode into a file descriptor.

    Whitespace is ignored (Go's decoder, which Direktiv uses, skips newlines).
    A value that starts with ``"`` is a JSON string and is decoded whole; it
    is at most ``max_variable_bytes`` long.
    """

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what
        self.carry = b""
        self.started = False
        self.json: list[bytes] | None = None

    def bad(self, why: str) -> WorkflowError:
        return WorkflowError("isolde.files.badBase64", f"{self.what}: the variable is not valid base64 ({why})")

    def decode(self, data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.bad(str(exc)) from None

    def feed(self, chunk: Any) -> None:
        data = bytes(chunk)
        if not self.started:
            head = data.lstrip(_WS)
            if not head:
                return
            self.started = True
            data = head
            if head[:1] == b'"':
                self.json = []
        if self.json is not None:
            self.json.append(data)
            return
        data = self.carry + data.translate(None, _WS)
        n = len(data) - len(data) % 4
        if n:
            _write_all(self.fd, self.decode(data[:n]))
        self.carry = data[n:]

    def finish(self) -> None:
        if self.json is not None:
            try:
                text = json.loads(b"".join(self.json))
            except ValueError:
                raise self.bad("it starts with '\"' but is not a JSON string") from None
            if not isinstance(text, str):
                raise self.bad("it is JSON but not a string")
            try:
                raw = text.encode("ascii")
            except UnicodeEncodeError:
                raise self.bad("non-ASCII characters") from None
            _write_all(self.fd, self.decode(raw.translate(None, _WS)))
        elif self.carry:
            _write_all(self.fd, self.decode(self.carry))


class _Stopped(Exception):
    """Raised inside the producer's callback to abandon a read."""


class _ChunkPipe:
    """Turns the store's push-style ``read_into`` into a file that
    :func:`~isolde.archive.extract` can pull from.

    ``read_into`` runs in a helper thread (it holds a read transaction while
    it streams) and hands over copies of at most a few chunks at a time, so
    memory stays bounded whatever the value's size.
    """

    def __init__(self, read_into: StreamReader, scope: str, key: str) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._buf = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(
            target=self._produce, args=(read_into, scope, key), name="isolde-files-reader", daemon=True
        )
        self._thread.start()

    def _produce(self, read_into: StreamReader, scope: str, key: str) -> None:
        try:
            read_into(scope, key, self._feed)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the reading thread
            self._error = exc
        finally:
            self._put(None)

    def _put(self, item: bytes | None) -> bool:
        while True:
            if self._stop.is_set():
                return False
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue

    def _feed(self, chunk: Any) -> None:
        if not self._put(bytes(chunk)):
            raise _Stopped

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while True:
                part = self.read(_CHUNK)
                if not part:
                    return b"".join(parts)
                parts.append(part)
        while not self._buf:
            if self._eof:
                return b""
            item = self._q.get()
            if item is None:
                self._eof = True
                if self._error is not None:
                    raise self._error
                return b""
            self._buf = memoryview(item)
        out = bytes(self._buf[:size])
        self._buf = self._buf[size:]
        return out

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.05)


class _CappedWriter:
    """A file that refuses to grow past the variable limit while a directory is packed."""

    def __init__(self, f: BinaryIO, cap: int, where: str) -> None:
        self.f = f
        self.cap = cap
        self.where = where
        self.n = 0

    def write(self, data: Any) -> int:
        n = len(data)
        self.n += n
        if self.n > self.cap:
            raise _var_limit(f"{self.where} (as tar.gz)", f"more than {self.cap}", self.cap)
        self.f.write(data)
        return n

    def flush(self) -> None:
        self.f.flush()


# --------------------------------------------------------------------------- watcher


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
    :meth:`ActionFolder.start_watch`; the engine closes it.  watchdog is
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


# --------------------------------------------------------------------------- shared state


class _State:
    """What the folder, its watcher and its finalizer share.

    Kept apart from :class:`ActionFolder` so neither the watcher nor the
    finalizer holds the folder alive: a forgotten folder is still removed
    when it is garbage-collected or at exit.
    """

    def __init__(self, path: str, base: str | None, keep: bool, limits: ArchiveLimits, max_variable_bytes: int) -> None:
        self.path = path
        self.base = base
        self.keep = keep
        self.limits = limits
        self.max_variable_bytes = max_variable_bytes
        self.root_fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
        self.stage_dir: str | None = None
        self.lock = threading.Lock()
        self.staged: dict[tuple[str, str], tuple[Identity, str]] = {}
        self.watcher: OutWatcher | None = None
        self.own_watcher = False
        self.watches: list[Any] = []
        self.stager: threading.Thread | None = None
        self.pending: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stopping = threading.Event()
        self.closed = False

    # -- staging area, beside the folder and unknown to the isolate
    def new_stage_file(self) -> tuple[int, str]:
        with self.lock:
            if self.stage_dir is None:
                self.stage_dir = tempfile.mkdtemp(prefix="isolde-stage-", dir=self.base)
            return tempfile.mkstemp(dir=self.stage_dir)

    # -- directory descriptors; every step refuses a link
    def open_scope(self, scope: str) -> int | None:
        """An fd for ``out/<scope>``; None if the isolate removed it."""
        try:
            out = os.open("out", _DIR_FLAGS, dir_fd=self.root_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.unsafe_dir("out", exc) from None
        try:
            return os.open(scope, _DIR_FLAGS, dir_fd=out)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.unsafe_dir(f"out/{scope}", exc) from None
        finally:
            os.close(out)

    def unsafe_dir(self, rel: str, exc: OSError) -> WorkflowError:
        try:
            st = os.stat(rel, dir_fd=self.root_fd, follow_symlinks=False)
            what = "a regular file" if stat.S_ISREG(st.st_mode) else f"a {file_kind(st.st_mode)}"
        except OSError:
            what = f"unreadable ({exc.strerror})"
        return WorkflowError("isolde.files.unsafe", f"{rel} in the action folder is {what}, not a directory; it is never followed")

    def open_output(self, scope: str, name: str) -> int | None:
        """A read fd for ``out/<scope>/<name>`` (never through a link), or None."""
        try:
            sfd = self.open_scope(scope)
        except WorkflowError:
            return None
        if sfd is None:
            return None
        try:
            return os.open(name, _READ_FLAGS, dir_fd=sfd)
        except OSError:
            return None
        finally:
            os.close(sfd)

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
        fd = self.open_output(scope, name)
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
        fd = self.open_output(scope, name)
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
            before = _identity(st)
            known = self.staged.get((scope, name))
            if known is not None and known[0] == before:
                return  # already have this version
            out, path = self.new_stage_file()
            ok = False
            try:
                ok = self.copy(fd, out, st.st_size) and _identity(os.fstat(fd)) == before
            finally:
                os.close(out)
                if not ok:
                    os.unlink(path)
            if not ok:
                return
            with self.lock:
                old = self.staged.get((scope, name))
                self.staged[(scope, name)] = (before, path)
            if old is not None:
                os.unlink(old[1])
        finally:
            os.close(fd)

    def copy(self, src: int, dst: int, size: int) -> bool:
        """Kernel-side copy of exactly ``size`` bytes; False if stopped or short."""
        offset = 0
        while offset < size:
            if self.stopping.is_set():
                return False
            n = os.sendfile(dst, src, offset, min(8 * _CHUNK, size - offset))
            if n == 0:
                return False
            offset += n
        return True

    def stop_watch(self) -> None:
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


def _cleanup(state: _State) -> None:
    """Stop the watcher, remove the staging area and (unless kept) the folder."""
    state.closed = True
    state.stop_watch()
    try:
        os.close(state.root_fd)
    except OSError:
        pass
    if state.stage_dir is not None:
        archive.remove_tree(state.stage_dir)
    if not state.keep:
        _force_rmtree(state.path)


class _WatchHandler:
    """watchdog calls ``dispatch``; duck-typed so importing this module does not import watchdog."""

    def __init__(self, state: _State) -> None:
        self.state = state
        out = os.path.join(state.path, "out")
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
                self.state.on_event(scope, name)
        except Exception:  # noqa: BLE001 - only a cache; collect() re-reads anything it lacks
            pass


# --------------------------------------------------------------------------- the folder


class ActionFolder:
    """A fresh per-action folder: ``<tmp>/isolde-action-XXXX`` (mode 0700)
    with ``out/instance``, ``out/workflow``, ``out/namespace``.

    ``base`` is where it is made (default: the system temp directory);
    ``keep=True`` leaves it in place after :meth:`close` for debugging.  Use
    it as a context manager, or call :meth:`close` (idempotent).
    """

    def __init__(
        self,
        *,
        base: str | None = None,
        limits: ArchiveLimits = ArchiveLimits(),
        max_variable_bytes: int = 64 << 20,
        keep: bool = False,
    ) -> None:
        path = tempfile.mkdtemp(prefix="isolde-action-", dir=base)  # 0700, unguessable
        try:
            for scope in SCOPES:
                os.makedirs(os.path.join(path, "out", scope), mode=0o700)
            state = _State(path, base, keep, limits, max_variable_bytes)
        except BaseException:
            _force_rmtree(path)
            raise
        self.path = Path(path)
        self.limits = limits
        self.max_variable_bytes = max_variable_bytes
        self._state = state
        self._finalizer = weakref.finalize(self, _cleanup, state)

    def __enter__(self) -> ActionFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ActionFolder({str(self.path)!r})"

    def close(self) -> None:
        """Stop the watcher and remove the folder (unless ``keep``); idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._state.closed

    def _check_open(self) -> None:
        if self._state.closed:
            raise RuntimeError(f"action folder {self.path} is closed")

    # ----------------------------------------------------------------- input

    def write_files(
        self,
        files: Sequence[FileSpec],
        read: Reader,
        read_into: StreamReader | None = None,
    ) -> None:
        """Materialise ``files:`` before the call.

        ``read(scope, key)`` returns a stored Variable or None;
        ``read_into(scope, key, write_chunk)``, when given, streams the value
        in chunks instead (a chunk may be a memoryview valid only during the
        call) and returns the metadata or None.  Values then never sit whole
        in memory.
        """
        self._check_open()
        for spec in files:
            rel = self._target(spec)
            self._make_parents(rel, spec)
            dest = os.path.join(self._state.path, rel)
            kind = spec.type or "plain"
            if kind == "plain":
                self._write_plain(spec, rel, dest, read, read_into)
            elif kind == "base64":
                self._write_base64(spec, rel, dest, read, read_into)
            elif kind in ("tar", "tar.gz"):
                self._write_tar(spec, dest, kind == "tar.gz", read, read_into)
            else:
                raise WorkflowError(
                    "isolde.files.badType",
                    f"{spec.describe()}: unknown type {kind!r} (expected one of {', '.join(FILE_TYPES)})",
                )

    def _target(self, spec: FileSpec) -> str:
        """The entry's path inside the folder, re-checked here even though
        validation checks ``as``: the folder must not trust its caller."""
        name = spec.as_ or spec.key
        field = "as" if spec.as_ else "key"
        try:
            rel = safe_relpath(name)
        except ValueError as exc:
            rel, why = "", str(exc)
        else:
            why = "names the folder itself"
        if not rel:
            raise WorkflowError(
                "isolde.files.unsafePath",
                f"{spec.describe()}: {field} {name!r} {why}; use a relative path inside the action folder",
            )
        return rel

    def _make_parents(self, rel: str, spec: FileSpec) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                st = os.stat(sub, dir_fd=self._state.root_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(sub, 0o755, dir_fd=self._state.root_fd)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise WorkflowError(
                    "isolde.files.conflict", f"{spec.describe()}: cannot write {rel!r}: {sub!r} is already a file"
                )

    def _open_target(self, spec: FileSpec, rel: str, dest: str) -> int:
        try:
            return os.open(dest, _WRITE_FLAGS, 0o644)
        except IsADirectoryError:
            raise WorkflowError(
                "isolde.files.conflict", f"{spec.describe()}: cannot write {rel!r}: it is already a directory"
            ) from None
        except OSError as exc:
            raise WorkflowError("isolde.files.io", f"{spec.describe()}: cannot write {rel!r}: {exc.strerror}") from None

    def _write_plain(self, spec: FileSpec, rel: str, dest: str, read: Reader, read_into: StreamReader | None) -> None:
        fd = self._open_target(spec, rel, dest)
        try:
            if read_into is not None:
                read_into(spec.scope, spec.key, lambda chunk: _write_all(fd, chunk))
            else:
                var = read(spec.scope, spec.key)
                if var is not None:
                    _write_all(fd, var.data)
        except OSError as exc:
            raise WorkflowError("isolde.files.io", f"{spec.describe()}: cannot write {rel!r}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _write_base64(self, spec: FileSpec, rel: str, dest: str, read: Reader, read_into: StreamReader | None) -> None:
        fd = self._open_target(spec, rel, dest)
        try:
            dec = _B64Writer(fd, spec.describe())
            if read_into is not None:
                read_into(spec.scope, spec.key, dec.feed)
            else:
                var = read(spec.scope, spec.key)
                if var is not None:
                    dec.feed(var.data)
            dec.finish()
        except OSError as exc:
            raise WorkflowError("isolde.files.io", f"{spec.describe()}: cannot write {rel!r}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def _write_tar(self, spec: FileSpec, dest: str, gz: bool, read: Reader, read_into: StreamReader | None) -> None:
        label = spec.describe()
        if read_into is None:
            var = read(spec.scope, spec.key)
            extract(io.BytesIO(var.data if var is not None else b""), Path(dest), gzip=gz, limits=self.limits, label=label)
            return
        pipe = _ChunkPipe(read_into, spec.scope, spec.key)
        try:
            extract(pipe, Path(dest), gzip=gz, limits=self.limits, label=label)  # type: ignore[arg-type]
        finally:
            pipe.close()

    # ----------------------------------------------------------------- watcher

    def start_watch(self, watcher: OutWatcher | None = None) -> None:
        """Follow ``out/<scope>/`` while the isolate runs (purely an
        optimisation; see the module docstring).

        Pass the engine's shared :class:`OutWatcher` (adding and removing
        this folder's watches then costs about 0.5 ms); without one the
        folder starts and stops a private observer, which costs a few ms.
        """
        self._check_open()
        state = self._state
        if state.watcher is not None or state.stopping.is_set():
            return
        own = watcher is None
        w = OutWatcher() if watcher is None else watcher
        handler = _WatchHandler(state)
        try:
            state.watches = w.schedule(handler, list(handler.scopes))
        except BaseException:
            if own:
                w.close()
            raise
        state.watcher = w
        state.own_watcher = own

    # ----------------------------------------------------------------- output

    def collect(self) -> list[tuple[str, str, bytes, str]]:
        """``(scope, key, bytes, mime)`` for everything in ``out/<scope>/``.

        The simple form of :meth:`collect_outputs`: every value is read into
        memory.  Raises WorkflowError (and returns nothing) for an invalid
        name, a link / FIFO / device, or a value over a limit.
        """
        return [(o.scope, o.key, o.read_bytes(), o.mime) for o in self.collect_outputs()]

    def collect_outputs(self) -> list[Output]:
        """Sweep ``out/instance``, ``out/workflow``, ``out/namespace`` (in
        that order, names sorted): top-level regular files become values as
        they are, directories become tar.gz.  Authoritative: stops the watcher
        first and re-examines every entry.  All or nothing: the first problem
        raises and no value is returned.
        """
        self._check_open()
        state = self._state
        state.stop_watch()
        fds: dict[str, int] = {}
        try:
            entries: list[tuple[str, str, bool]] = []
            for scope in SCOPES:
                sfd = state.open_scope(scope)
                if sfd is None:
                    continue
                fds[scope] = sfd
                entries.extend(self._scan(scope, sfd))
            return [
                self._collect_dir(scope, name, fds[scope]) if is_dir else self._collect_file(scope, name, fds[scope])
                for scope, name, is_dir in entries
            ]
        finally:
            for fd in fds.values():
                os.close(fd)

    def _scan(self, scope: str, sfd: int) -> list[tuple[str, str, bool]]:
        """Names and kinds of one scope, all checked before any value is read."""
        with os.scandir(sfd) as it:
            names = sorted((os.fsencode(e.name), e.name) for e in it)
        found = []
        for _, name in names:
            where = f"out/{scope}/{name}"
            try:
                check_key(name)
            except InvalidKey as exc:
                raise WorkflowError("direktiv.var.invalidKey", f"{where}: {exc}; rename the file the isolate writes") from None
            try:
                st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_size > self.max_variable_bytes:
                    raise _var_limit(where, st.st_size, self.max_variable_bytes)
                found.append((scope, name, False))
            elif stat.S_ISDIR(st.st_mode):
                found.append((scope, name, True))
            else:
                raise self._unsafe(where, st.st_mode)
        return found

    @staticmethod
    def _unsafe(where: str, mode: int) -> WorkflowError:
        return WorkflowError(
            "isolde.files.unsafe",
            f"{where} is a {file_kind(mode)}; only regular files and directories are collected and links are never followed",
        )

    def _collect_file(self, scope: str, name: str, sfd: int) -> Output:
        where = f"out/{scope}/{name}"
        state = self._state
        cap = self.max_variable_bytes
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=sfd)
        except OSError:
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            raise self._unsafe(where, st.st_mode) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._unsafe(where, st.st_mode)
            staged = state.staged.get((scope, name))
            if staged is not None and staged[0] == _identity(st):
                return Output(scope, name, FILE_MIME, st.st_size, path=staged[1])
            if st.st_size <= INLINE_MAX:
                data = _read_capped(fd, cap)
                if data is None:
                    raise _var_limit(where, f"more than {cap}", cap)
                return Output(scope, name, FILE_MIME, len(data), data=data)
            out, path = state.new_stage_file()
            try:
                size = 0
                while True:
                    n = os.sendfile(out, fd, None, 8 * _CHUNK)
                    if n == 0:
                        break
                    size += n
                    if size > cap:
                        raise _var_limit(where, f"more than {cap}", cap)
            finally:
                os.close(out)
            return Output(scope, name, FILE_MIME, size, path=path)
        finally:
            os.close(fd)

    def _collect_dir(self, scope: str, name: str, sfd: int) -> Output:
        where = f"out/{scope}/{name}"
        out, path = self._state.new_stage_file()
        with open(out, "wb", buffering=_CHUNK) as f:
            writer = _CappedWriter(f, self.max_variable_bytes, where)
            pack_dir(name, writer, limits=self.limits, label=f"directory {where}", dir_fd=sfd)  # type: ignore[arg-type]
        return Output(scope, name, DIR_MIME, writer.n, path=path)


def _read_capped(fd: int, cap: int) -> bytes | None:
    """Read to EOF, or None once more than ``cap`` bytes arrive."""
    parts = []
    total = 0
    while True:
        part = os.read(fd, _CHUNK)
        if not part:
            return b"".join(parts)
        total += len(part)
        if total > cap:
            return None
        parts.append(part)
