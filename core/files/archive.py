"""The archive safety rules, in one place (SPEC §4.3, §7).

Every path that reads or writes a tar goes through this module and its
writing half, :mod:`isolde.files.packing`: ``files:`` entries of type ``tar``
/ ``tar.gz`` are unpacked with :func:`extract`, and directories an isolate
leaves in ``out/<scope>/`` (or a daemon finds in its folder) are packed with
:func:`~isolde.files.packing.pack_dir`.  Keeping the rules here means one
place to audit.

Reading (:func:`extract`)
    * Streaming only (``tarfile`` mode ``r|``), so memory stays flat whatever
      the archive's size; gzip is undone by :class:`gzip.GzipFile`, which
      inflates at most what is asked for (``_Stream``'s own inflater expands a
      whole input block at once and re-slices its buffer on every read, which
      is slow on highly compressible data).
    * Only regular files and directories.  Symlinks, hard links, devices,
      FIFOs and sparse files are refused: we never create a link, so no later
      member can be written "through" one.  Sparse means every form: old GNU
      ``S`` members and the pax ones (GNU.sparse 0.0, 0.1 and 1.0, announced
      by ``GNU.sparse.*`` records); they are refused before tarfile reads
      their sparse map.
    * Member names are normalised by :func:`safe_relpath`: leading ``/`` is
      stripped (Direktiv's packer writes ``/a/b``; an absolute name therefore
      lands *inside* the destination), ``.`` and empty components are dropped,
      and any ``..`` component is refused, even one that would stay inside
      (``a/../b``), as Direktiv does.
    * Caps (:class:`ArchiveLimits`) are checked from the headers *before* any
      data is read: member count, per-file size, total size.  A decompression
      bomb therefore stops at its first header that crosses a cap, having
      inflated at most the cap.  pax / GNU long-name headers, which ``tarfile``
      reads whole into memory, are capped at :data:`MAX_META_BYTES` each and
      count towards the total; a run of more than :data:`MAX_META_CHAIN` of
      them in a row is refused (``tarfile`` processes such a chain
      recursively).
    * All or nothing: members are written into a fresh temporary directory
      beside the destination, which is renamed into place only when the whole
      archive passed.  On any error the temporary directory is removed.
    * An empty source (zero bytes) is an empty directory, as in Direktiv,
      where a missing variable reads as zero bytes.

Writing: :func:`isolde.files.packing.pack_dir`, with the same limits and codes.

Error codes (all :class:`isolde.WorkflowError`, so ``catch`` can match them):
``direktiv.limits.archive`` (a cap was reached; the message names the
``[limits]`` setting that raises it), ``isolde.archive.unsafe`` (a link,
device, escaping name or a name clash) and ``isolde.archive.invalid`` (the
bytes are not a tar / gzip stream, or a file changed while it was packed).
"""

from __future__ import annotations

import gzip as _gzip
import os
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, cast

from ..errors import WorkflowError
from .paths import WRITE_FLAGS, remove_tree, safe_relpath, write_all

__all__ = [
    "ArchiveLimits",
    "LIMIT_CODE",
    "UNSAFE_CODE",
    "INVALID_CODE",
    "MAX_META_BYTES",
    "MAX_META_CHAIN",
    "Readable",
    "extract",
    "limit_hint",
]

LIMIT_CODE: Final = "direktiv.limits.archive"
UNSAFE_CODE: Final = "isolde.archive.unsafe"
INVALID_CODE: Final = "isolde.archive.invalid"

#: Largest single pax / GNU long-name header; tarfile reads these whole.
MAX_META_BYTES: Final = 1 << 20
#: Longest run of such headers before a real member (tarfile recurses on them).
MAX_META_CHAIN: Final = 16

_CHUNK: Final = 1 << 20
_META_TYPES: Final = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
)
_SPARSE_WHY: Final = "is a sparse file (only plain regular files and directories are allowed)"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Caps on one archive, read or written.

    Defaults are generous for real build trees yet keep a hostile archive from
    filling the disk.  In the config they are ``[limits]
    archive_max_members``, ``archive_max_member_bytes`` and
    ``archive_max_total_bytes``.
    """

    max_members: int = 10_000
    max_member_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30

    @classmethod
    def from_config(cls, config: Any) -> ArchiveLimits:
        """The limits an engine's config sets (``config.limit(name)``)."""
        return cls(
            max_members=int(config.limit("archive_max_members")),
            max_member_bytes=int(config.limit("archive_max_member_bytes")),
            max_total_bytes=int(config.limit("archive_max_total_bytes")),
        )


def _member_kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return f"symbolic link (to {m.linkname!r})"
    if m.islnk():
        return f"hard link (to {m.linkname!r})"
    if m.ischr():
        return "character device"
    if m.isblk():
        return "block device"
    if m.isfifo():
        return "FIFO"
    return f"member of unsupported type {m.type!r}"


def limit_hint(setting: str) -> str:
    return f"raise [limits] {setting} in isolde.toml if this archive is legitimate"


# --------------------------------------------------------------------------- reading


