"""The persistent variable store: one LMDB environment per data directory.

Why LMDB: a committed write transaction is on disk when ``commit()`` returns
(with ``sync``/``metasync``), readers never block writers, and the writer lock
is a process-shared mutex inside the environment's lock file, so a CLI run, a
daemon and an isolate sidecar can all write to the same directory without a
server process.  This module adds what the workflow engine needs on top:
exact-scope key encoding, variable metadata, atomic batches, race-free
read-modify-write, instance ownership for orphan sweeping, and automatic map
growth.

Layout
------
``path/`` (mode 0700) holds ``data.mdb``, ``lock.mdb`` and ``blobs/`` (mode
0700, large values; see below).  The environment has three named databases:

``vars``
    key   ``namespace NUL scope-letter NUL owner NUL key`` (UTF-8), where the
          scope letter is ``i`` (instance), ``w`` (workflow) or ``n``
          (namespace) and ``owner`` is the instance id, the workflow id, or
          empty for namespace scope.
    value ``<QddH`` header -- version (starts at 1, +1 per write), created and
          updated (Unix seconds, float), mime length -- then the mime bytes,
          then the data bytes.  When the top bit (0x8000) of the mime length
          is set, the data lies in a blob file and the record ends with a
          reference instead: ``<Q`` size, then the file's 32-character name.

    Because no name may contain NUL, the prefix ``namespace NUL`` (or
    ``namespace NUL w NUL workflow NUL``) selects exactly one namespace (or
    workflow): ``foo`` never matches ``foobar`` and ``counter`` never matches
    ``counter2``.  Deletion is therefore a cursor walk over one prefix, and
    listings come out sorted by key for free.

``inst``
    key   ``namespace NUL instance-id``
    value ``<IQd`` -- pid, the process start time in clock ticks (from
          ``/proc``; 0 if unknown, guards against pid reuse), registration
          time -- then ``hostname NUL boot-id NUL pid-namespace``.

    A registration says "this process owns the instance-scope variables of
    this instance".  ``end_instance`` deletes them and the registration in one
    transaction; ``sweep_orphans`` does the same for registrations whose
    process died on this host (or before this host's last reboot) without
    ending its instances.

``blobs``
    key   a blob file name; value the ``vars`` key that references it.  The
          index of live blobs, so that sweeping unreferenced files costs one
          lookup per file instead of a walk over every record.

Large values
------------
A value larger than ``blob_threshold`` bytes (default 1 MiB) is kept as a
file ``blobs/<name>``, where the name is 128 random bits in hex: LMDB would
hold a whole write's dirty pages on the heap until the commit and count a read
of the map as resident memory, and a file can be written and read in chunks.
The protocol keeps a batch atomic and durable:

1. Before the write is queued (outside the writer lock, so group commit is
   unaffected) each large value is written to a new file in 1 MiB chunks,
   straight from the caller's buffer (a memoryview over an mmap is fine; the
   pages of a read-only mmap are released as they are written, so the copy
   costs no resident memory), and, with the durable store, the file and the
   directory are fsynced.  The writer holds an ``flock`` on each new file
   until its transaction has finished.
2. The transaction puts the records that reference the files (and the index
   entries).  A failing batch commits none of them; the new files are then
   removed at once.
3. After the commit, the files of replaced or deleted values are unlinked.

A crash between 1 and 2 leaves files no record references, and a crash
between 2 and 3 leaves dropped files; ``sweep_orphans`` removes any blob that
the index does not list, that is older than a minute and that no writer holds
locked.  ``rename_workflow`` moves only the records; every other deletion
(``delete_scope``, ``delete_workflow``, ``delete_namespace``,
``end_instance``, the instance sweep) removes the files of what it deleted.

Readers in other processes: a reader takes the reference in a read
transaction and opens the file afterwards; if a writer replaced the value and
unlinked the file in between, the open fails with ENOENT and the reader
retries from a new snapshot (an open file stays readable after an unlink).
``get`` and ``list`` read blob files whole (a getter of a huge value still
loads it); ``read_into`` streams them in chunks.

Test hook: when the environment variable ``ISOLDE_TEST_BLOB_PAUSE`` is set
(seconds, a float), a write sleeps that long after its blob files are durable
and before its transaction is queued, so a test can kill the process exactly
there.  Nothing else reads it.

Durability
----------
``durable=True`` (default) opens with ``sync=True, metasync=True``: a write
that returned survives ``kill -9`` and power loss.  ``durable=False`` uses
``sync=False, metasync=False``: a process crash (``kill -9``) still loses
nothing, because commits are in the OS page cache; an OS crash or power loss
may lose the last commits.  LMDB's copy-on-write pages and double meta page
keep the file consistent in that case as long as the filesystem preserves
write order (ext4's default ``data=ordered`` does); LMDB documents that it may
be corrupted otherwise, so ``durable=False`` is for data that can be lost.
Blob files are not synced either: after an OS crash a recent large value may
read as damaged (its file missing or cut short), which ``get`` reports as a
StoreError; writing or deleting the variable repairs it.

Concurrency and map growth
--------------------------
LMDB serialises writers across threads and processes; readers run beside
them.  When a write hits ``MapFullError`` the transaction is aborted, the map
is doubled (up to ``max_map_size``) and the whole transaction is retried.
When another process has grown the map past what this process has mapped,
``begin()`` raises ``MapResizedError``; the map is then re-adopted with
``set_mapsize(0)`` and the operation retried.  ``set_mapsize`` must not run
while any transaction of this process is open, so every operation passes a
small in-process gate (a shared/exclusive counter) that a remap takes
exclusively.  Environments are shared per directory within a process (LMDB
forbids opening the same files twice in one process), so several
``LmdbStore`` objects on one directory are fine.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import lmdb

from .errors import IsoldeError

__all__ = [
    "SCOPES",
    "KEY_RE",
    "MAX_KEY_BYTES",
    "StoreError",
    "InvalidKey",
    "StoreFull",
    "Variable",
    "Ref",
    "Put",
    "check_key",
    "check_scope",
    "LmdbStore",
    "ValueReader",
]

SCOPES: Final[tuple[str, str, str]] = ("instance", "workflow", "namespace")

# Direktiv's rule, verbatim, so error messages quote what the docs quote.  Note
# that ``$`` also matches before a trailing newline: use ``fullmatch`` (as
# ``check_key`` does) rather than ``match``.
KEY_RE: Final[re.Pattern[str]] = re.compile(
    r"^(([a-zA-Z][a-zA-Z0-9_\-\.]*[a-zA-Z0-9])|([a-zA-Z]))$"
)
MAX_KEY_BYTES: Final[int] = 255

_LETTER: Final[dict[str, str]] = {"instance": "i", "workflow": "w", "namespace": "n"}

# version, created, updated, mime length
_HDR: Final[struct.Struct] = struct.Struct("<QddH")
_HDR_SIZE: Final[int] = _HDR.size
_hdr_pack = _HDR.pack
_hdr_unpack = _HDR.unpack_from
# The top bit of the mime length marks a blob reference (``get`` tests the
# literal 0x8000 on its hot path), so a mime type may have 32767 bytes.
_BLOB_FLAG: Final[int] = 0x8000
_MAX_MIME: Final[int] = 0x7FFF

# A blob reference, after header and mime: size, then the file name.
_BLOB_SIZE: Final[struct.Struct] = struct.Struct("<Q")
_BLOB_NAME_LEN: Final[int] = 32
_BLOB_NAME_RE: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{32}")
_BLOB_CHUNK: Final[int] = 1 << 20
_BLOB_GRACE: Final[float] = 60.0  # seconds before an unreferenced blob counts as garbage
_BLOB_PAUSE_ENV: Final[str] = "ISOLDE_TEST_BLOB_PAUSE"  # test hook, see the module docstring
DEFAULT_BLOB_THRESHOLD: Final[int] = 1 << 20

# pid, process start ticks, registration time
_REG: Final[struct.Struct] = struct.Struct("<IQd")

_RETRY_LIMIT: Final[int] = 64


# --------------------------------------------------------------------------- errors


class StoreError(IsoldeError):
    """Any failure of the variable store that a workflow can be told about."""

    code: str = "isolde.store.error"


class InvalidKey(StoreError):
    """A variable key breaks Direktiv's key rule; same code as Direktiv."""

    code: str = "direktiv.var.invalidKey"


