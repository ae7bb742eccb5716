"""``lock: true`` across hosts: ``VariableLocks`` on PostgreSQL advisory locks.

Chosen by the ``isolde_locks`` hook whenever the store is a ``PostgresStore``.

Mechanism
---------
A variable's lock is the session-level advisory lock ``pg_advisory_lock(k)``
where ``k`` is a signed 64-bit hash (blake2b) of the variable's full name,
taken on a connection of its own: each lock held in a process is held by one
connection (a small pool of idle ones is kept).  The server releases a
session's advisory locks when the session ends, so a worker that dies (even
``kill -9``) loses its locks as soon as the server notices its connection is
gone: at once when the process died and its host is up (the kernel closes the
socket), and for a host that vanished from the network after the TCP keepalives
set on these sessions (``tcp_keepalives_idle`` 10 s, then 3 probes 5 s apart:
about 25 s).  A process that is stopped (SIGSTOP) keeps its locks until it goes
on or dies; a waiter elsewhere then fails after ``[limits] lock_wait`` with
``isolde.lock.timeout``.

**A lock lost while held cannot be written through.** Each commit the holder
makes from the thread that took its locks (the instance loop's state commits)
checks, inside its transaction, that the server still grants every lock the
instance holds to the session that took it (``pg_locks``).  When a lock session
ended (the database restarted, the session was terminated), that commit is
refused (``LockLost``: the catchable error ``isolde.lock.lost``) and nothing of
the state is applied, rather than write a value another process may have
changed meanwhile.

Within one process everything works as the built-in byte-range locks do
(``isolde.locks``): waiters for a key queue in arrival order and only the first
asks the server; a lock released or handed over (``hand_over``) goes straight
to the next waiter of this process, keeping its connection (and the advisory
lock) until the write is durable, so other processes never see the old value;
deadlocks among instances of the process are detected from the wait-for graph.
The first waiter asks the server with ``pg_try_advisory_lock`` and, if another
process holds the lock, waits in ``pg_advisory_lock`` under a ``lock_timeout``
(the server wakes it the moment the lock is free).  A cycle of waits spanning
processes is broken by the lock wait timeout.  One engine has one
``PostgresLocks``; two engines of one process on the same database exclude
each other through the server, as two processes do.

Hash collisions
(2^-64 per pair) only make two variables share a lock.
"""

from __future__ import annotations

import collections
import contextvars
import hashlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from isolde.plugin import DEADLOCK_CODE, TIMEOUT_CODE, InstanceFailure, StoreError, WorkflowError

if TYPE_CHECKING:
    import psycopg

    from .store import PostgresStore

__all__ = ["LOCK_LOST_CODE", "LockLost", "PostgresLocks", "SERVER_KEEPALIVES", "held_sessions", "lock_id"]

SERVER_KEEPALIVES = "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
"""Set on every lock session: the server drops a vanished client's session, and its locks, within ~25 s."""

LOCK_LOST_CODE = "isolde.lock.lost"


class LockLost(StoreError):
    """A commit found a variable lock of its instance no longer granted: nothing was applied.
    The state fails with the catchable error ``isolde.lock.lost``."""

    code = LOCK_LOST_CODE


_MAX_WAIT_STEP = 2.0  # seconds one server-side wait lasts before the deadline is looked at again
_KEEP_IDLE = 8

_holder_here: contextvars.ContextVar[tuple[PostgresLocks, str] | None] = contextvars.ContextVar(
    "isolde_pg_lock_owner", default=None)


def held_sessions() -> list[tuple[int, int]]:
    """``(backend pid, lock id)`` of every lock the owner that last took a lock in this
    thread (context) still holds: what the store checks inside that thread's commits."""
    here = _holder_here.get()
    return [] if here is None else here[0].sessions(here[1])