class Readable(Protocol):
    """What :func:`extract` reads from: a binary file, a socket file, the store's value stream."""

    def read(self, size: int = -1, /) -> bytes: ...


class _Prefixed:
    """``source`` with ``head`` (already read from it) put back in front."""

    def __init__(self, head: bytes, source: Readable) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1) -> bytes:
        head = self._head
        if head:
            if size is None or size < 0:
                self._head = b""
                return head + self._source.read()
            if size <= len(head):
                self._head = head[size:]
                return head[:size]
            self._head = b""
            return head + self._source.read(size - len(head))
        return self._source.read(size)


class _Extractor:
    """One extraction: the running counters and the member handlers."""

    def __init__(self, root: str, limits: ArchiveLimits, what: str, gzip: bool) -> None:
        self.root = root
        self.limits = limits
        self.what = what
        self.fmt = "tar.gz" if gzip else "tar"
        self.kinds: dict[str, str] = {"": "dir"}  # everything we created: we never ask the filesystem
        self.members = 0
        self.total = 0
        self.meta = 0
        self.chain = 0

    # -- errors
    def unsafe(self, name: str, why: str) -> WorkflowError:
        return WorkflowError(UNSAFE_CODE, f"{self.what}: member {name!r} {why}; nothing was extracted")

    def limit(self, msg: str, setting: str) -> WorkflowError:
        return WorkflowError(LIMIT_CODE, f"{self.what}: {msg}; nothing was extracted ({limit_hint(setting)})")

    def invalid(self, exc: BaseException) -> WorkflowError:
        detail = str(exc) or type(exc).__name__
        return WorkflowError(INVALID_CODE, f"{self.what}: not a valid {self.fmt} archive ({detail}); nothing was extracted")

    def io_error(self, name: str, exc: OSError) -> WorkflowError:
        return WorkflowError("isolde.files.io", f"{self.what}: cannot write member {name!r}: {exc.strerror or exc}")

    # -- header guard, called by tarfile for every raw header (see _tarinfo_class)
    def header(self, ti: tarfile.TarInfo) -> None:
        if ti.type == tarfile.GNUTYPE_SPARSE:
            raise self.unsafe(ti.name, _SPARSE_WHY)
        if ti.type in _META_TYPES:
            if ti.size > MAX_META_BYTES:
                raise self.limit(
                    f"an extended (pax / long-name) header of {ti.size} bytes is over the {MAX_META_BYTES}-byte cap",
                    "archive_max_total_bytes",
                )
            self.chain += 1
            if self.chain > MAX_META_CHAIN:
                raise self.unsafe(ti.name, f"is preceded by more than {MAX_META_CHAIN} extended headers in a row")
            self.meta += 1
            if self.meta > self.limits.max_members:
                raise self.limit(
                    f"more than {self.limits.max_members} extended headers", "archive_max_members"
                )
            self.total += ti.size
            if self.total > self.limits.max_total_bytes:
                raise self.limit(
                    f"more than {self.limits.max_total_bytes} bytes in total", "archive_max_total_bytes"
                )

    def tarinfo_class(self) -> type[tarfile.TarInfo]:
        """A TarInfo whose header processing passes through :meth:`header`.

        ``_proc_member`` is tarfile's documented extension point for custom
        header types (see its comment in tarfile.py); hooking it is the only
        way to see a pax header's size before tarfile reads it into memory.
        ``test_archive`` has a pax bomb that fails if this hook ever stops
        being called.

        The three ``_proc_gnusparse_*`` methods are where tarfile's pax
        reader applies a GNU.sparse 0.0 / 0.1 / 1.0 record to the member it
        announces (1.0 first reads a sparse map of any length from the data);
        they refuse instead.  :meth:`member` checks the member again, so a
        tarfile that stopped calling them would still not expand one.
        """
        guard = self

        def refuse(member: tarfile.TarInfo, pax_headers: dict[str, str]) -> WorkflowError:
            return guard.unsafe(pax_headers.get("GNU.sparse.name") or member.name, _SPARSE_WHY)

        class _GuardedTarInfo(tarfile.TarInfo):
            def _proc_member(self, tf: tarfile.TarFile) -> Any:
                guard.header(self)
                return super()._proc_member(tf)  # type: ignore[misc]

            def _proc_gnusparse_00(self, next: tarfile.TarInfo, pax_headers: dict[str, str], buf: bytes) -> None:
                raise refuse(next, pax_headers)

            def _proc_gnusparse_01(self, next: tarfile.TarInfo, pax_headers: dict[str, str]) -> None:
                raise refuse(next, pax_headers)

            def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict[str, str], tf: tarfile.TarFile) -> None:
                raise refuse(next, pax_headers)

        return _GuardedTarInfo

    # -- the walk
    def run(self, source: Readable) -> None:
        head = source.read(_CHUNK)
        if not head:
            return  # zero bytes: an empty directory (a missing variable)
        stream: Any = _Prefixed(head, source)
        try:
            if self.fmt == "tar.gz":
                stream = _gzip.GzipFile(fileobj=stream, mode="rb")
            tf = tarfile.open(
                fileobj=stream,
                mode="r|",
                bufsize=_CHUNK,
                tarinfo=self.tarinfo_class(),
                encoding="utf-8",
                errors="surrogateescape",
            )
            with tf:
                while True:
                    member = tf.next()
                    if member is None:
                        break
                    cast(Any, tf).members.clear()  # stream mode keeps every TarInfo otherwise
                    self.chain = 0
                    self.member(tf, member)
        except WorkflowError:
            raise
        except (tarfile.TarError, EOFError, zlib.error, _gzip.BadGzipFile) as exc:
            raise self.invalid(exc) from None
        except OSError as exc:  # reading the source (writes are converted where they happen)
            raise self.invalid(exc) from None

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        name = m.name
        if m.sparse is not None or any(k.startswith("GNU.sparse.") for k in m.pax_headers):
            raise self.unsafe(name, _SPARSE_WHY)
        self.members += 1
        if self.members > self.limits.max_members:
            raise self.limit(f"more than {self.limits.max_members} members", "archive_max_members")
        if m.isdir():
            kind = "dir"
        elif m.isreg():
            kind = "file"
        else:
            raise self.unsafe(name, f"is a {_member_kind(m)} (only regular files and directories are allowed)")
        try:
            rel = safe_relpath(name)
        except ValueError as exc:
            raise self.unsafe(name, str(exc)) from None
        if kind == "dir":
            if rel:
                self.ensure_dir(rel, name)
            return
        if not rel:
            raise self.unsafe(name, "is a file without a name")
        size = m.size
        if size > self.limits.max_member_bytes:
            raise self.limit(
                f"member {name!r} is {size} bytes, over the {self.limits.max_member_bytes}-byte per-file cap",
                "archive_max_member_bytes",
            )
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise self.limit(
                f"member {name!r} takes the archive over {self.limits.max_total_bytes} bytes in total",
                "archive_max_total_bytes",
            )
        parent = rel.rpartition("/")[0]
        if parent:
            self.ensure_dir(parent, name)
        if self.kinds.get(rel) == "dir":
            raise self.unsafe(name, "is a file where the archive already has a directory")
        self.kinds[rel] = "file"
        mode = 0o755 if m.mode & 0o100 else 0o644
        try:
            fd = os.open(os.path.join(self.root, rel), WRITE_FLAGS, mode)
        except OSError as exc:
            raise self.io_error(name, exc) from None
        try:
            src = tf.extractfile(m)
            assert src is not None  # a regular member always has a file object
            remaining = size
            while remaining:
                chunk = src.read(min(_CHUNK, remaining))
                if not chunk:
                    raise tarfile.ReadError(f"unexpected end of data in member {name!r}")
                remaining -= len(chunk)
                try:
                    write_all(fd, chunk)
                except OSError as exc:
                    raise self.io_error(name, exc) from None
        finally:
            os.close(fd)

    def ensure_dir(self, rel: str, name: str) -> None:
        kinds = self.kinds
        if kinds.get(rel) == "dir":
            return
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            k = kinds.get(sub)
            if k == "dir":
                continue
            if k == "file":
                raise self.unsafe(name, f"needs {sub!r} to be a directory but the archive made it a file")
            self.members += 1  # directories a name implies count like members: no inode bomb
            if self.members > self.limits.max_members:
                raise self.limit(f"more than {self.limits.max_members} members (directories included)", "archive_max_members")
            try:
                os.mkdir(os.path.join(self.root, sub), 0o755)
            except OSError as exc:
                raise self.io_error(name, exc) from None
            kinds[sub] = "dir"