class StoreFull(StoreError):
    """The map cannot grow any more (``max_map_size`` reached)."""

    code: str = "isolde.store.full"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Variable:
    """A stored variable.  ``data`` is left out of ``repr`` so logging a
    Variable never dumps a 100 MB archive."""

    data: bytes = field(repr=False)
    mime: str
    size: int
    created: float
    updated: float
    version: int


@dataclass(frozen=True, slots=True)
class Ref:
    """Where a variable lives.  ``owner`` is the instance id (instance scope),
    the workflow id (workflow scope), and ignored for namespace scope (it is
    always stored as ``""``, so callers that pass the workflow id anyway still
    address the one namespace variable)."""

    namespace: str
    scope: str
    owner: str
    key: str


@dataclass(frozen=True, slots=True)
class Put:
    """One write of a batch; ``data=None`` deletes, the only way a workflow
    removes a variable."""

    ref: Ref
    data: bytes | None
    mime: str = "application/json"


class ValueReader(Protocol):
    """A readable binary stream of one variable's value (``VariableStore.open``).

    File-like (``read``, ``readinto``, ``close``, a context manager) with the
    value's ``mime`` type and ``size`` in bytes.  The stream shows the value as
    it was when it was opened: a later write or delete of the variable does not
    change or break it.  Close it when done (it may hold a file descriptor)."""

    mime: str
    size: int

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> ValueReader: ...

    def __exit__(self, *exc: object) -> None: ...


class InlineReader(io.BytesIO):
    """A ValueReader over a value held in memory (values kept inside LMDB)."""

    def __init__(self, data: bytes, mime: str, version: int = 0) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)
        self.version = version

    def __enter__(self) -> InlineReader:
        return self


class FileReader(io.BufferedReader):
    """A ValueReader over a value kept in a file (a blob): the open descriptor
    keeps the content readable even if a writer replaces the value and unlinks
    the file meanwhile."""

    def __init__(self, raw: io.FileIO, mime: str, size: int, version: int = 0) -> None:
        super().__init__(raw, buffer_size=_BLOB_CHUNK)
        self.mime = mime
        self.size = size
        self.version = version

    def __enter__(self) -> FileReader:
        return self


# A frozen dataclass __init__ goes through object.__setattr__ once per field,
# which would be the most expensive step of a get().  Setting the slots through
# their member descriptors builds the identical object at about half the cost.
_new_object = object.__new__
_set_data = Variable.__dict__["data"].__set__
_set_mime = Variable.__dict__["mime"].__set__
_set_size = Variable.__dict__["size"].__set__
_set_created = Variable.__dict__["created"].__set__
_set_updated = Variable.__dict__["updated"].__set__
_set_version = Variable.__dict__["version"].__set__


def _make_var(
    data: bytes, mime: str, size: int, created: float, updated: float, version: int
) -> Variable:
    """Fast equivalent of ``Variable(...)`` for the hot read path."""
    v = _new_object(Variable)
    _set_data(v, data)
    _set_mime(v, mime)
    _set_size(v, size)
    _set_created(v, created)
    _set_updated(v, updated)
    _set_version(v, version)
    return v


class _Stub:
    """A blob record seen inside a transaction: everything but the data, which
    is read from the file after the transaction (see ``LmdbStore._load``)."""

    __slots__ = ("name", "mime", "size", "created", "updated", "version")

    def __init__(self, name: str, mime: str, size: int, created: float, updated: float, version: int) -> None:
        self.name = name
        self.mime = mime
        self.size = size
        self.created = created
        self.updated = updated
        self.version = version


def _stub(raw: bytes | memoryview, ml: int, version: int, created: float, updated: float) -> _Stub:
    """Parse the reference of a blob record (``ml`` still carries the flag)."""
    end = _HDR_SIZE + (ml & _MAX_MIME)
    (size,) = _BLOB_SIZE.unpack_from(raw, end)
    name = str(raw[end + _BLOB_SIZE.size :], "ascii")
    return _Stub(name, str(raw[_HDR_SIZE:end], "utf-8"), size, created, updated, version)


def _blob_name(raw: bytes | memoryview) -> bytes:
    """The file name of a blob record, as the ``blobs`` index keys it."""
    return bytes(raw[-_BLOB_NAME_LEN:])


def _is_blob(raw: bytes | memoryview) -> bool:
    return bool(_hdr_unpack(raw)[3] & _BLOB_FLAG)


def _decode(raw: bytes | memoryview) -> Variable | _Stub:
    """Turn a stored value (bytes or a memoryview into the map) into a Variable
    whose data is an independent ``bytes``, or a _Stub for a blob record."""
    version, created, updated, ml = _hdr_unpack(raw)
    if ml & _BLOB_FLAG:
        return _stub(raw, ml, version, created, updated)
    end = _HDR_SIZE + ml
    data = bytes(raw[end:])
    return _make_var(data, str(raw[_HDR_SIZE:end], "utf-8"), len(data), created, updated, version)


def _key_name(kb: bytes) -> str:
    """The variable key part of an encoded key, for error messages."""
    return kb.rsplit(b"\x00", 1)[-1].decode(errors="replace")


class _NewBlob:
    """A blob file written for a pending write: its name, the reference bytes
    that go into the record, and the descriptor whose ``flock`` tells the
    sweeper that a commit is still pending."""

    __slots__ = ("name", "ref", "fd")

    def __init__(self, name: str, size: int, fd: int) -> None:
        self.name = name
        self.ref = _BLOB_SIZE.pack(size) + name.encode()
        self.fd = fd


# --------------------------------------------------------------------------- validation


def check_key(key: str) -> None:
    """Raise InvalidKey, quoting the rule, so a workflow author can fix the key
    from the message alone."""
    if isinstance(key, str) and len(key) <= MAX_KEY_BYTES and KEY_RE.fullmatch(key):
        return
    if not isinstance(key, str):
        shown = f"of type {type(key).__name__}"
    else:
        shown = repr(key if len(key) <= 60 else key[:57] + "...")
    raise InvalidKey(
        f"invalid variable key {shown}: a key starts with a letter, ends with a letter "
        f"or digit, contains only ASCII letters, digits, '_', '-' and '.', and is at "
        f"most {MAX_KEY_BYTES} bytes (pattern {KEY_RE.pattern})"
    )


# Keys already validated: a set lookup (the str hash is cached) is cheaper
# than the regex on the hot path.  Bounded so hostile key churn cannot grow it.
_good_keys: set[str] = set()
_GOOD_KEYS_MAX: Final[int] = 4096


def check_scope(scope: str) -> None:
    """Raise StoreError listing the valid scopes, so the fix is in the message."""
    if scope not in _LETTER:
        raise StoreError(f"invalid variable scope {scope!r}: must be one of {', '.join(SCOPES)}")


def _check_name(value: str, what: str) -> None:
    """Names become key components separated by NUL; a NUL inside one would
    let one namespace or owner alias another, so it is refused."""
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise StoreError(f"{what} must not contain a NUL character: {value!r}")


def _letter_owner(scope: str, owner: str) -> tuple[str, str]:
    """Resolve a scope to its key letter and the owner actually stored."""
    letter = _LETTER.get(scope)
    if letter is None:
        check_scope(scope)
    if letter == "n":
        return "n", ""
    _check_name(owner, f"owner of a {scope}-scope variable")
    return letter, owner  # type: ignore[return-value]


# --------------------------------------------------------------------------- process identity


_machine_id: tuple[str, str, str] | None = None
_self_ident: tuple[int, int] | None = None


