"""The archive safety rules, in one place (SPEC §4.3, §7).

Every path that reads or writes a tar goes through this module: ``files:``
entries of type ``tar`` / ``tar.gz`` are unpacked with :func:`extract`, and
directories an isolate leaves in ``out/<scope>/`` are packed with
:func:`pack_dir`.  Keeping the rules here means one place to audit.

Reading (:func:`extract`)
    * Streaming only (``tarfile`` mode ``r|``), so memory stays flat whatever
      the archive's size; gzip is undone by :class:`gzip.GzipFile`, which
      inflates at most what is asked for (``_Stream``'s own inflater expands a
      whole input block at once and re-slices its buffer on every read, which
      is slow on highly compressible data).
    * Only regular files and directories.  Symlinks, hard links, devices,
      FIFOs and sparse files are refused: we never create a link, so no later
      member can be written "through" one.
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

Writing (:func:`pack_dir`)
    * A deterministic tar.gz: members sorted per directory by the bytes of
      their names (a directory is followed by its contents, like GNU
      ``tar --sort=name``), names relative without a leading ``./`` or ``/``,
      mtime/uid/gid zero, empty owner names, modes normalised to 0755/0644,
      gzip header with mtime 0 and no file name, compression level 6 (gzip's
      default, so the speed is comparable to ``tar czf``).
    * Never follows a symlink: the tree is walked with directory file
      descriptors and ``O_NOFOLLOW``, so swapping a directory for a link while
      we walk cannot redirect us.  Links, FIFOs, sockets and devices anywhere
      in the tree are refused with an error naming them.
    * The same caps as reading.

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
from typing import IO, Any, BinaryIO, Final

from .errors import WorkflowError

__all__ = [
    "ArchiveLimits",
    "LIMIT_CODE",
    "UNSAFE_CODE",
    "INVALID_CODE",
    "MAX_META_BYTES",
    "MAX_META_CHAIN",
    "MAX_DEPTH",
    "extract",
    "file_kind",
    "pack_dir",
    "safe_relpath",
]

LIMIT_CODE: Final = "direktiv.limits.archive"
UNSAFE_CODE: Final = "isolde.archive.unsafe"
INVALID_CODE: Final = "isolde.archive.invalid"

#: Largest single pax / GNU long-name header; tarfile reads these whole.
MAX_META_BYTES: Final = 1 << 20
#: Longest run of such headers before a real member (tarfile recurses on them).
MAX_META_CHAIN: Final = 16
#: Deepest directory nesting pack_dir follows (one open descriptor per level).
MAX_DEPTH: Final = 128
MAX_NAME_BYTES: Final = 1024  # a member name or an `as` path (PATH_MAX is 4096)

_CHUNK: Final = 1 << 20
_GZIP_LEVEL: Final = 6
_META_TYPES: Final = frozenset(
    {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}
)
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)
# The open flags of every path that reads or writes files the isolate or an archive
# could have planted (here and in actionfolder): never follow a link at the end.
DIR_FLAGS: Final = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
# O_NONBLOCK: if a file is swapped for a FIFO between lstat and open, the open
# must not hang waiting for a writer.
READ_FLAGS: Final = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC
WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC
_DIR_FLAGS, _READ_FLAGS, _WRITE_FLAGS = DIR_FLAGS, READ_FLAGS, WRITE_FLAGS


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


# --------------------------------------------------------------------------- names


def safe_relpath(name: str) -> str:
    """Normalise an archive member name or an ``as`` path to ``a/b/c``.

    Leading slashes are stripped (Direktiv's packer writes ``/a/b``), empty
    and ``.`` components dropped; ``""`` means the root itself.  Raises
    ValueError with the reason for a ``..`` component or a NUL byte: a name
    with ``..`` is refused even when it would stay inside, because nothing
    legitimate needs it and resolving it safely needs the filesystem.
    """
    if "\x00" in name:
        raise ValueError("contains a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ValueError(f"is longer than {MAX_NAME_BYTES} bytes")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise ValueError("has a '..' component (names must stay inside the folder)")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_DEPTH} directories")
    return "/".join(parts)


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages (also used by actionfolder)."""
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


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


def _limit_hint(setting: str) -> str:
    return f"raise [limits] {setting} in isolde.toml if this archive is legitimate"


# --------------------------------------------------------------------------- reading


class _Prefixed:
    """``source`` with ``head`` (already read from it) put back in front."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
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
        return WorkflowError(LIMIT_CODE, f"{self.what}: {msg}; nothing was extracted ({_limit_hint(setting)})")

    def invalid(self, exc: BaseException) -> WorkflowError:
        detail = str(exc) or type(exc).__name__
        return WorkflowError(INVALID_CODE, f"{self.what}: not a valid {self.fmt} archive ({detail}); nothing was extracted")

    def io_error(self, name: str, exc: OSError) -> WorkflowError:
        return WorkflowError("isolde.files.io", f"{self.what}: cannot write member {name!r}: {exc.strerror or exc}")

    # -- header guard, called by tarfile for every raw header (see _tarinfo_class)
    def header(self, ti: tarfile.TarInfo) -> None:
        if ti.type == tarfile.GNUTYPE_SPARSE:
            raise self.unsafe(ti.name, "is a sparse file (only plain regular files and directories are allowed)")
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
        """
        guard = self

        class _GuardedTarInfo(tarfile.TarInfo):
            def _proc_member(self, tf: tarfile.TarFile) -> Any:  # type: ignore[override]
                guard.header(self)
                return super()._proc_member(tf)  # type: ignore[misc]

        return _GuardedTarInfo

    # -- the walk
    def run(self, source: BinaryIO) -> None:
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
                    tf.members.clear()  # stream mode keeps every TarInfo otherwise
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
            fd = os.open(os.path.join(self.root, rel), _WRITE_FLAGS, mode)
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
                    _write_all(fd, chunk)
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


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def remove_tree(path: str) -> None:
    """Remove a directory tree, best effort: iterative (any depth, where ``shutil.rmtree``
    recurses), through directory descriptors (no path-length limit), never following a
    link, and giving back the permissions an isolate may have taken from a directory."""
    try:
        top = os.open(path, DIR_FLAGS)
    except OSError:
        return
    stack: list[tuple[int, str]] = [(top, "")]
    stuck: set[tuple[int, int]] = set()
    try:
        while stack:
            fd = stack[-1][0]
            child = None
            try:
                entries = list(os.scandir(fd))
            except OSError:
                entries = []
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        if (st.st_dev, st.st_ino) in stuck:
                            continue
                        try:
                            child = os.open(e.name, DIR_FLAGS, dir_fd=fd)
                        except PermissionError:
                            os.chmod(e.name, 0o700, dir_fd=fd)
                            child = os.open(e.name, DIR_FLAGS, dir_fd=fd)
                        stack.append((child, e.name))
                        break
                    os.unlink(e.name, dir_fd=fd)
                except OSError:
                    continue
            if child is not None:
                continue
            done_fd, name = stack.pop()
            st = os.fstat(done_fd)
            os.close(done_fd)
            if stack:
                try:
                    os.rmdir(name, dir_fd=stack[-1][0])
                except OSError:
                    stuck.add((st.st_dev, st.st_ino))
    finally:
        for fd, _ in stack:
            os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _rmtree(path: str) -> None:
    try:
        remove_tree(path)
    except BaseException:  # never mask the error that made us clean up
        pass


def extract(
    source: BinaryIO,
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


# --------------------------------------------------------------------------- writing


class _Packer:
    def __init__(self, limits: ArchiveLimits, what: str) -> None:
        self.limits = limits
        self.what = what
        self.members = 0
        self.total = 0

    def unsafe(self, rel: str, why: str) -> WorkflowError:
        return WorkflowError(UNSAFE_CODE, f"{self.what}: {rel!r} {why}; links and special files are never followed or stored")

    def limit(self, msg: str, setting: str) -> WorkflowError:
        return WorkflowError(LIMIT_CODE, f"{self.what}: {msg} ({_limit_hint(setting)})")

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
                    sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
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
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
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
        root = os.open(src_dir, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        try:
            st = os.stat(src_dir, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            raise WorkflowError(INVALID_CODE, f"{what}: cannot open ({exc.strerror})") from None
        raise WorkflowError(UNSAFE_CODE, f"{what} is a {file_kind(st.st_mode)}, not a directory; it is never followed") from None
    sink = _Sink(out)
    try:
        packer = _Packer(limits, what)
        gz = _gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=_GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
        try:
            # Plain "w" mode over our own GzipFile is what tarfile's "w:gz"
            # does, minus the file name and timestamp in the gzip header.
            tf = tarfile.open(
                fileobj=gz,  # type: ignore[arg-type]
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