def lock_id(key: bytes) -> int:
    """The advisory lock id (signed 64 bits) of a lock key."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big", signed=True)


def _pid(conn: psycopg.Connection[Any]) -> int:
    """The server process of ``conn``; 0 (no process) when that cannot be told any more."""
    try:
        return int(conn.info.backend_pid)
    except Exception:  # a closed connection
        return 0


class PostgresLocks:
    """Variable locks held as advisory locks of connections to the store's database."""

    def __init__(self, store: PostgresStore) -> None:
        import psycopg

        self._psycopg = psycopg
        self._store = store
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)  # guards every table below
        self._wakers: dict[str, threading.Condition] = {}
        self._held: dict[str, dict[bytes, psycopg.Connection[Any]]] = {}  # owner -> key -> connection
        self._holder: dict[bytes, str] = {}
        self._waiting: dict[str, bytes] = {}
        self._queues: dict[bytes, collections.deque[str]] = {}
        self._free: dict[bytes, psycopg.Connection[Any]] = {}  # handed over, write not durable yet
        self._inflight: dict[bytes, int] = {}
        self._idle: list[psycopg.Connection[Any]] = []
        self._closed = False

    # ---------------------------------------------------------------- connections

    def _connection(self) -> psycopg.Connection[Any]:
        with self._mutex:
            if self._closed:
                raise InstanceFailure("the variable locks are closed", code="isolde.lock.unavailable")
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.broken:
            return conn
        try:
            return self._store.connect(session=SERVER_KEEPALIVES, patience=self._store.reconnect_timeout)
        except StoreError as exc:
            raise InstanceFailure(f"cannot lock variables: {exc}", code="isolde.lock.unavailable") from None

    def _pool(self, conn: psycopg.Connection[Any]) -> None:
        """Keep a connection that holds no lock; with ``_cond`` held."""
        if not self._closed and not conn.broken and len(self._idle) < _KEEP_IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    def _unlock(self, key: bytes, conn: psycopg.Connection[Any]) -> None:
        """Give up the advisory lock of ``conn``; with ``_cond`` held."""
        try:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_id(key),))
        except self._psycopg.Error:
            conn.close()  # the session ends: its lock goes with it
            return
        self._pool(conn)

    def _server_lock(self, conn: psycopg.Connection[Any], key: bytes, wait: float) -> bool:
        """Take the advisory lock on ``conn``, waiting at most ``wait`` seconds for another
        process to let it go.  False when it stayed taken (or the connection broke)."""
        ident = lock_id(key)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ident,)).fetchone()
            if row and row[0]:
                return True
            if wait <= 0:
                return False
            conn.execute(f"SET lock_timeout = {max(1, int(wait * 1000))}")
            conn.execute("SELECT pg_advisory_lock(%s)", (ident,))
            return True
        except self._psycopg.errors.LockNotAvailable:
            return False
        except self._psycopg.Error:
            conn.close()
            return False

    # ---------------------------------------------------------------- VariableLocks

    def acquire(self, owner: str, keys: list[bytes], timeout: float, names: dict[bytes, str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for key in sorted(set(keys)):
            with self._cond:
                if key in self._held.get(owner, ()):
                    continue
            self._acquire_one(owner, key, deadline, timeout, (names or {}).get(key, key.decode(errors="replace")))

    def _take(self, owner: str, key: bytes, conn: psycopg.Connection[Any], queue: collections.deque[str]) -> None:
        _holder_here.set((self, owner))
        queue.popleft()
        self._holder[key] = owner
        self._held.setdefault(owner, {})[key] = conn
        self._waiting.pop(owner, None)

    def _acquire_one(self, owner: str, key: bytes, deadline: float, timeout: float, name: str) -> None:
        conn = self._connection()
        with self._cond:
            queue = self._queues.setdefault(key, collections.deque())
            queue.append(owner)
            try:
                while True:
                    if self._closed:  # the engine is closing: give up rather than take a lock
                        raise InstanceFailure("the variable locks were closed", code="isolde.lock.unavailable")
                    first = queue[0] == owner
                    if first and key in self._free:  # handed over in this process: adopt it
                        self._pool(conn)
                        conn = self._free.pop(key)
                        self._take(owner, key, conn, queue)
                        return
                    holder = self._holder.get(key)
                    remaining = deadline - time.monotonic()
                    if first and holder is None:  # nobody here holds it: ask the server
                        if conn.closed:
                            self._cond.release()
                            try:
                                conn = self._connection()
                            finally:
                                self._cond.acquire()
                            continue
                        self._cond.release()  # others go on meanwhile; queued behind this owner
                        try:
                            got = self._server_lock(conn, key, min(remaining, _MAX_WAIT_STEP))
                        finally:
                            self._cond.acquire()
                        if got:
                            self._take(owner, key, conn, queue)
                            return
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise self._timeout(name, timeout)
                        continue
                    if holder is not None and self._closes_cycle(owner, holder):
                        raise WorkflowError(
                            DEADLOCK_CODE,
                            f"locking variable {name} would deadlock: its holder waits for a lock this "
                            "instance holds (lock variables in the same order, or in one getter)",
                        )
                    if remaining <= 0:
                        raise self._timeout(name, timeout)
                    self._waiting[owner] = key
                    waker = self._wakers.get(owner)
                    if waker is None:
                        waker = self._wakers[owner] = threading.Condition(self._mutex)
                    waker.wait(remaining)
            except BaseException:
                self._waiting.pop(owner, None)
                try:
                    queue.remove(owner)
                except ValueError:
                    pass
                if not conn.closed:
                    self._pool(conn)
                self._wake(key)
                raise
            finally:
                self._wakers.pop(owner, None)
                if not queue:
                    self._queues.pop(key, None)

    @staticmethod
    def _timeout(name: str, timeout: float) -> WorkflowError:
        return WorkflowError(
            TIMEOUT_CODE,
            f"variable {name} stayed locked by another instance for {timeout:g} s "
            "(raise [limits] lock_wait in isolde.toml, or catch isolde.lock.timeout)",
        )

    def _closes_cycle(self, owner: str, holder: str) -> bool:
        seen = set()
        cur: str | None = holder
        while cur is not None and cur not in seen:
            if cur == owner:
                return True
            seen.add(cur)
            waits_for = self._waiting.get(cur)
            cur = None if waits_for is None else self._holder.get(waits_for)
        return False

    def _wake(self, key: bytes) -> None:
        queue = self._queues.get(key)
        if queue:
            waker = self._wakers.get(queue[0])
            if waker is not None:
                waker.notify()

    def sessions(self, owner: str) -> list[tuple[int, int]]:
        """``(backend pid, lock id)`` of each lock ``owner`` holds (the pid of a broken
        session is that of the ended session, which the server no longer knows)."""
        with self._cond:
            return [(_pid(conn), lock_id(key)) for key, conn in self._held.get(owner, {}).items()]

    def holds(self, owner: str, key: bytes) -> bool:
        with self._cond:
            return key in self._held.get(owner, ())

    def release(self, owner: str, keys: list[bytes] | None = None) -> None:
        with self._cond:
            held = self._held.get(owner)
            if not held:
                return
            for key in list(held) if keys is None else keys:
                conn = held.pop(key, None)
                if conn is None:
                    continue
                self._holder.pop(key, None)
                if self._inflight.get(key):
                    self._free[key] = conn  # a handed-over write of it is not durable yet
                else:
                    self._unlock(key, conn)
                self._wake(key)
            if not held:
                del self._held[owner]

    def hand_over(self, owner: str, keys: list[bytes]) -> Callable[[], None]:
        with self._cond:
            held = self._held.get(owner, {})
            mine = [k for k in keys if k in held]
            for key in mine:
                self._inflight[key] = self._inflight.get(key, 0) + 1
                self._holder.pop(key, None)
                self._free[key] = held.pop(key)
                self._wake(key)
            if not held:
                self._held.pop(owner, None)

        def durable() -> None:
            with self._cond:
                for key in mine:
                    left = self._inflight[key] - 1
                    if left:
                        self._inflight[key] = left
                        continue
                    del self._inflight[key]
                    conn = self._free.pop(key, None)
                    if conn is not None:
                        self._unlock(key, conn)
                        self._wake(key)

        return durable

    def close(self) -> None:
        """Close every connection: the server releases every lock of this object."""
        with self._cond:
            self._closed = True
            conns = [*self._idle, *self._free.values(), *(c for h in self._held.values() for c in h.values())]
            self._idle, self._free, self._held, self._holder = [], {}, {}, {}
        for conn in conns:
            conn.close()
