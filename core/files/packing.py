"""Packing a directory as a deterministic tar.gz (SPEC §4.3): the writing half
of the archive rules (:mod:`isolde.files.archive` holds the limits and codes).

* Members sorted per directory by the bytes of their names (a directory is
  followed by its contents, like GNU ``tar --sort=name``), names relative
  without a leading ``./`` or ``/``, mtime/uid/gid zero, empty owner names,
  modes normalised to 0755/0644, gzip header with mtime 0 and no file name,
  compression level 6 (gzip's default, so the speed is comparable to
  ``tar czf``).
* Never follows a symlink: the tree is walked with directory file descriptors
  and ``O_NOFOLLOW``, so swapping a directory for a link while we walk cannot
  redirect us.  Links, FIFOs, sockets and devices anywhere in the tree are
  refused with an error naming them.
* The same caps as reading (:class:`~isolde.files.archive.ArchiveLimits`).
"""

from __future__ import annotations

import gzip as _gzip
import os
import stat
import tarfile
from pathlib import Path
from typing import IO, Any, BinaryIO, Final

from ..errors import WorkflowError
from .archive import INVALID_CODE, LIMIT_CODE, UNSAFE_CODE, ArchiveLimits, limit_hint
from .paths import DIR_FLAGS, MAX_DEPTH, READ_FLAGS, file_kind

__all__ = ["pack_dir"]

_CHUNK: Final = 1 << 20
_GZIP_LEVEL: Final = 6


class _Packer:
    def __init__(self, limits: ArchiveLimits, what: str) -> None:
        self.limits = limits
        self.what = what
        self.members = 0
        self.total = 0

    def unsafe(self, rel: str, why: str) -> WorkflowError:
        return WorkflowError(UNSAFE_CODE, f"{self.what}: {rel!r} {why}; links and special files are never followed or stored")

    def limit(self, msg: str, setting: str) -> WorkflowError:
        return WorkflowError(LIMIT_CODE, f"{self.what}: {msg} ({limit_hint(setting)})")

    def count(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise self.limit(f"more than {self.limits.max_members} entries", "archive_max_members")

    @staticmethod
    def info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.size = size
        ti.mtime = 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    def walk(self, tf: tarfile.TarFile, dir_fd: int, prefix: str, depth: int) -> None:
        with os.scandir(dir_fd) as it:
            names = sorted((os.fsencode(e.name), e.name) for e in it)
        for _, name in names:
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walk: it is not part of the result
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                self.count()
                if depth + 1 > MAX_DEPTH:
                    raise self.unsafe(rel, f"is nested deeper than {MAX_DEPTH} directories")
                try:
                    sub = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError as exc:
                    raise self.unsafe(rel, f"could not be opened as a directory ({exc.strerror})") from None
                try:
                    tf.addfile(self.info(rel, tarfile.DIRTYPE, 0o755, 0))
                    self.walk(tf, sub, rel + "/", depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(mode):
                self.file(tf, dir_fd, name, rel)
            else:
                raise self.unsafe(rel, f"is a {file_kind(mode)}")

    def file(self, tf: tarfile.TarFile, dir_fd: int, name: str, rel: str) -> None:
        self.count()
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            raise self.unsafe(rel, f"could not be opened as a regular file ({exc.strerror})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self.unsafe(rel, f"is a {file_kind(st.st_mode)}")
            size = st.st_size
            if size > self.limits.max_member_bytes:
                raise self.limit(
                    f"{rel!r} is {size} bytes, over the {self.limits.max_member_bytes}-byte per-file cap",
                    "archive_max_member_bytes",
                )
            self.total += size
            if self.total > self.limits.max_total_bytes:
                raise self.limit(f"more than {self.limits.max_total_bytes} bytes in total", "archive_max_total_bytes")
            mode = 0o755 if st.st_mode & 0o100 else 0o644
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                try:
                    tf.addfile(self.info(rel, tarfile.REGTYPE, mode, size), f)
                except OSError as exc:
                    if "unexpected end of data" in str(exc):
                        raise WorkflowError(
                            INVALID_CODE, f"{self.what}: {rel!r} shrank while it was being packed"
                        ) from None
                    raise
        finally:
            os.close(fd)


def pack_dir(
    src_dir: Path | str,
    out: BinaryIO | IO[bytes],
    *,
    limits: ArchiveLimits,
    label: str | None = None,
    dir_fd: int | None = None,
) -> None:
    """Write a deterministic tar.gz of ``src_dir``'s files and directories to ``out``.

    Streaming: memory use does not depend on the tree's size.  ``dir_fd``
    makes ``src_dir`` relative to an open directory (and the walk then never
    passes through a path that could be swapped for a link).  Raises
    WorkflowError naming the path for a link, FIFO, socket or device anywhere
    in the tree, or when a cap is reached; ``out`` then holds a partial
    stream the caller discards.
    """
    what = label or f"directory {os.fspath(src_dir)!r}"
    try:
        root = os.open(src_dir, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        try:
            st = os.stat(src_dir, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise WorkflowError(INVALID_CODE, f"{what}: cannot open ({exc.strerror})") from None
        raise WorkflowError(UNSAFE_CODE, f"{what} is a {file_kind(st.st_mode)}, not a directory; it is never followed") from None
    sink = _Sink(out)
    try:
        packer = _Packer(limits, what)
        gz = _gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=_GZIP_LEVEL, mtime=0)
        try:
            # Plain "w" mode over our own GzipFile is what tarfile's "w:gz"
            # does, minus the file name and timestamp in the gzip header.
            tf = tarfile.TarFile(
                fileobj=gz,
                mode="w",
                format=tarfile.PAX_FORMAT,
                encoding="utf-8",
                errors="surrogateescape",
                copybufsize=_CHUNK,
            )
            packer.walk(tf, root, "", 0)
            tf.close()
        except BaseException:
            sink.dead = True  # the caller discards the stream: don't write a trailer into it
            raise
        finally:
            gz.close()
    finally:
        os.close(root)


class _Sink:
    """``out`` behind a switch, so an aborted gzip stream writes nothing more."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.dead = False

    def write(self, data: bytes) -> int:
        if self.dead:
            return len(data)
        n = self.out.write(data)
        return len(data) if n is None else n

    def flush(self) -> None:
        if not self.dead and hasattr(self.out, "flush"):
            self.out.flush()