def _rmtree(path: str) -> None:
    try:
        remove_tree(path)
    except BaseException:  # never mask the error that made us clean up
        pass


def extract(
    source: Readable,
    dest_dir: Path,
    *,
    gzip: bool,
    limits: ArchiveLimits,
    label: str | None = None,
) -> None:
    """Unpack a tar (``gzip=False``) or tar.gz stream into ``dest_dir``.

    ``dest_dir`` must not exist or be an empty directory; its parent must
    exist.  All or nothing: on any violation a WorkflowError is raised (see the
    module docstring for codes) and ``dest_dir`` is left as it was.
    ``label`` names the archive in messages (e.g. the variable it came from).
    """
    dest = Path(dest_dir)
    what = label or f"archive for {dest.name!r}"
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        pass
    else:
        nonempty = True
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(dest) as it:
                nonempty = any(True for _ in it)
        if nonempty:
            raise WorkflowError(
                UNSAFE_CODE, f"{what}: cannot extract into {dest.name!r}: it already exists and is not an empty directory"
            )
    tmp = tempfile.mkdtemp(prefix=".isolde-extract-", dir=dest.parent)
    try:
        _Extractor(tmp, limits, what, gzip).run(source)
        try:
            os.rename(tmp, dest)  # atomic; replaces an empty directory
        except OSError as exc:
            raise WorkflowError(UNSAFE_CODE, f"{what}: cannot move the extracted tree to {dest.name!r}: {exc.strerror}") from None
    except BaseException:
        _rmtree(tmp)
        raise
