"""Blob files: values larger than ``blob_threshold`` kept as files ``blobs/<name>``.

The name is 128 random bits in hex.  LMDB would hold a whole write's dirty pages
on the heap until the commit and count a read of the map as resident memory; a
file can be written and read in chunks.  The protocol that keeps a batch atomic
and durable (the store drives it):

1. Before the write is queued (outside the writer lock, so group commit is
   unaffected) each large value is written to a new file in 1 MiB chunks,
   straight from the caller's buffer (the pages of a read-only mmap are
   released as they are written), and, with the durable store, the file and
   the directory are fsynced.  The writer holds an ``flock`` on each new file
   until its transaction has finished.
2. The transaction puts the records that reference the files and their entries
   in the ``blobs`` index.  A failing batch commits none; its files are removed.
3. After the commit, the files of replaced or deleted values are unlinked.

A crash between 1 and 2 or between 2 and 3 leaves files that no record
references; ``sweep`` removes any that the index does not list, that is older
than the grace period and that no writer holds locked.

Test hook: when the environment variable ``ISOLDE_TEST_BLOB_PAUSE`` is set
(seconds), a write sleeps that long after its blob files are durable and before
its transaction is queued, so a test can kill the process exactly there.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import time
from collections.abc import Callable, Sequence

from .codec import BLOB_NAME_LEN, Stub, blob_ref
from .keys import key_name
from .readers import FileReader
from .types import StoreError, Variable

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["BlobFiles", "NewBlob", "BLOB_CHUNK", "GRACE"]

BLOB_CHUNK: Final[int] = 1 << 20
GRACE: Final[float] = 60.0  # seconds before an unreferenced blob counts as garbage
_NAME_RE: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{32}")
_PAUSE_ENV: Final[str] = "ISOLDE_TEST_BLOB_PAUSE"

Listed = Callable[[list[str]], set[str]]  # which of these names the index lists


class NewBlob:
    """A blob file written for a pending write: its name, the reference bytes
    that go into the record, and the descriptor whose ``flock`` tells the
    sweeper that a commit is still pending."""

    __slots__ = ("name", "ref", "fd")

    def __init__(self, name: str, size: int, fd: int) -> None:
        self.name = name
        self.ref = blob_ref(size, name)
        self.fd = fd


def fsync_dir(path: str) -> None:
    """Make the directory's entries (a new file's name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobFiles:
    """The blob directory of one store: ``<path>/blobs``."""

    __slots__ = ("root", "dir", "durable", "_ready")

    def __init__(self, root: str, durable: bool) -> None:
        self.root = root
        self.dir = os.path.join(root, "blobs")
        self.durable = durable
        self._ready = False

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _ensure_dir(self) -> None:
        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            pass
        if self.durable:
            fsync_dir(self.root)
        self._ready = True

    def new(self, data: bytes | bytearray | memoryview, kb: bytes) -> NewBlob:
        """Write one large value to a new, locked blob file in chunks, without
        copying it whole; fsynced with the durable store (the directory is
        synced by the caller, once per write)."""
        import mmap  # only large writes need it; kept off the cold start

        madv_dontneed = getattr(mmap, "MADV_DONTNEED", None)
        mv = memoryview(data)
        try:
            mv = mv.cast("B")  # bytes, whatever the item format (C-contiguous views only)
        except (TypeError, ValueError):
            mv = memoryview(mv.tobytes())  # a strided or non-native view: one copy
        src = mv.obj
        # Pages of a read-only shared mmap (Output.view()) are released once
        # written: they stay in the page cache but stop counting as resident.
        release = (
            madv_dontneed is not None and mv.readonly
            and isinstance(src, mmap.mmap) and len(src) == mv.nbytes
        )
        size = mv.nbytes
        try:
            if not self._ready:
                self._ensure_dir()
            while True:
                name = os.urandom(BLOB_NAME_LEN // 2).hex()  # what secrets.token_hex does
                path = self.path(name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    break
                except FileExistsError:  # 128 random bits: only in theory
                    continue
        except OSError as e:
            raise StoreError(
                f"variable {key_name(kb)!r}: cannot create a blob file in {self.dir!r}: {e.strerror}"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # "commit pending": the sweeper keeps off
            off = done = 0
            page = mmap.PAGESIZE
            while off < size:
                off += os.write(fd, mv[off : off + BLOB_CHUNK])
                if release and isinstance(src, mmap.mmap) and madv_dontneed is not None:
                    edge = size if off >= size else off - off % page
                    if edge > done:
                        src.madvise(madv_dontneed, done, edge - done)
                        done = edge
            if self.durable:
                os.fsync(fd)
        except BaseException as e:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise StoreError(
                    f"variable {key_name(kb)!r}: cannot write blob file {path!r}: {e.strerror}"
                ) from e
            raise
        return NewBlob(name, size, fd)

    def sync_dir(self) -> None:
        if self.durable:
            fsync_dir(self.dir)

    def write_all(self, values: Sequence[tuple[bytes, bytes | bytearray | memoryview]]) -> list[NewBlob]:
        """Step 1 for a batch: every large value (``(key, data)``) to its file,
        durable before the transaction that references it is queued."""
        made: list[NewBlob] = []
        try:
            for kb, data in values:
                made.append(self.new(data, kb))
            self.sync_dir()
            pause = os.environ.get(_PAUSE_ENV)
            if pause:
                time.sleep(float(pause))  # test hook: die here, files written, nothing committed
        except BaseException:
            self.unlink([nb.name.encode() for nb in made])
            for nb in made:
                os.close(nb.fd)
            raise
        return made

    def settle(
        self, made: Sequence[NewBlob], drop: Sequence[bytes] | None, *, verify: bool,
        listed: Listed,
    ) -> None:
        """Step 3: unlink the blobs the commit dropped.  With ``verify`` (the
        write failed, or may not have used every new file), new files that the
        index does not list are removed too.  Finally the new files' locks
        are released."""
        try:
            if drop:
                self.unlink(drop)
            if verify and made:
                try:
                    live: set[str] | None = listed([nb.name for nb in made])
                except StoreError:
                    live = None  # closed meanwhile: the sweep will judge
                if live is not None:
                    self.unlink([nb.name.encode() for nb in made if nb.name not in live])
        finally:
            for nb in made:
                os.close(nb.fd)

    def unlink(self, names: Sequence[bytes]) -> None:
        for name in names:
            try:
                os.unlink(self.path(name.decode("ascii")))
            except OSError:
                pass  # gone already, or left for the sweep

    def load(self, st: Stub) -> Variable:
        """Read a blob whole.  FileNotFoundError means a writer replaced the
        value after the snapshot that produced ``st``: the caller retries."""
        path = self.path(st.name)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
        if len(data) != st.size:
            raise self._damaged(path, len(data), st.size)
        return st.variable(data)

    def open(self, st: Stub) -> FileReader:
        """A stream of a blob; FileNotFoundError as for ``load``."""
        path = self.path(st.name)
        try:
            raw = io.FileIO(path, "rb")
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
        actual = os.fstat(raw.fileno()).st_size
        if actual != st.size:
            raw.close()
            raise self._damaged(path, actual, st.size)
        return FileReader(raw, st.mime, st.size, st.version)

    def stream(self, st: Stub, write: Callable[[memoryview], object], chunk: int) -> None:
        """Feed a blob to ``write`` in chunks of one reused buffer."""
        path = self.path(st.name)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
        with f:
            buf = bytearray(chunk)
            view = memoryview(buf)
            total = 0
            while n := f.readinto(buf):
                write(view[:n])
                total += n
        if total != st.size:
            raise self._damaged(path, total, st.size)

    @staticmethod
    def _damaged(path: str, actual: int, expected: int) -> StoreError:
        return StoreError(
            f"blob file {path!r} has {actual} bytes, its record says {expected}: "
            f"the variable store is damaged"
        )

    def missing(self, name: str) -> StoreError:
        return StoreError(
            f"blob file {self.path(name)!r} is missing although its variable still "
            f"references it (removed outside isolde?)"
        )

    def sweep(self, min_age: float, listed: Listed) -> int:
        """Remove unreferenced blob files; returns how many.  Listed names are
        checked against the index in one snapshot; only the unlisted ones are
        opened.  A file is removed only when it is old enough, its ``flock``
        can be taken (no writer is still committing it) and a fresh snapshot,
        taken under that lock, still does not list it."""
        try:
            names = [n for n in os.listdir(self.dir) if _NAME_RE.fullmatch(n)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        if not names:
            return 0
        live = listed(names)
        now = time.time()
        removed = 0
        for name in names:
            if name in live:
                continue
            path = self.path(name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if now - os.fstat(fd).st_mtime < min_age:
                    continue  # maybe still being written
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer has not finished its transaction
                if listed([name]):
                    continue  # committed since the first look
                try:
                    os.unlink(path)
                    removed += 1
                except OSError:
                    pass
            finally:
                os.close(fd)
        return removed
