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
``path/`` (mode 0700) holds ``data.mdb`` and ``lock.mdb``.  The environment
has two named databases:

``vars``
    key   ``namespace NUL scope-letter NUL owner NUL key`` (UTF-8), where the
          scope letter is ``i`` (instance), ``w`` (workflow) or ``n``
          (namespace) and ``owner`` is the instance id, the workflow id, or
          empty for namespace scope.
    value ``<QddH`` header -- version (starts at 1, +1 per write), created and
          updated (Unix seconds, float), mime length -- then the mime bytes,
          then the data bytes.

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

import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

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
_MAX_MIME: Final[int] = 0xFFFF

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


def _decode(raw: bytes) -> Variable:
    """Turn a stored value (bytes or a memoryview into the map) into a Variable
    whose data is an independent ``bytes``."""
    version, created, updated, ml = _hdr_unpack(raw)
    end = _HDR_SIZE + ml
    data = bytes(raw[end:])
    return _make_var(data, str(raw[_HDR_SIZE:end], "utf-8"), len(data), created, updated, version)


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
        "env", "vars", "inst", "lock", "cond", "active", "excl", "gen",
        "refs", "pid", "durable", "readonly", "max_map", "registered", "ident",
        "gc", "gc_queue", "gc_busy",
    )

    def __init__(
        self, env: lmdb.Environment, vars_db: Any, inst_db: Any, *,
        durable: bool, readonly: bool, max_map: int, ident: tuple[int, int],
    ) -> None:
        self.env: lmdb.Environment | None = env
        self.vars = vars_db
        self.inst = inst_db
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

    __slots__ = ("_sh", "_env", "_vars", "_inst", "_max_key", "_readonly", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        map_size: int = 64 << 20,
        max_map_size: int = 1 << 40,
        readonly: bool = False,
    ) -> None:
        self.path = os.fspath(path)
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
                    else:
                        with env.begin(write=True) as txn:
                            vars_db = env.open_db(b"vars", txn=txn)
                            inst_db = env.open_db(b"inst", txn=txn)
                    break
                except lmdb.MapResizedError:
                    if attempt == _RETRY_LIMIT - 1:
                        raise
        except lmdb.Error as e:
            env.close()
            raise StoreError(f"cannot open variable store {self.path!r}: {e}") from e
        return _Env(
            env, vars_db, inst_db, durable=durable, readonly=readonly,
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
        end = _HDR_SIZE + ml
        return _make_var(
            raw[end:], raw[_HDR_SIZE:end].decode(), len(raw) - end, created, updated, version
        )

    def get_many(self, refs: Sequence[Ref]) -> list[Variable | None]:
        """Several variables from one snapshot, so a getter sees a consistent
        set even while other instances write."""
        keys = [self._kb(r) for r in refs]
        if not keys:
            return []
        return self._read(self._get_many_body, keys)  # type: ignore[no-any-return]

    def _get_many_body(self, txn: lmdb.Transaction, keys: list[bytes]) -> list[Variable | None]:
        get = txn.get
        db = self._vars
        out: list[Variable | None] = []
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
        is the real size), or None if missing.  ``write`` runs inside a read
        transaction and must not call this store; each chunk points into the
        map and is valid only during its call (copy it to keep it)."""
        kb = self._kb(ref)
        return self._read(self._read_into_body, (kb, write, max(4096, chunk_size)), True)  # type: ignore[no-any-return]

    def _read_into_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, Callable[[memoryview], object], int]
    ) -> Variable | None:
        kb, write, chunk = arg
        raw = txn.get(kb, db=self._vars)
        if raw is None:
            return None
        version, created, updated, ml = _hdr_unpack(raw)
        end = _HDR_SIZE + ml
        total = len(raw) - end
        for off in range(end, len(raw), chunk):
            write(raw[off : off + chunk])
        return _make_var(b"", str(raw[_HDR_SIZE:end], "utf-8"), total, created, updated, version)

    def list(self, namespace: str, scope: str, owner: str = "") -> list[tuple[str, Variable]]:
        """All variables of one exact scope owner, sorted by key."""
        prefix = self._scope_prefix(namespace, scope, owner)
        return self._read(self._list_body, prefix)  # type: ignore[no-any-return]

    def _list_body(self, txn: lmdb.Transaction, prefix: bytes) -> list[tuple[str, Variable]]:
        out: list[tuple[str, Variable]] = []
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
        the middle of a batch cannot leave the first half written."""
        items: list[tuple[bytes, bytes, Any]] = []
        for p in puts:
            kb = self._kb(p.ref)
            data = p.data
            if data is None:
                items.append((kb, b"", None))
                continue
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise StoreError(
                    f"variable {p.ref.key!r}: data must be bytes, got {type(data).__name__}"
                )
            mb = p.mime.encode()
            if len(mb) > _MAX_MIME:
                raise StoreError(f"variable {p.ref.key!r}: mime type is too long")
            items.append((kb, mb, data))
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
        self._write(self._write_body, (items, reg))
        if reg_id is not None:
            sh.registered.add(reg_id)

    @staticmethod
    def _reg_value() -> bytes:
        pid, start = _self_identity()
        host, boot, pidns = _machine()
        return _REG.pack(pid, start, time.time()) + f"{host}\x00{boot}\x00{pidns}".encode()

    def _write_body(
        self, txn: lmdb.Transaction,
        arg: tuple[list[tuple[bytes, bytes, Any]], tuple[bytes, bytes] | None],
    ) -> tuple[bool, None]:
        items, reg = arg
        db = self._vars
        get = txn.get
        put = txn.put
        now = time.time()
        for kb, mb, data in items:
            if data is None:
                txn.delete(kb, db=db)
                continue
            old = get(kb, db=db)
            if old is None:
                put(kb, _hdr_pack(1, now, now, len(mb)) + mb + data, db=db)
            else:
                version, created, _, _ = _hdr_unpack(old)
                put(kb, _hdr_pack(version + 1, created, now, len(mb)) + mb + data, db=db)
        if reg is not None:
            put(reg[0], reg[1], db=self._inst)
        return True, None

    def update(
        self, ref: Ref, fn: Callable[[Variable | None], tuple[bytes | None, str] | None]
    ) -> Variable | None:
        """Race-free read-modify-write: LMDB's writer lock is held from the read
        to the commit, across threads and processes, so no update is lost.
        ``fn`` receives the current value and returns ``(data, mime)``,
        ``(None, mime)`` to delete, or None to leave it unchanged (nothing is
        committed, no fsync).  ``fn`` may run more than once (the transaction is
        retried after map growth), so it must be pure, and it must not call
        this store.  Returns the resulting variable (None if deleted/missing)."""
        kb = self._kb(ref)
        return self._write(self._update_body, (kb, fn))  # type: ignore[no-any-return]

    def _update_body(
        self, txn: lmdb.Transaction,
        arg: tuple[bytes, Callable[[Variable | None], tuple[bytes | None, str] | None]],
    ) -> tuple[bool, Variable | None]:
        kb, fn = arg
        db = self._vars
        raw = txn.get(kb, db=db)
        cur = None if raw is None else _decode(raw)
        res = fn(cur)
        if res is None:
            return False, cur
        data, mime = res
        if data is None:
            if cur is None:
                return False, None
            txn.delete(kb, db=db)
            return True, None
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
        txn.put(kb, _hdr_pack(version, created, now, len(mb)) + mb + data, db=db)
        return True, _make_var(data, mime, len(data), created, now, version)

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
        return self._write(self._cas_body, (kb, expected_version or None, data, mb))  # type: ignore[no-any-return]

    def _cas_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, int | None, bytes | None, bytes]
    ) -> tuple[bool, bool]:
        kb, expected, data, mb = arg
        db = self._vars
        raw = txn.get(kb, db=db)
        if raw is None:
            if expected is not None:
                return False, False
            if data is None:
                return False, True  # already absent, as asked
            now = time.time()
            txn.put(kb, _hdr_pack(1, now, now, len(mb)) + mb + data, db=db)
            return True, True
        version, created, _, _ = _hdr_unpack(raw)
        if version != expected:
            return False, False
        if data is None:
            txn.delete(kb, db=db)
        else:
            txn.put(kb, _hdr_pack(version + 1, created, time.time(), len(mb)) + mb + data, db=db)
        return True, True

    # ----------------------------------------------------------------- bulk deletion

    @staticmethod
    def _delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> int:
        """Delete every key starting with ``prefix``; the prefix always ends in
        NUL (or is a full registration key), which is what makes it exact."""
        cur = txn.cursor(db)
        n = 0
        if cur.set_range(prefix):
            while cur.key()[: len(prefix)] == prefix:
                cur.delete()
                n += 1
        return n

    def _delete_prefixes_body(
        self, txn: lmdb.Transaction, arg: tuple[bytes, bytes | None]
    ) -> tuple[bool, int]:
        var_prefix, inst_prefix = arg
        n = self._delete_prefix(txn, self._vars, var_prefix)
        m = 0 if inst_prefix is None else self._delete_prefix(txn, self._inst, inst_prefix)
        return bool(n or m), n

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        """Delete every variable of one exact scope owner; returns how many."""
        prefix = self._scope_prefix(namespace, scope, owner)
        return self._write(self._delete_prefixes_body, (prefix, None), False)  # type: ignore[no-any-return]

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        """The workflow definition is gone, and its variables go with it."""
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        """Every variable of every scope of the namespace, plus its instance
        registrations; returns the number of variables."""
        _check_name(namespace, "namespace")
        prefix = f"{namespace}\x00".encode()
        return self._write(self._delete_prefixes_body, (prefix, prefix), False)  # type: ignore[no-any-return]

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
        self._write(self._end_body, (rk, prefix), False)
        sh.registered.discard(ident)

    def _has_instance_body(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> bool:
        rk, prefix = arg
        if txn.get(rk, db=self._inst) is not None:
            return True
        cur = txn.cursor(self._vars)
        return bool(cur.set_range(prefix)) and cur.key().startswith(prefix)

    def _end_body(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> tuple[bool, None]:
        rk, prefix = arg
        n = self._delete_prefix(txn, self._vars, prefix)
        found = txn.delete(rk, db=self._inst)
        return bool(n or found), None

    def sweep_orphans(self) -> int:
        """Delete instance variables of instances whose owning process died
        on this host without ending them (crash, ``kill -9``).  Registrations
        from other hosts are left alone.  Returns how many instances were
        swept."""
        candidates: list[tuple[bytes, bytes]] = self._read(self._orphans_body, _machine())
        if not candidates:
            return 0
        return self._write(self._sweep_body, candidates, False)  # type: ignore[no-any-return]

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

    def _sweep_body(self, txn: lmdb.Transaction, candidates: list[tuple[bytes, bytes]]) -> tuple[bool, int]:
        swept = 0
        for rk, rv in candidates:
            if txn.get(rk, db=self._inst) != rv:
                continue  # re-registered or ended meanwhile
            ns, _, iid = rk.partition(b"\x00")
            self._delete_prefix(txn, self._vars, ns + b"\x00i\x00" + iid + b"\x00")
            txn.delete(rk, db=self._inst)
            swept += 1
        return bool(swept), swept

    # ----------------------------------------------------------------- workflows

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        """Workflow variables follow a renamed workflow (versions and times
        kept).  Like ``os.rename``, the destination's own variables, if any,
        are replaced.  Returns how many variables moved."""
        src = self._scope_prefix(namespace, "workflow", old)
        dst = self._scope_prefix(namespace, "workflow", new)
        if src == dst:
            return len(self.list(namespace, "workflow", old))
        return self._write(self._rename_body, (src, dst), False)  # type: ignore[no-any-return]

    def _rename_body(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> tuple[bool, int]:
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
            return False, 0
        self._delete_prefix(txn, db, src)
        self._delete_prefix(txn, db, dst)
        put = txn.put
        for suffix, v in moved:
            put(dst + suffix, v, db=db)
        return True, len(moved)
