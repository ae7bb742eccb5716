"""Collecting ``out/<scope>/`` after the call (SPEC §4.3).

* Every top-level name must be a valid variable key (``direktiv.var.invalidKey``,
  nothing is returned); a top-level link, FIFO, socket or device is
  ``isolde.files.unsafe``; inside a directory the archive rules apply
  (``isolde.archive.unsafe``).  Nothing is followed: the folder is walked
  with directory descriptors and ``O_NOFOLLOW``.
* A top-level file is stored as ``application/octet-stream`` (Direktiv's
  sidecar stores out files with no type, which its API serves as
  octet-stream); a directory as ``application/gzip`` (RFC 6713), its bytes
  being a deterministic tar.gz.  Neither changes what a getter returns: the
  getter's rule looks at the bytes.
* Each value is capped by ``max_variable_bytes`` (``direktiv.limits.variable``);
  a directory's cap applies to its tar.gz.
* Small outputs (<= :data:`INLINE_MAX`) are read into memory; bigger ones are
  staged in the folder's :class:`~isolde.files.staging.StageArea` (a
  kernel-side ``sendfile`` copy, or the packed tar.gz) and handed out as
  files: :meth:`Output.view` maps one read-only, so a store put can take it as
  one buffer without the value ever being copied into the Python heap.  A
  copy the watcher staged while the isolate ran is used when the file is
  unchanged since.
"""

from __future__ import annotations

import io
import mmap
import os
import stat
from typing import Any, BinaryIO, Final

from ..errors import WorkflowError
from ..store import SCOPES, InvalidKey, check_key
from .archive import ArchiveLimits
from .packing import pack_dir
from .paths import READ_FLAGS, file_kind, open_scope
from .staging import StageArea, identity

__all__ = ["Collector", "Output", "FILE_MIME", "DIR_MIME", "INLINE_MAX", "var_limit"]

FILE_MIME: Final = "application/octet-stream"
DIR_MIME: Final = "application/gzip"
#: Outputs up to this size are read into memory; larger ones are staged as files.
INLINE_MAX: Final = 1 << 20

_CHUNK: Final = 1 << 20
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


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



def var_limit(where: str, size: int | str, cap: int) -> WorkflowError:
    return WorkflowError(
        "direktiv.limits.variable",
        f"{where} is {size} bytes, over the {cap}-byte variable limit "
        "(raise [limits] max_variable_bytes in isolde.toml); nothing was stored",
    )



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
            raise var_limit(f"{self.where} (as tar.gz)", f"more than {self.cap}", self.cap)
        self.f.write(data)
        return n

    def flush(self) -> None:
        self.f.flush()



class Collector:
    """Collects the ``out/`` of one action folder (``root_fd``, a directory fd)."""

    def __init__(self, root_fd: int, stage: StageArea, limits: ArchiveLimits, max_variable_bytes: int) -> None:
        self.root_fd = root_fd
        self.stage = stage
        self.limits = limits
        self.max_variable_bytes = max_variable_bytes

    def collect(self) -> list[Output]:
        """Sweep ``out/instance``, ``out/workflow``, ``out/namespace`` (in
        that order, names sorted): top-level regular files become values as
        they are, directories become tar.gz.  All or nothing: the first
        problem raises and no value is returned.
        """
        fds: dict[str, int] = {}
        try:
            entries: list[tuple[str, str, bool]] = []
            for scope in SCOPES:
                sfd = open_scope(self.root_fd, scope)
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
                    raise var_limit(where, st.st_size, self.max_variable_bytes)
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
        cap = self.max_variable_bytes
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=sfd)
        except OSError:
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            raise self._unsafe(where, st.st_mode) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._unsafe(where, st.st_mode)
            staged = self.stage.copy_of(scope, name, identity(st))
            if staged is not None:
                return Output(scope, name, FILE_MIME, st.st_size, path=staged)
            if st.st_size <= INLINE_MAX:
                data = _read_capped(fd, cap)
                if data is None:
                    raise var_limit(where, f"more than {cap}", cap)
                return Output(scope, name, FILE_MIME, len(data), data=data)
            out, path = self.stage.new_file()
            try:
                size = 0
                while True:
                    n = os.sendfile(out, fd, None, 8 * _CHUNK)
                    if n == 0:
                        break
                    size += n
                    if size > cap:
                        raise var_limit(where, f"more than {cap}", cap)
            finally:
                os.close(out)
            return Output(scope, name, FILE_MIME, size, path=path)
        finally:
            os.close(fd)

    def _collect_dir(self, scope: str, name: str, sfd: int) -> Output:
        where = f"out/{scope}/{name}"
        out, path = self.stage.new_file()
        with open(out, "wb", buffering=_CHUNK) as f:
            writer = _CappedWriter(f, self.max_variable_bytes, where)
            pack_dir(name, writer, limits=self.limits, label=f"directory {where}", dir_fd=sfd)  # type: ignore[arg-type]
        return Output(scope, name, DIR_MIME, writer.n, path=path)


def _read_capped(fd: int, cap: int) -> bytes | None:
    """Read to EOF, or None once more than ``cap`` bytes arrive."""
    parts: list[bytes] = []
    total = 0
    while True:
        part = os.read(fd, _CHUNK)
        if not part:
            return b"".join(parts)
        total += len(part)
        if total > cap:
            return None
        parts.append(part)