def _machine() -> tuple[str, str, str]:
    """Host name, boot id and pid namespace: a pid only means something on the
    same host, within the same boot, seen from the same pid namespace (two
    containers sharing a data directory may share a host name)."""
    global _machine_id
    if _machine_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                boot = f.read().strip()
        except OSError:
            boot = ""
        try:
            pidns = os.readlink("/proc/self/ns/pid")
        except OSError:
            pidns = ""
        _machine_id = (socket.gethostname(), boot, pidns)
    return _machine_id


def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot, or None if it is gone
    or a zombie.  Returns 0 where /proc does not exist (no pid-reuse guard)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else 0
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    if not fields or fields[0] == b"Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def _self_identity() -> tuple[int, int]:
    """(pid, start ticks) of this process, recomputed after a fork."""
    global _self_ident
    pid = os.getpid()
    if _self_ident is None or _self_ident[0] != pid:
        _self_ident = (pid, _proc_start(pid) or 0)
    return _self_ident


def _alive(pid: int, start: int) -> bool:
    """Whether the registering process still runs.  Errs towards "alive":
    wrongly sweeping a live instance's variables is worse than keeping an
    orphan a little longer."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: exists, owned by another user; /proc may hide it
    now = _proc_start(pid)
    if now is None:
        return False
    if start and now and now != start:
        return False  # the pid was reused by another process
    return True


# --------------------------------------------------------------------------- shared environment


class _Pending:
    """One queued write of the group commit."""

    __slots__ = ("fn", "arg", "buffers", "result", "error", "done")

    def __init__(self, fn: Callable[[lmdb.Transaction, Any], tuple[bool, Any]], arg: Any, buffers: bool) -> None:
        self.fn = fn
        self.arg = arg
        self.buffers = buffers
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class _Env:
    """One open LMDB environment plus the in-process gate that keeps
    ``set_mapsize`` away from open transactions.  Shared by every LmdbStore of
    the same directory in this process."""

    __slots__ = (
        "env", "vars", "inst", "blobs", "lock", "cond", "active", "excl", "gen",
        "refs", "pid", "durable", "readonly", "max_map", "registered", "ident",
        "gc", "gc_queue", "gc_busy", "blob_dir_ready",
    )

    def __init__(
        self, env: lmdb.Environment, vars_db: Any, inst_db: Any, blobs_db: Any, *,
        durable: bool, readonly: bool, max_map: int, ident: tuple[int, int],
    ) -> None:
        self.env: lmdb.Environment | None = env
        self.vars = vars_db
        self.inst = inst_db
        self.blobs = blobs_db  # None only in a read-only store opened on an old environment
        self.blob_dir_ready = False
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.active = 0
        self.excl = False
        self.gen = 0
        self.refs = 1
        self.pid = os.getpid()
        self.durable = durable
        self.readonly = readonly
        self.max_map = max_map
        self.registered: set[tuple[str, str]] = set()
        self.ident = ident
        self.gc = threading.Condition(threading.Lock())  # group commit: queue + leader flag
        self.gc_queue: list[_Pending] = []
        self.gc_busy = False

    def wait_shared(self) -> None:
        """Slow path of entering the gate while a remap is pending; called
        with ``lock`` held."""
        while self.excl:
            self.cond.wait()

    def acquire_exclusive(self) -> None:
        """Wait until no transaction of this process is open and keep new
        ones out."""
        with self.lock:
            while self.excl:
                self.cond.wait()
            self.excl = True
            while self.active:
                self.cond.wait()

    def release_exclusive(self) -> None:
        with self.lock:
            self.excl = False
            self.cond.notify_all()


_envs: dict[tuple[int, int], _Env] = {}
_envs_lock = threading.Lock()


def _abort_quietly(txn: lmdb.Transaction) -> None:
    """Abort after a failure without masking the original exception (a failed
    commit has already aborted the transaction inside LMDB)."""
    try:
        txn.abort()
    except lmdb.Error:
        pass


# --------------------------------------------------------------------------- the store


class LmdbStore:
    """Variables of all scopes and namespaces in one LMDB environment."""

    __slots__ = (
        "_sh", "_env", "_vars", "_inst", "_blobs", "_max_key", "_readonly", "_threshold",
        "_blob_dir", "path",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        map_size: int = 64 << 20,
        max_map_size: int = 1 << 40,
        readonly: bool = False,
        blob_threshold: int = DEFAULT_BLOB_THRESHOLD,
    ) -> None:
        """``blob_threshold``: values larger than this many bytes are kept as
        files under ``path/blobs/`` (see "Large values" in the module doc)."""
        self.path = os.fspath(path)
        if not isinstance(blob_threshold, int) or isinstance(blob_threshold, bool) or blob_threshold < 0:
            raise StoreError(
                f"[store] blob_threshold must be a whole number of bytes >= 0, got {blob_threshold!r}"
            )
        self._threshold = blob_threshold
        self._blob_dir = os.path.join(self.path, "blobs")
        self._sh: _Env | None = None
        self._env: lmdb.Environment | None = None
        page = 4096
        map_size = max(page, (map_size + page - 1) // page * page)
        max_map_size = max(map_size, max_map_size)
        if not readonly:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"cannot open variable store {self.path!r}: {e.strerror}") from e
        dir_id = (st.st_dev, st.st_ino)
        with _envs_lock:
            sh = _envs.get(dir_id)
            if sh is not None and (sh.env is None or sh.pid != os.getpid()):
                sh = None  # closed, or inherited through fork(): never reuse
            if sh is None:
                sh = self._open(map_size, max_map_size, durable, readonly, dir_id)
                _envs[dir_id] = sh
            else:
                if sh.durable != durable:
                    raise StoreError(
                        f"variable store {self.path!r} is already open in this process "
                        f"with durable={sh.durable}"
                    )
                if sh.readonly and not readonly:
                    raise StoreError(
                        f"variable store {self.path!r} is already open read-only in this process"
                    )
                sh.refs += 1
                sh.max_map = max(sh.max_map, max_map_size)
        self._sh = sh
        self._env = sh.env
        self._vars = sh.vars
        self._inst = sh.inst
        self._blobs = sh.blobs
        self._readonly = readonly
        assert self._env is not None
        self._max_key = self._env.max_key_size()

    def _open(
        self, map_size: int, max_map: int, durable: bool, readonly: bool,
        dir_id: tuple[int, int],
    ) -> _Env:
        """Open the environment and adopt a map size another process already
        grew to, so this process does not start by hitting MapFull."""
        for attempt in range(_RETRY_LIMIT):
            try:
                env = lmdb.open(
                    self.path, map_size=map_size, subdir=True, readonly=readonly,
                    sync=durable, metasync=durable, lock=True, mode=0o600,
                    max_dbs=4, max_readers=512, max_spare_txns=4, create=not readonly,
                )
                break
            except lmdb.MapResizedError as e:
                # py-lmdb begins a transaction inside open(); another process
                # grew the data past the size just mapped.  Reopening maps at
                # least the used size again.
                if attempt == _RETRY_LIMIT - 1:
                    raise StoreError(f"cannot open variable store {self.path!r}: {e}") from e
            except lmdb.Error as e:
                raise StoreError(f"cannot open variable store {self.path!r}: {e}") from e
        try:
            wanted = env.info()["map_size"]
            for attempt in range(_RETRY_LIMIT):
                try:
                    env.set_mapsize(0)
                    if env.info()["map_size"] < wanted:
                        env.set_mapsize(wanted)
                    if readonly:
                        # Without txn=: py-lmdb then keeps the handles (a handle
                        # opened inside a caller's read transaction dies with it).
                        vars_db = env.open_db(b"vars", create=False)
                        inst_db = env.open_db(b"inst", create=False)
                        try:
                            blobs_db = env.open_db(b"blobs", create=False)
                        except lmdb.NotFoundError:
                            blobs_db = None  # written before blobs existed: none to index
                    else:
                        with env.begin(write=True) as txn:
                            vars_db = env.open_db(b"vars", txn=txn)
                            inst_db = env.open_db(b"inst", txn=txn)
                            blobs_db = env.open_db(b"blobs", txn=txn)
                    break
                except lmdb.MapResizedError:
                    if attempt == _RETRY_LIMIT - 1:
                        raise
        except lmdb.Error as e:
            env.close()
            raise StoreError(f"cannot open variable store {self.path!r}: {e}") from e
        return _Env(
            env, vars_db, inst_db, blobs_db, durable=durable, readonly=readonly,
            max_map=max_map, ident=dir_id,
        )

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release this handle; the environment closes with the last handle of
        the directory in this process.  Safe to call twice."""
        sh = self._sh
        if sh is None:
            return
        self._sh = None
        self._env = None
        with _envs_lock:
            sh.refs -= 1
            if sh.refs > 0:
                return
            if _envs.get(sh.ident) is sh:
                del _envs[sh.ident]
        sh.acquire_exclusive()
        try:
            if sh.env is not None:
                sh.env.close()
                sh.env = None
        finally:
            sh.release_exclusive()

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def map_size(self) -> int:
        """Current map size of this process's mapping; shows growth happened."""
        self._live()
        assert self._env is not None
        return int(self._env.info()["map_size"])

    def _live(self) -> _Env:
        sh = self._sh
        if sh is None or sh.env is None:
            raise StoreError(f"variable store {self.path!r} is closed")
        return sh

    # ----------------------------------------------------------------- keys

    def _kb(self, ref: Ref) -> bytes:
        """Validate a Ref and encode its LMDB key; the one place the key
        layout is decided for single variables."""
        ns = ref.namespace
        owner = ref.owner
        key = ref.key
        letter = _LETTER.get(ref.scope)
        if letter is None:
            check_scope(ref.scope)
        if letter == "n":
            owner = ""
        elif not owner or "\x00" in owner:
            _check_name(owner, f"owner of a {ref.scope}-scope variable")
        if not ns or "\x00" in ns:
            _check_name(ns, "namespace")
        try:
            known = key in _good_keys
        except TypeError:  # unhashable, e.g. a list computed by jq
            known = False
        if not known:
            check_key(key)
            if len(_good_keys) >= _GOOD_KEYS_MAX:
                _good_keys.clear()
            _good_keys.add(key)
        kb = f"{ns}\x00{letter}\x00{owner}\x00{key}".encode()
        if len(kb) > self._max_key:
            raise StoreError(
                f"namespace and owner names are too long: the encoded key is {len(kb)} "
                f"bytes, LMDB allows {self._max_key}"
            )
        return kb

    def _scope_prefix(self, namespace: str, scope: str, owner: str) -> bytes:
        _check_name(namespace, "namespace")
        letter, owner = _letter_owner(scope, owner)
        return f"{namespace}\x00{letter}\x00{owner}\x00".encode()

    def _reg_key(self, namespace: str, instance_id: str) -> bytes:
        _check_name(namespace, "namespace")
        _check_name(instance_id, "instance id")
        kb = f"{namespace}\x00{instance_id}".encode()
        if len(kb) > self._max_key:
            raise StoreError("namespace and instance id are too long for the store")
        return kb

    # ----------------------------------------------------------------- blob files

    def _blob_path(self, name: str) -> str:
        return os.path.join(self._blob_dir, name)

    @staticmethod
    def _fsync_dir(path: str) -> None:
        """Make the directory's entries (a new file's name) durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ensure_blob_dir(self, sh: _Env) -> None:
        try:
            os.mkdir(self._blob_dir, 0o700)
        except FileExistsError:
            pass
        if sh.durable:
            self._fsync_dir(self.path)
        sh.blob_dir_ready = True

    def _new_blob(self, sh: _Env, data: bytes | bytearray | memoryview, kb: bytes) -> _NewBlob:
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
            if not sh.blob_dir_ready:
                self._ensure_blob_dir(sh)
            while True:
                name = os.urandom(_BLOB_NAME_LEN // 2).hex()  # what secrets.token_hex does
                path = self._blob_path(name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                    break
                except FileExistsError:  # 128 random bits: only in theory
                    continue
        except OSError as e:
            raise StoreError(
                f"variable {_key_name(kb)!r}: cannot create a blob file in {self._blob_dir!r}: {e.strerror}"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # "commit pending": the sweeper keeps off
            off = done = 0
            page = mmap.PAGESIZE
            while off < size:
                off += os.write(fd, mv[off : off + _BLOB_CHUNK])
                if release:
                    edge = size if off >= size else off - off % page
                    if edge > done:
                        src.madvise(madv_dontneed, done, edge - done)  # type: ignore[union-attr]
                        done = edge
            if sh.durable:
                os.fsync(fd)
        except BaseException as e:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise StoreError(
                    f"variable {_key_name(kb)!r}: cannot write blob file {path!r}: {e.strerror}"
                ) from e
            raise
        return _NewBlob(name, size, fd)

    def _write_blobs(self, sh: _Env, values: list[tuple[bytes, Any]]) -> list[_NewBlob]:
        """Step 1 of the blob protocol for a batch: every large value
        (``(key, data)``) to its file, durable before the transaction that
        references it is queued."""
        made: list[_NewBlob] = []
        try:
            for kb, data in values:
                made.append(self._new_blob(sh, data, kb))
            if sh.durable:
                self._fsync_dir(self._blob_dir)
            pause = os.environ.get(_BLOB_PAUSE_ENV)
            if pause:
                time.sleep(float(pause))  # test hook: die here, files written, nothing committed
        except BaseException:
            self._unlink_blobs([nb.name.encode() for nb in made])
            for nb in made:
                os.close(nb.fd)
            raise
        return made

    def _settle(self, made: Sequence[_NewBlob], drop: Sequence[bytes] | None, *, verify: bool) -> None:
        """Step 3: unlink the blobs the commit dropped.  With ``verify`` (the
        write failed, or may not have used every new file), new files that the
        index does not list are removed too.  Finally the new files' locks
        are released."""
        try:
            if drop:
                self._unlink_blobs(drop)
            if verify and made:
                try:
                    live = self._read(self._listed_body, [nb.name for nb in made])
                except StoreError:
                    live = None  # closed meanwhile: sweep_orphans will judge
                if live is not None:
                    self._unlink_blobs([nb.name.encode() for nb in made if nb.name not in live])
        finally:
            for nb in made:
                os.close(nb.fd)

    def _listed_body(self, txn: lmdb.Transaction, names: list[str]) -> set[str]:
        db = self._blobs
        if db is None:
            return set()
        return {n for n in names if txn.get(n.encode(), db=db) is not None}

    def _unlink_blobs(self, names: Sequence[bytes]) -> None:
        for name in names:
            try:
                os.unlink(self._blob_path(name.decode("ascii")))
            except FileNotFoundError:
                pass
            except OSError:
                pass  # left for sweep_orphans

    def _load(self, stub: _Stub) -> Variable:
        """Read a blob whole.  FileNotFoundError means a writer replaced the
        value after the snapshot that produced ``stub``: the caller retries."""
        path = self._blob_path(stub.name)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
        if len(data) != stub.size:
            raise StoreError(
                f"blob file {path!r} has {len(data)} bytes, its record says {stub.size}: "
                f"the variable store is damaged"
            )
        return _make_var(data, stub.mime, stub.size, stub.created, stub.updated, stub.version)

    def _missing(self, name: str) -> StoreError:
        return StoreError(
            f"blob file {self._blob_path(name)!r} is missing although its variable still "
            f"references it (removed outside isolde?)"
        )

    def _read_resolved(self, fn: Callable[[lmdb.Transaction, Any], list[Any]], arg: Any) -> list[Any]:
        """Run a read whose result lists Variables (or ``(key, Variable)``
        pairs) and load the blobs it references, from a new snapshot whenever
        a blob vanished under a concurrent replace."""
        name = ""
        for _ in range(_RETRY_LIMIT):
            out = self._read(fn, arg)
            try:
                for i, v in enumerate(out):
                    if v.__class__ is _Stub:
                        out[i] = self._load(v)
                    elif v.__class__ is tuple and v[1].__class__ is _Stub:
                        out[i] = (v[0], self._load(v[1]))
                return out
            except FileNotFoundError as e:
                name = os.path.basename(str(e.filename))
        raise self._missing(name)

    # ----------------------------------------------------------------- transaction runners

    def _remap(self, sh: _Env, gen: int, grow: bool) -> None:
        """Grow the map (after MapFull) or adopt another process's size (after
        MapResized), with every transaction of this process closed."""
        sh.acquire_exclusive()
        try:
            env = sh.env
            if env is None:
                raise StoreError(f"variable store {self.path!r} is closed")
            if sh.gen != gen:
                return  # another thread remapped meanwhile: just retry
            cur = env.info()["map_size"]
            env.set_mapsize(0)  # maybe another process grew it already
            if grow:
                adopted = env.info()["map_size"]
                if adopted <= cur:
                    if cur >= sh.max_map:
                        env.set_mapsize(cur)
                        raise StoreFull(
                            f"variable store {self.path!r} is full: map size {cur} bytes "
                            f"reached max_map_size"
                        )
                    env.set_mapsize(min(cur * 2, sh.max_map))
            sh.gen += 1
        finally:
            sh.release_exclusive()

    def _read(self, fn: Callable[[lmdb.Transaction, Any], Any], arg: Any, buffers: bool = False) -> Any:
        """Run ``fn(txn, arg)`` in one short read transaction."""
        for _ in range(_RETRY_LIMIT):
            sh = self._sh
            if sh is None:
                raise StoreError(f"variable store {self.path!r} is closed")
            gen = sh.gen
            with sh.lock:
                if sh.excl:
                    sh.wait_shared()
                sh.active += 1
            try:
                env = sh.env
                if env is None:
                    raise StoreError(f"variable store {self.path!r} is closed")
                txn = env.begin(buffers=buffers)
                try:
                    return fn(txn, arg)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                pass
            finally:
                with sh.lock:
                    sh.active -= 1
                    if sh.excl and not sh.active:
                        sh.cond.notify_all()
            self._remap(sh, gen, False)
        raise StoreError("variable store: map kept being resized, giving up")

    def _write(
        self, fn: Callable[[lmdb.Transaction, Any], tuple[bool, Any]], arg: Any,
        buffers: bool = True,
    ) -> Any:
        """Run ``fn(txn, arg)`` in a write transaction, retried as a whole after map
        growth.  ``fn`` returns (commit?, result); not committing skips the fsync
        when nothing changed.

        With the durable store, writes of concurrent threads are *group-committed*:
        a writer that finds another commit in flight queues its work; the next
        leader runs every queued item in one transaction (each in a nested
        transaction of its own, so one item's failure undoes only that item) and
        pays one fsync for all of them.  No writer returns before the commit that
        holds its item is durable, so nothing is acknowledged early; throughput
        grows with the number of writers instead of being one fsync per write.
        """
        if self._readonly:
            raise StoreError(f"variable store {self.path!r} is open read-only")
        sh = self._sh
        if sh is None:
            raise StoreError(f"variable store {self.path!r} is closed")
        item = _Pending(fn, arg, buffers)
        if not sh.durable:  # no fsync to share: run it directly
            self._run_batch(sh, [item])
        else:
            batch: list[_Pending] | None = None
            with sh.gc:
                sh.gc_queue.append(item)
                while not item.done:
                    if not sh.gc_busy:
                        sh.gc_busy = True
                        batch, sh.gc_queue = sh.gc_queue, []
                        break
                    sh.gc.wait()
            if batch is not None:
                try:
                    self._run_batch(sh, batch)
                finally:
                    with sh.gc:
                        sh.gc_busy = False
                        sh.gc.notify_all()
        if item.error is not None:
            raise item.error
        return item.result

    def _run_batch(self, sh: _Env, batch: list[_Pending]) -> None:
        """Apply queued writes in one transaction; every item ends done (result or error)."""
        try:
            for _ in range(_RETRY_LIMIT):
                gen = sh.gen
                with sh.lock:
                    if sh.excl:
                        sh.wait_shared()
                    sh.active += 1
                try:
                    env = sh.env
                    if env is None:
                        raise StoreError(f"variable store {self.path!r} is closed")
                    for it in batch:
                        it.result = it.error = None
                    if len(batch) == 1:
                        self._run_single(env, batch[0])
                    else:
                        self._run_nested(env, batch)
                    return
                except lmdb.MapFullError:
                    grow = True
                except lmdb.MapResizedError:
                    grow = False
                finally:
                    with sh.lock:
                        sh.active -= 1
                        if sh.excl and not sh.active:
                            sh.cond.notify_all()
                self._remap(sh, gen, grow)
            raise StoreError("variable store: map kept being resized, giving up")
        except BaseException as exc:  # the commit itself failed: every item shares the failure
            for it in batch:
                if it.error is None:
                    it.error = exc
        finally:
            for it in batch:
                it.done = True

    @staticmethod
    def _run_single(env: lmdb.Environment, it: _Pending) -> None:
        txn = env.begin(write=True, buffers=it.buffers)
        try:
            commit, it.result = it.fn(txn, it.arg)
            if commit:
                txn.commit()
            else:
                txn.abort()
        except (lmdb.MapFullError, lmdb.MapResizedError):
            _abort_quietly(txn)
            raise
        except BaseException as exc:
            _abort_quietly(txn)
            it.error = exc

    @staticmethod
    def _run_nested(env: lmdb.Environment, batch: list[_Pending]) -> None:
        txn = env.begin(write=True)
        try:
            changed = False
            for it in batch:
                child = env.begin(write=True, parent=txn, buffers=it.buffers)
                try:
                    commit, it.result = it.fn(child, it.arg)
                except (lmdb.MapFullError, lmdb.MapResizedError):
                    _abort_quietly(child)
                    raise
                except BaseException as exc:
                    _abort_quietly(child)
                    it.error = exc
                    continue
                if commit:
                    child.commit()
                    changed = True
                else:
                    child.abort()
            if changed:
                txn.commit()
            else:
                txn.abort()
        except BaseException:
            _abort_quietly(txn)
            raise

    # ----------------------------------------------------------------- reads

    def get(self, ref: Ref) -> Variable | None:
        """One variable, or None when missing (a getter reads missing as null)."""
        kb = self._kb(ref)
        sh = self._sh
        if sh is None:
            raise StoreError(f"variable store {self.path!r} is closed")
        # Inlined fast path of _read(): this is the hottest call of the engine.
        gen = sh.gen
        with sh.lock:
            if sh.excl:
                sh.wait_shared()
            sh.active += 1
        try:
            env = sh.env
            if env is None:
                raise StoreError(f"variable store {self.path!r} is closed")
            txn = env.begin(db=self._vars)
            raw = txn.get(kb)
            txn.abort()
        except lmdb.MapResizedError:
            raw = False
        finally:
            with sh.lock:
                sh.active -= 1
                if sh.excl and not sh.active:
                    sh.cond.notify_all()
        if raw is False:
            self._remap(sh, gen, False)
            return self.get(ref)
        if raw is None:
            return None
        version, created, updated, ml = _hdr_unpack(raw)
        if ml & 0x8000:  # _BLOB_FLAG, as a literal: this is the hot path
            return self._get_blob(kb, _stub(raw, ml, version, created, updated))
        end = _HDR_SIZE + ml
        return _make_var(
            raw[end:], raw[_HDR_SIZE:end].decode(), len(raw) - end, created, updated, version
        )

    def _get_blob(self, kb: bytes, stub: _Stub) -> Variable | None:
        """get() of a blob record: read the file, retrying from a new snapshot
        if a concurrent replace unlinked it."""
        for _ in range(_RETRY_LIMIT):
            try:
                return self._load(stub)
            except FileNotFoundError:
                pass
            got = self._read(self._get_body, kb)
            if got is None or got.__class__ is Variable:
                return got  # type: ignore[no-any-return]
            stub = got
        raise self._missing(stub.name)

    def _get_body(self, txn: lmdb.Transaction, kb: bytes) -> Variable | _Stub | None:
        raw = txn.get(kb, db=self._vars)
        return None if raw is None else _decode(raw)

    def get_many(self, refs: Sequence[Ref]) -> list[Variable | None]:
        """Several variables from one snapshot, so a getter sees a consistent
        set even while other instances write."""
        keys = [self._kb(r) for r in refs]
        if not keys:
            return []
        return self._read_resolved(self._get_many_body, keys)

    def _get_many_body(self, txn: lmdb.Transaction, keys: list[bytes]) -> list[Variable | _Stub | None]:
        get = txn.get
        db = self._vars
        out: list[Variable | _Stub | None] = []
        for kb in keys:
            raw = get(kb, db=db)
            out.append(None if raw is None else _decode(raw))
        return out

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        """Stream a variable's data to ``write`` in chunks straight from the
        memory map, so a 100 MB archive is never copied whole into memory.
        Returns the metadata as a Variable whose ``data`` is ``b""`` (``size``
        is the real size), or None if missing.  ``write`` must not call this
        store (for a value kept in LMDB it runs inside a read transaction);
        each chunk points into the map or into a reused buffer and is valid
        only during its call (copy it to keep it).  A blob is streamed from
        its file with one ``chunk_size`` buffer, outside any transaction."""
        kb = self._kb(ref)
        arg = (kb, write, max(4096, chunk_size))
        name = ""
        for _ in range(_RETRY_LIMIT):
            got = self._read(self._read_into_body, arg, True)
            if got is None or got.__class__ is Variable:
                return got  # type: ignore[no-any-return]
            name = got.name
            path = self._blob_path(name)
            try:
                f = open(path, "rb", buffering=0)
            except FileNotFoundError:
                continue  # replaced meanwhile: read the new record
            except OSError as e:
                raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
            with f:
                buf = bytearray(arg[2])
                view = memoryview(buf)
                total = 0
                while n := f.readinto(buf):
                    write(view[:n])
                    total += n
            if total != got.size:
                raise StoreError(
                    f"blob file {path!r} has {total} bytes, its record says {got.size}: "
                    f"the variable store is damaged"
                )
            return _make_var(b"", got.mime, got.size, got.created, got.updated, got.version)
        raise self._missing(name)

    def _read_into_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, Callable[[memoryview], object], int]
    ) -> Variable | _Stub | None:
        kb, write, chunk = arg
        raw = txn.get(kb, db=self._vars)
        if raw is None:
            return None
        version, created, updated, ml = _hdr_unpack(raw)
        if ml & _BLOB_FLAG:
            return _stub(raw, ml, version, created, updated)
        end = _HDR_SIZE + ml
        total = len(raw) - end
        for off in range(end, len(raw), chunk):
            write(raw[off : off + chunk])
        return _make_var(b"", str(raw[_HDR_SIZE:end], "utf-8"), total, created, updated, version)

    def open(self, ref: Ref) -> ValueReader | None:
        """A readable stream of the variable's value, or None if it is missing.

        A value kept in LMDB (at most ``blob_threshold`` bytes) is copied out
        of the map; a blob is read from its file, opened so that a concurrent
        replace or delete cannot break the read (the record is read again from
        a new snapshot if the file went away before it was opened)."""
        kb = self._kb(ref)
        name = ""
        for _ in range(_RETRY_LIMIT):
            got = self._read(self._get_body, kb)
            if got is None:
                return None
            if got.__class__ is Variable:
                return InlineReader(got.data, got.mime, got.version)
            name = got.name
            path = self._blob_path(name)
            try:
                raw = io.FileIO(path, "rb")
            except FileNotFoundError:
                continue  # replaced meanwhile: read the new record
            except OSError as e:
                raise StoreError(f"cannot read blob file {path!r}: {e.strerror}") from e
            actual = os.fstat(raw.fileno()).st_size
            if actual != got.size:
                raw.close()
                raise StoreError(
                    f"blob file {path!r} has {actual} bytes, its record says {got.size}: "
                    f"the variable store is damaged"
                )
            return FileReader(raw, got.mime, got.size, got.version)
        raise self._missing(name)

    def list(self, namespace: str, scope: str, owner: str = "") -> list[tuple[str, Variable]]:
        """All variables of one exact scope owner, sorted by key."""
        prefix = self._scope_prefix(namespace, scope, owner)
        return self._read_resolved(self._list_body, prefix)

    def _list_body(self, txn: lmdb.Transaction, prefix: bytes) -> list[tuple[str, Variable | _Stub]]:
        out: list[tuple[str, Variable | _Stub]] = []
        cur = txn.cursor(self._vars)
        n = len(prefix)
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                out.append((k[n:].decode(), _decode(v)))
        return out

    def namespaces(self) -> list[str]:
        """Namespaces holding any variable, found by skipping from one
        namespace to the next rather than walking every key."""
        return self._read(self._namespaces_body, None)  # type: ignore[no-any-return]

    def _namespaces_body(self, txn: lmdb.Transaction, _: None) -> list[str]:
        out: list[str] = []
        cur = txn.cursor(self._vars)
        ok = cur.first()
        while ok:
            k = cur.key()
            ns = k[: k.index(b"\x00")]
            out.append(ns.decode())
            ok = cur.set_range(ns + b"\x01")
        return out

    def workflows(self, namespace: str) -> list[str]:
        """Workflows of a namespace holding workflow-scope variables."""
        _check_name(namespace, "namespace")
        prefix = f"{namespace}\x00w\x00".encode()
        return self._read(self._owners_body, prefix)  # type: ignore[no-any-return]

    def _owners_body(self, txn: lmdb.Transaction, prefix: bytes) -> list[str]:
        out: list[str] = []
        cur = txn.cursor(self._vars)
        n = len(prefix)
        ok = cur.set_range(prefix)
        while ok:
            k = cur.key()
            if not k.startswith(prefix):
                break
            owner = k[n : k.index(b"\x00", n)]
            out.append(owner.decode())
            ok = cur.set_range(prefix + owner + b"\x01")
        return out

    # ----------------------------------------------------------------- writes

    def write(self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None) -> None:
        """Apply a batch atomically: a state's effects all land or none do.
        Everything is validated before the transaction starts, so a bad key in
        the middle of a batch cannot leave the first half written.  Values
        above ``blob_threshold`` go to blob files first (module doc, "Large
        values"); a memoryview over an mmap is written from the map in chunks."""
        # (key, mime, mime length field, data or blob reference; None deletes)
        items: list[tuple[bytes, bytes, int, Any]] = []
        threshold = self._threshold
        big: list[int] | None = None
        for p in puts:
            kb = self._kb(p.ref)
            data = p.data
            if data is None:
                items.append((kb, b"", 0, None))
                continue
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise StoreError(
                    f"variable {p.ref.key!r}: data must be bytes, got {type(data).__name__}"
                )
            mb = p.mime.encode()
            ml = len(mb)
            if ml > _MAX_MIME:
                raise StoreError(f"variable {p.ref.key!r}: mime type is too long")
            if len(data) > threshold:
                if big is None:
                    big = []
                big.append(len(items))
            items.append((kb, mb, ml, data))
        reg: tuple[bytes, bytes] | None = None
        reg_id: tuple[str, str] | None = None
        sh = self._live()
        if register_instance is not None:
            ns, iid = register_instance
            rk = self._reg_key(ns, iid)
            reg_id = (ns, iid)
            if reg_id not in sh.registered:
                reg = (rk, self._reg_value())
        if not items and reg is None:
            return
        if big is None:
            drop = self._write(self._write_body, (items, reg, None))
            if drop:
                self._unlink_blobs(drop)
        else:
            if self._readonly:
                raise StoreError(f"variable store {self.path!r} is open read-only")
            made = self._write_blobs(sh, [(items[i][0], items[i][3]) for i in big])
            index: list[tuple[bytes, bytes]] = []
            for i, nb in zip(big, made):
                kb, mb, ml, _ = items[i]
                items[i] = (kb, mb, ml | _BLOB_FLAG, nb.ref)
                index.append((nb.name.encode(), kb))
            try:
                drop = self._write(self._write_body, (items, reg, index))
            except BaseException:
                self._settle(made, None, verify=True)
                raise
            self._settle(made, drop, verify=False)
        if reg_id is not None:
            sh.registered.add(reg_id)

    @staticmethod
    def _reg_value() -> bytes:
        pid, start = _self_identity()
        host, boot, pidns = _machine()
        return _REG.pack(pid, start, time.time()) + f"{host}\x00{boot}\x00{pidns}".encode()

    def _write_body(
        self, txn: lmdb.Transaction,
        arg: tuple[
            list[tuple[bytes, bytes, int, Any]], tuple[bytes, bytes] | None,
            list[tuple[bytes, bytes]] | None,
        ],
    ) -> tuple[bool, list[bytes] | None]:
        """Returns the blob names whose records this batch replaced or deleted
        (to unlink after the commit), or None.  A blob item arrives with the
        flag already in its mime length and its reference as data, so the loop
        has no blob branch on the way in; ``index`` lists the new names."""
        items, reg, index = arg
        db = self._vars
        get = txn.get
        put = txn.put
        now = time.time()
        drop: list[bytes] | None = None
        if index is not None:  # first, so that a later item of the batch can drop it again
            bdb = self._blobs
            for name, kb in index:
                put(name, kb, db=bdb)
        for kb, mb, ml, data in items:
            old = get(kb, db=db)
            if old is None:
                if data is None:
                    continue
                version, created = 1, now
            else:
                version, created, _, oml = _hdr_unpack(old)
                version += 1
                if oml & 0x8000:  # _BLOB_FLAG: the old value's file goes after the commit
                    name = _blob_name(old)
                    txn.delete(name, db=self._blobs)
                    if drop is None:
                        drop = [name]
                    else:
                        drop.append(name)
                if data is None:
                    txn.delete(kb, db=db)
                    continue
            put(kb, _hdr_pack(version, created, now, ml) + mb + data, db=db)
        if reg is not None:
            put(reg[0], reg[1], db=self._inst)
        return True, drop

    def _put_value(
        self, txn: lmdb.Transaction, kb: bytes, mb: bytes, data: Any,
        version: int, created: float, now: float,
    ) -> None:
        """Put one record, inline or (for a _NewBlob) as a blob reference."""
        if data.__class__ is _NewBlob:
            txn.put(kb, _hdr_pack(version, created, now, len(mb) | _BLOB_FLAG) + mb + data.ref, db=self._vars)
            txn.put(data.name.encode(), kb, db=self._blobs)
        else:
            txn.put(kb, _hdr_pack(version, created, now, len(mb)) + mb + data, db=self._vars)

    def _drop_old(self, txn: lmdb.Transaction, raw: bytes | memoryview | None) -> list[bytes] | None:
        """If the record about to be replaced or deleted is a blob, unindex it
        and return its name for unlinking after the commit."""
        if raw is None or not _is_blob(raw):
            return None
        name = _blob_name(raw)
        txn.delete(name, db=self._blobs)
        return [name]

    def update(
        self, ref: Ref, fn: Callable[[Variable | None], tuple[bytes | None, str] | None]
    ) -> Variable | None:
        """Race-free read-modify-write: LMDB's writer lock is held from the read
        to the commit, across threads and processes, so no update is lost.
        ``fn`` receives the current value and returns ``(data, mime)``,
        ``(None, mime)`` to delete, or None to leave it unchanged (nothing is
        committed, no fsync).  ``fn`` may run more than once (the transaction is
        retried after map growth), so it must be pure, and it must not call
        this store.  Returns the resulting variable (None if deleted/missing).
        Meant for small values: a result above ``blob_threshold`` is written
        to its blob file inside the transaction, holding the writer lock."""
        kb = self._kb(ref)
        made: list[_NewBlob] = []
        try:
            var, drop = self._write(self._update_body, (kb, fn, made))
        except BaseException:
            self._settle(made, None, verify=True)
            raise
        if drop or made:
            self._settle(made, drop, verify=True)  # a retried attempt may have left a file
        return var  # type: ignore[no-any-return]

    def _update_body(
        self, txn: lmdb.Transaction,
        arg: tuple[bytes, Callable[[Variable | None], tuple[bytes | None, str] | None], list[_NewBlob]],
    ) -> tuple[bool, tuple[Variable | None, list[bytes] | None]]:
        kb, fn, made = arg
        db = self._vars
        raw = txn.get(kb, db=db)
        cur = None if raw is None else _decode(raw)
        if cur.__class__ is _Stub:
            # The writer lock is held: the current record's file cannot be
            # unlinked by anyone, so a missing file is damage, not a race.
            try:
                cur = self._load(cur)  # type: ignore[arg-type]
            except FileNotFoundError:
                raise self._missing(cur.name) from None  # type: ignore[union-attr]
        res = fn(cur)  # type: ignore[arg-type]
        if res is None:
            return False, (cur, None)  # type: ignore[return-value]
        data, mime = res
        if data is None:
            if cur is None:
                return False, (None, None)
            drop = self._drop_old(txn, raw)
            txn.delete(kb, db=db)
            return True, (None, drop)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StoreError(f"update of {kb!r}: data must be bytes, got {type(data).__name__}")
        mb = mime.encode()
        if len(mb) > _MAX_MIME:
            raise StoreError("mime type is too long")
        now = time.time()
        if cur is None:
            version, created = 1, now
        else:
            version, created = cur.version + 1, cur.created
        data = bytes(data)
        drop = self._drop_old(txn, raw)
        if len(data) > self._threshold:
            sh = self._live()
            nb = self._new_blob(sh, data, kb)
            made.append(nb)
            if sh.durable:
                self._fsync_dir(self._blob_dir)
            self._put_value(txn, kb, mb, nb, version, created, now)
        else:
            self._put_value(txn, kb, mb, data, version, created, now)
        return True, (_make_var(data, mime, len(data), created, now, version), drop)

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None,
        mime: str = "application/json",
    ) -> bool:
        """Optimistic write: succeeds only if the variable is still at
        ``expected_version`` (None, or 0, means "must not exist").  ``data=None``
        deletes.  Returns False, writing nothing, on a mismatch."""
        kb = self._kb(ref)
        if expected_version is not None and expected_version < 0:
            raise StoreError(f"expected_version must be positive or None, got {expected_version}")
        if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
            raise StoreError(f"variable {ref.key!r}: data must be bytes, got {type(data).__name__}")
        mb = mime.encode()
        if len(mb) > _MAX_MIME:
            raise StoreError(f"variable {ref.key!r}: mime type is too long")
        made: list[_NewBlob] = []
        value: Any = data
        if data is not None and len(data) > self._threshold:
            if self._readonly:
                raise StoreError(f"variable store {self.path!r} is open read-only")
            made = self._write_blobs(self._live(), [(kb, data)])
            value = made[0]
        try:
            ok, drop = self._write(self._cas_body, (kb, expected_version or None, value, mb))
        except BaseException:
            self._settle(made, None, verify=True)
            raise
        if made or drop:
            self._settle(made, drop, verify=not ok)
        return ok  # type: ignore[no-any-return]

    def _cas_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, int | None, Any, bytes]
    ) -> tuple[bool, tuple[bool, list[bytes] | None]]:
        kb, expected, data, mb = arg
        db = self._vars
        raw = txn.get(kb, db=db)
        now = time.time()
        if raw is None:
            if expected is not None:
                return False, (False, None)
            if data is None:
                return False, (True, None)  # already absent, as asked
            self._put_value(txn, kb, mb, data, 1, now, now)
            return True, (True, None)
        version, created, _, _ = _hdr_unpack(raw)
        if version != expected:
            return False, (False, None)
        drop = self._drop_old(txn, raw)
        if data is None:
            txn.delete(kb, db=db)
        else:
            self._put_value(txn, kb, mb, data, version + 1, created, now)
        return True, (True, drop)

    # ----------------------------------------------------------------- bulk deletion

    def _delete_prefix(
        self, txn: lmdb.Transaction, db: Any, prefix: bytes, drop: list[bytes] | None = None
    ) -> int:
        """Delete every key starting with ``prefix``; the prefix always ends in
        NUL (or is a full registration key), which is what makes it exact.
        With ``drop``, blob records are unindexed and their names collected
        (only the header of each value is read; run with ``buffers=True`` so
        inline values are not copied)."""
        cur = txn.cursor(db)
        n = 0
        if cur.set_range(prefix):
            while cur.key()[: len(prefix)] == prefix:
                if drop is not None:
                    v = cur.value()
                    if _is_blob(v):
                        name = _blob_name(v)
                        txn.delete(name, db=self._blobs)
                        drop.append(name)
                if not cur.delete():
                    break
                n += 1
        return n

    def _delete_prefixes_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, bytes | None]
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        var_prefix, inst_prefix = arg
        drop: list[bytes] = []
        n = self._delete_prefix(txn, self._vars, var_prefix, drop)
        m = 0 if inst_prefix is None else self._delete_prefix(txn, self._inst, inst_prefix)
        return bool(n or m), (n, drop)

    def _delete_prefixes(self, var_prefix: bytes, inst_prefix: bytes | None) -> int:
        n, drop = self._write(self._delete_prefixes_body, (var_prefix, inst_prefix))
        self._unlink_blobs(drop)
        return n  # type: ignore[no-any-return]

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        """Delete every variable of one exact scope owner; returns how many."""
        prefix = self._scope_prefix(namespace, scope, owner)
        return self._delete_prefixes(prefix, None)

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        """The workflow definition is gone, and its variables go with it."""
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        """Every variable of every scope of the namespace, plus its instance
        registrations; returns the number of variables."""
        _check_name(namespace, "namespace")
        prefix = f"{namespace}\x00".encode()
        return self._delete_prefixes(prefix, prefix)

    def end_instance(self, namespace: str, instance_id: str) -> None:
        """Instance variables live exactly as long as the instance.  Most
        instances never write one, so when this process did not register the
        instance a read transaction first checks whether there is anything to
        delete, and no write transaction (no fsync) happens otherwise."""
        rk = self._reg_key(namespace, instance_id)
        prefix = f"{namespace}\x00i\x00{instance_id}\x00".encode()
        sh = self._live()
        ident = (namespace, instance_id)
        if ident not in sh.registered and not self._read(self._has_instance_body, (rk, prefix)):
            return
        drop = self._write(self._end_body, (rk, prefix))
        sh.registered.discard(ident)
        if drop:
            self._unlink_blobs(drop)

    def _has_instance_body(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> bool:
        rk, prefix = arg
        if txn.get(rk, db=self._inst) is not None:
            return True
        cur = txn.cursor(self._vars)
        return bool(cur.set_range(prefix)) and cur.key().startswith(prefix)

    def _end_body(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> tuple[bool, list[bytes]]:
        rk, prefix = arg
        drop: list[bytes] = []
        n = self._delete_prefix(txn, self._vars, prefix, drop)
        found = txn.delete(rk, db=self._inst)
        return bool(n or found), drop

    def sweep_orphans(self) -> int:
        """Delete instance variables of instances whose owning process died
        on this host without ending them (crash, ``kill -9``).  Registrations
        from other hosts are left alone.  Then remove blob files that no
        record references, that are older than a minute and that no writer
        holds (left by a crash between a blob write and its commit, or
        between a commit and the unlinking of the blobs it dropped).  Returns
        how many instances were swept."""
        swept = 0
        candidates: list[tuple[bytes, bytes]] = self._read(self._orphans_body, _machine())
        if candidates:
            swept, drop = self._write(self._sweep_body, candidates)
            self._unlink_blobs(drop)
        if not self._readonly:
            self._sweep_blobs(_BLOB_GRACE)
        return swept  # type: ignore[no-any-return]

    def _orphans_body(
        self, txn: lmdb.Transaction, arg: tuple[str, str, str]
    ) -> list[tuple[bytes, bytes]]:
        host, boot, pidns = arg
        out: list[tuple[bytes, bytes]] = []
        for k, v in txn.cursor(self._inst):
            if len(v) < _REG.size:
                continue
            pid, start, _ = _REG.unpack_from(v)
            rhost, rboot, rpidns = (v[_REG.size :].decode(errors="replace").split("\x00") + ["", ""])[:3]
            if rhost != host:
                continue  # another machine's pids mean nothing here
            if boot and rboot and rboot != boot:
                out.append((k, v))  # registered before a reboot: its process is gone
            elif pidns and rpidns and rpidns != pidns:
                continue  # another container's pid namespace: cannot judge
            elif not _alive(pid, start):
                out.append((k, v))
        return out

    def _sweep_body(
        self, txn: lmdb.Transaction, candidates: list[tuple[bytes, bytes]]
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        swept = 0
        drop: list[bytes] = []
        for rk, rv in candidates:
            if txn.get(rk, db=self._inst) != rv:
                continue  # re-registered or ended meanwhile
            ns, _, iid = rk.partition(b"\x00")
            self._delete_prefix(txn, self._vars, ns + b"\x00i\x00" + iid + b"\x00", drop)
            txn.delete(rk, db=self._inst)
            swept += 1
        return bool(swept), (swept, drop)

    def _sweep_blobs(self, min_age: float) -> int:
        """Remove unreferenced blob files (see sweep_orphans); returns how many.
        Listed names are checked against the index in one snapshot; only the
        unlisted ones are opened.  A file is removed only when it is old
        enough, its ``flock`` can be taken (no writer is still committing it)
        and a fresh snapshot, taken under that lock, still does not list it."""
        try:
            names = [n for n in os.listdir(self._blob_dir) if _BLOB_NAME_RE.fullmatch(n)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        if not names:
            return 0
        live = self._read(self._listed_body, names)
        now = time.time()
        removed = 0
        for name in names:
            if name in live:
                continue
            path = self._blob_path(name)
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
                if self._read(self._listed_body, [name]):
                    continue  # committed since the first look
                try:
                    os.unlink(path)
                    removed += 1
                except OSError:
                    pass
            finally:
                os.close(fd)
        return removed

    # ----------------------------------------------------------------- workflows

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        """Workflow variables follow a renamed workflow (versions and times
        kept; blob files stay where they are, only the records move).  Like
        ``os.rename``, the destination's own variables, if any, are replaced.
        Returns how many variables moved."""
        src = self._scope_prefix(namespace, "workflow", old)
        dst = self._scope_prefix(namespace, "workflow", new)
        if src == dst:
            return len(self.list(namespace, "workflow", old))
        moved, drop = self._write(self._rename_body, (src, dst), False)
        self._unlink_blobs(drop)
        return moved  # type: ignore[no-any-return]

    def _rename_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        src, dst = arg
        db = self._vars
        moved: list[tuple[bytes, bytes]] = []
        cur = txn.cursor(db)
        n = len(src)
        if cur.set_range(src):
            for k, v in cur:
                if not k.startswith(src):
                    break
                moved.append((k[n:], v))
        if not moved:
            return False, (0, [])
        drop: list[bytes] = []
        self._delete_prefix(txn, db, src)
        self._delete_prefix(txn, db, dst, drop)
        put = txn.put
        for suffix, v in moved:
            put(dst + suffix, v, db=db)
            if _is_blob(v):
                put(_blob_name(v), dst + suffix, db=self._blobs)  # the index follows the record
        return True, (len(moved), drop)
