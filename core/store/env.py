"""One open LMDB environment per directory and process: opening, sharing,
map growth, and the transaction runners.

LMDB forbids opening the same files twice in one process, so environments are
shared per directory (``share``/``SharedEnv.release``): several ``LmdbStore``
objects on one directory are fine.  When a write hits ``MapFullError`` the
transaction is aborted, the map is doubled (up to ``max_map_size``) and the whole
transaction retried.  When another process has grown the map past what this
process has mapped, ``begin()`` raises ``MapResizedError``; the map is then
re-adopted with ``set_mapsize(0)`` and the operation retried.  ``set_mapsize``
must not run while any transaction of this process is open, so every operation
passes a small in-process gate (a shared/exclusive counter) that a remap takes
exclusively.

Stale readers: a process killed inside a read transaction leaves its slot in the
lock file, and the pages of its snapshot can then never be reused, so the file
grows with every overwrite while any other process keeps the environment open.
``reader_check`` clears the slots of dead processes; it runs when an environment
is opened and, on the write path, at most every ``READER_CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import lmdb

from .commit import GroupCommit, Pending
from .keys import RESERVED_MARK
from .types import StoreError, StoreFull, Variable

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Final, TypeVar

__all__ = ["SharedEnv", "share", "RETRY_LIMIT", "READER_CHECK_EVERY"]

RETRY_LIMIT: Final[int] = 64
READER_CHECK_EVERY: Final[float] = 5.0  # seconds between two stale-reader checks of a writer
if TYPE_CHECKING:
    T = TypeVar("T")


def _abort_quietly(txn: lmdb.Transaction) -> None:
    """Abort after a failure without masking the original exception (a failed
    commit has already aborted the transaction inside LMDB)."""
    try:
        txn.abort()
    except lmdb.Error:
        pass


class SharedEnv:
    """One open LMDB environment plus the in-process gate that keeps
    ``set_mapsize`` away from open transactions.  Shared by every LmdbStore of
    the same directory in this process."""

    __slots__ = (
        "env", "vars", "inst", "blobs", "reserved", "lock", "cond", "active", "excl", "gen",
        "refs", "pid", "durable", "readonly", "max_map", "registered", "ident", "path",
        "commits", "_checked", "overlay", "_overlay_lock",
    )

    def __init__(
        self, path: str, env: lmdb.Environment, dbs: tuple[Any, Any, Any, Any], *,
        durable: bool, readonly: bool, max_map: int, ident: tuple[int, int],
    ) -> None:
        self.path = path
        self.env: lmdb.Environment | None = env
        # blobs is None only in a read-only store opened on an older environment, reserved
        # then the vars database itself (isolde's records are still among the variables)
        self.vars, self.inst, self.blobs, self.reserved = dbs
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
        self.registered: set[tuple[str, str]] = set()  # instances registered by this process
        self.ident = ident
        self.commits = GroupCommit(self._run_batch, grouped=durable)
        self._checked = time.monotonic()
        # Values of handed-over writes, queued but not yet committed: key -> (value, item).
        self.overlay: dict[bytes, tuple[Variable | None, Pending]] = {}
        self._overlay_lock = threading.Lock()

    # ------------------------------------------------------------------ the gate

    def wait_shared(self) -> None:
        """Slow path of entering the gate while a remap is pending; called
        with ``lock`` held."""
        while self.excl:
            self.cond.wait()

    def acquire_exclusive(self) -> None:
        """Wait until no transaction of this process is open and keep new ones out."""
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

    def closed(self) -> StoreError:
        return StoreError(f"variable store {self.path!r} is closed")

    def remap(self, gen: int, grow: bool) -> None:
        """Grow the map (after MapFull) or adopt another process's size (after
        MapResized), with every transaction of this process closed."""
        self.acquire_exclusive()
        try:
            env = self.env
            if env is None:
                raise self.closed()
            if self.gen != gen:
                return  # another thread remapped meanwhile: just retry
            cur = env.info()["map_size"]
            env.set_mapsize(0)  # maybe another process grew it already
            if grow:
                adopted = env.info()["map_size"]
                if adopted <= cur:
                    if cur >= self.max_map:
                        env.set_mapsize(cur)
                        raise StoreFull(
                            f"variable store {self.path!r} is full: map size {cur} bytes "
                            f"reached max_map_size"
                        )
                    env.set_mapsize(min(cur * 2, self.max_map))
            self.gen += 1
        finally:
            self.release_exclusive()

    # ------------------------------------------------------------------ runners

    def read(self, fn: Callable[[Any, Any], T], arg: Any, buffers: bool = False) -> T:
        """Run ``fn(txn, arg)`` in one short read transaction."""
        for _ in range(RETRY_LIMIT):
            gen = self.gen
            with self.lock:  # entering the gate, inlined: reads are the hot path
                if self.excl:
                    self.wait_shared()
                self.active += 1
            try:
                env = self.env
                if env is None:
                    raise self.closed()
                txn = env.begin(buffers=buffers)  # type: ignore[call-overload]
                try:
                    return fn(txn, arg)
                finally:
                    txn.abort()
            except lmdb.MapResizedError:
                pass
            finally:
                with self.lock:  # leaving the gate
                    self.active -= 1
                    if self.excl and not self.active:
                        self.cond.notify_all()
            self.remap(gen, False)
        raise StoreError("variable store: map kept being resized, giving up")

    def write(
        self, fn: Callable[[Any, Any], tuple[bool, Any]], arg: Any, buffers: bool = True, *,
        shown: list[tuple[bytes, Variable | None]] | None = None, handed: Callable[[], None] | None = None,
    ) -> Any:
        """Run ``fn(txn, arg)`` in a write transaction (group-committed with the
        durable store), retried as a whole after map growth.  ``fn`` returns
        (commit?, result); not committing skips the fsync when nothing changed.

        Hand-over: with ``handed``, the values ``shown`` (key, value or None
        for a delete) are visible to ``get``/``get_many`` of this process from
        the moment the write is queued, and ``handed()`` is called then; the
        call still returns only once the write is durable.  Writes are applied
        in queue order, so a write queued after reading a shown value lands
        after the write that showed it."""
        if self.readonly:
            raise StoreError(f"variable store {self.path!r} is open read-only")
        now = time.monotonic()
        if now - self._checked > READER_CHECK_EVERY:
            self._checked = now
            self.reader_check()
        if handed is None:
            if not self.durable:  # no fsync to share: run it here (GroupCommit.submit would too)
                return self._run_alone(fn, arg, buffers)
            return self.commits.submit(fn, arg, buffers)
        queued = self._showing(shown) if shown else None
        return self.commits.submit(fn, arg, buffers, queued=queued, handed=handed)

    def _showing(self, shown: list[tuple[bytes, Variable | None]]) -> Callable[[Pending], None]:
        """What to do when a handed-over write is queued: show its values to this process."""
        def queued(item: Pending) -> None:
            with self._overlay_lock:
                for kb, value in shown:
                    self.overlay[kb] = (value, item)
            item.shown = [kb for kb, _ in shown]
        return queued

    def _unshow(self, batch: list[Pending]) -> None:
        """After a commit: its shown values are in LMDB now (or failed)."""
        with self._overlay_lock:
            overlay = self.overlay
            for it in batch:
                if it.shown:
                    for kb in it.shown:
                        entry = overlay.get(kb)
                        if entry is not None and entry[1] is it:
                            del overlay[kb]

    def reader_check(self) -> None:
        """Free the reader slots of dead processes (see the module doc)."""
        env = self.env
        if env is not None:
            try:
                env.reader_check()
            except lmdb.Error:
                pass  # only a clean-up: never fail a write for it

    def _run_batch(self, batch: list[Pending]) -> None:
        """Apply queued writes in one transaction; every item ends done (result or error)."""
        single = batch[0] if len(batch) == 1 else None
        try:
            for _ in range(RETRY_LIMIT):
                gen = self.gen
                with self.lock:  # entering the gate, inlined: the write path is hot too
                    if self.excl:
                        self.wait_shared()
                    self.active += 1
                try:
                    env = self.env
                    if env is None:
                        raise self.closed()
                    if single is not None:
                        single.result = single.error = None
                        self._run_single(env, single)
                    else:
                        for it in batch:
                            it.result = it.error = None
                        self._run_nested(env, batch)
                    return
                except lmdb.MapFullError:
                    grow = True
                except lmdb.MapResizedError:
                    grow = False
                finally:
                    with self.lock:  # leaving the gate
                        self.active -= 1
                        if self.excl and not self.active:
                            self.cond.notify_all()
                self.remap(gen, grow)
            raise StoreError("variable store: map kept being resized, giving up")
        except BaseException as exc:  # the commit itself failed: every item shares the failure
            for it in batch:
                if it.error is None:
                    it.error = exc
        finally:
            if self.overlay:
                self._unshow(batch)
            for it in batch:
                it.done = True

    def _run_alone(self, fn: Callable[[Any, Any], tuple[bool, Any]], arg: Any, buffers: bool) -> Any:
        """``_run_batch`` of one write, without queue or ``Pending`` (the fast store's path)."""
        self.commits.batches += 1
        for _ in range(RETRY_LIMIT):
            gen = self.gen
            with self.lock:  # entering the gate
                if self.excl:
                    self.wait_shared()
                self.active += 1
            try:
                env = self.env
                if env is None:
                    raise self.closed()
                txn = env.begin(write=True, buffers=buffers)  # type: ignore[call-overload]
                try:
                    commit, result = fn(txn, arg)
                    if commit:
                        txn.commit()
                    else:
                        txn.abort()
                except BaseException:
                    _abort_quietly(txn)
                    raise
                return result
            except lmdb.MapFullError:
                grow = True
            except lmdb.MapResizedError:
                grow = False
            finally:
                with self.lock:  # leaving the gate
                    self.active -= 1
                    if self.excl and not self.active:
                        self.cond.notify_all()
            self.remap(gen, grow)
        raise StoreError("variable store: map kept being resized, giving up")

    @staticmethod
    def _run_single(env: lmdb.Environment, it: Pending) -> None:
        txn = env.begin(write=True, buffers=it.buffers)  # type: ignore[call-overload]
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
    def _run_nested(env: lmdb.Environment, batch: list[Pending]) -> None:
        txn = env.begin(write=True)
        try:
            changed = False
            for it in batch:
                child = env.begin(write=True, parent=txn, buffers=it.buffers)  # type: ignore[call-overload]
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

    # ------------------------------------------------------------------ sharing

    def release(self) -> None:
        """Drop one handle; the environment closes with the last one."""
        with _envs_lock:
            self.refs -= 1
            if self.refs > 0:
                return
            if _envs.get(self.ident) is self:
                del _envs[self.ident]
        self.acquire_exclusive()
        try:
            if self.env is not None:
                self.env.close()
                self.env = None
        finally:
            self.release_exclusive()


_envs: dict[tuple[int, int], SharedEnv] = {}
_envs_lock = threading.Lock()


def share(path: str, *, map_size: int, max_map_size: int, durable: bool, readonly: bool) -> SharedEnv:
    """The environment of ``path`` in this process, opened on first use."""
    if not readonly:
        os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        st = os.stat(path)
    except OSError as e:
        raise StoreError(f"cannot open variable store {path!r}: {e.strerror}") from e
    dir_id = (st.st_dev, st.st_ino)
    with _envs_lock:
        sh = _envs.get(dir_id)
        if sh is not None and (sh.env is None or sh.pid != os.getpid()):
            sh = None  # closed, or inherited through fork(): never reuse
        if sh is None:
            sh = _open(path, map_size, max_map_size, durable, readonly, dir_id)
            _envs[dir_id] = sh
            return sh
        if sh.durable != durable:
            raise StoreError(
                f"variable store {path!r} is already open in this process with durable={sh.durable}"
            )
        if sh.readonly and not readonly:
            raise StoreError(f"variable store {path!r} is already open read-only in this process")
        sh.refs += 1
        sh.max_map = max(sh.max_map, max_map_size)
        return sh


def _open_dbs(env: lmdb.Environment, readonly: bool) -> tuple[Any, Any, Any, Any]:
    if not readonly:
        with env.begin(write=True) as txn:
            dbs = tuple(env.open_db(name, txn=txn) for name in (b"vars", b"inst", b"blobs", b"reserved"))
            move_reserved(txn, dbs[0], dbs[3])
            return dbs  # type: ignore[return-value]
    # Without txn=: py-lmdb then keeps the handles (a handle opened inside a
    # caller's read transaction dies with it).
    vars_db = env.open_db(b"vars", create=False)
    inst_db = env.open_db(b"inst", create=False)
    found: list[Any] = []
    for name in (b"blobs", b"reserved"):
        try:
            found.append(env.open_db(name, create=False))
        except lmdb.NotFoundError:
            found.append(None)  # written before it existed
    # no blobs: none to index; no reserved: isolde's records are among the variables
    return vars_db, inst_db, found[0], vars_db if found[1] is None else found[1]


def move_reserved(txn: lmdb.Transaction[bytes], vars_db: Any, reserved_db: Any) -> int:
    """Move isolde's own records (``keys.in_reserved``) that an environment written before
    the ``reserved`` database kept among the variables; returns how many moved.  One skip
    per namespace when there is nothing to move (every open of a writable store)."""
    cur = txn.cursor(vars_db)
    moved = 0
    ok = cur.set_range(b"\x01")  # past the version sequence (key NUL)
    while ok:
        k = bytes(cur.key())
        ns = k[: k.index(b"\x00") + 1]
        mark = ns + RESERVED_MARK
        ok = cur.set_range(mark)
        while ok and bytes(cur.key()).startswith(mark):
            txn.put(bytes(cur.key()), bytes(cur.value()), db=reserved_db)
            ok = cur.delete()  # (moves to the next record)
            moved += 1
        ok = cur.set_range(ns[:-1] + b"\x01")
    return moved


def _open(
    path: str, map_size: int, max_map: int, durable: bool, readonly: bool, dir_id: tuple[int, int],
) -> SharedEnv:
    """Open the environment and adopt a map size another process already
    grew to, so this process does not start by hitting MapFull."""
    for attempt in range(RETRY_LIMIT):
        try:
            env = lmdb.open(
                path, map_size=map_size, subdir=True, readonly=readonly,
                sync=durable, metasync=durable, lock=True, mode=0o600,
                max_dbs=8, max_readers=512, max_spare_txns=4, create=not readonly,
            )
            break
        except lmdb.MapResizedError as e:
            # py-lmdb begins a transaction inside open(); another process
            # grew the data past the size just mapped.  Reopening maps at
            # least the used size again.
            if attempt == RETRY_LIMIT - 1:
                raise StoreError(f"cannot open variable store {path!r}: {e}") from e
        except lmdb.Error as e:
            raise StoreError(f"cannot open variable store {path!r}: {e}") from e
    try:
        try:
            env.reader_check()  # slots of processes that died inside a read
        except lmdb.Error:
            pass
        wanted = env.info()["map_size"]
        for attempt in range(RETRY_LIMIT):
            try:
                env.set_mapsize(0)
                if env.info()["map_size"] < wanted:
                    env.set_mapsize(wanted)
                dbs = _open_dbs(env, readonly)
                break
            except lmdb.MapResizedError:
                if attempt == RETRY_LIMIT - 1:
                    raise
    except lmdb.Error as e:
        env.close()
        raise StoreError(f"cannot open variable store {path!r}: {e}") from e
    return SharedEnv(path, env, dbs, durable=durable, readonly=readonly, max_map=max_map, ident=dir_id)
