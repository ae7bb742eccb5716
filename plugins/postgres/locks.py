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

Within one process the locks are the built-in ones' lock table
(``isolde.plugin.LockTable``, shared with the byte-range locks of LMDB data
directories); this module supplies only its cross-process part
(``AdvisoryLocks``): waiters for a key queue in arrival order and only the first
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

import contextvars
import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from isolde.plugin import InstanceFailure, LockTable, StoreError

if TYPE_CHECKING:
    import psycopg

    from .store import PostgresStore

__all__ = ["LOCK_LOST_CODE", "AdvisoryLocks", "LockLost", "PostgresLocks", "SERVER_KEEPALIVES", "held_sessions", "lock_id"]

SERVER_KEEPALIVES = "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
"""Set on every lock session: the server drops a vanished client's session, and its locks, within ~25 s."""

LOCK_LOST_CODE = "isolde.lock.lost"


class LockLost(StoreError):
    """A commit found a variable lock of its instance no longer granted: nothing was applied.
    The state fails with the catchable error ``isolde.lock.lost``."""

    code = LOCK_LOST_CODE


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


class AdvisoryLocks:
    """The cross-process part (``isolde.plugin.CrossProcess``): a handle is a connection of
    its own to the store's database, holding at most one session-level advisory lock."""

    waits_in_lock = True  # pg_advisory_lock waits in the server, woken the moment the lock is free

    def __init__(self, store: PostgresStore) -> None:
        import psycopg

        self._psycopg = psycopg
        self._store = store
        self._mutex = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self.closed = False

    def handle(self) -> psycopg.Connection[Any]:
        with self._mutex:
            if self.closed:
                raise InstanceFailure("the variable locks are closed", code="isolde.lock.unavailable")
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.broken:
            return conn
        try:
            return self._store.connect(session=SERVER_KEEPALIVES, patience=self._store.reconnect_timeout)
        except StoreError as exc:
            raise InstanceFailure(f"cannot lock variables: {exc}", code="isolde.lock.unavailable") from None

    def usable(self, handle: psycopg.Connection[Any]) -> bool:
        return not handle.closed

    def discard(self, handle: psycopg.Connection[Any]) -> None:
        """Keep a connection that holds no lock (a few), close the others."""
        with self._mutex:
            keep = not self.closed and not handle.broken and not handle.closed and len(self._idle) < _KEEP_IDLE
            if keep:
                self._idle.append(handle)
        if not keep:
            handle.close()

    def unlock(self, handle: psycopg.Connection[Any], key: bytes) -> None:
        try:
            handle.execute("SELECT pg_advisory_unlock(%s)", (lock_id(key),))
        except self._psycopg.Error:
            handle.close()  # the session ends: its lock goes with it
            return
        self.discard(handle)

    def lock(self, handle: psycopg.Connection[Any], key: bytes, wait: float) -> bool:
        """Take the advisory lock, waiting at most ``wait`` seconds in the server for another
        process to let it go.  False when it stayed taken (or the connection broke)."""
        ident = lock_id(key)
        try:
            row = handle.execute("SELECT pg_try_advisory_lock(%s)", (ident,)).fetchone()
            if row and row[0]:
                return True
            if wait <= 0:
                return False
            handle.execute(f"SET lock_timeout = {max(1, int(wait * 1000))}")
            handle.execute("SELECT pg_advisory_lock(%s)", (ident,))
            return True
        except self._psycopg.errors.LockNotAvailable:
            return False
        except self._psycopg.Error:
            handle.close()
            return False

    def close(self, handles: list[psycopg.Connection[Any]]) -> None:
        with self._mutex:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in [*idle, *handles]:
            conn.close()


class PostgresLocks:
    """``VariableLocks``: the shared in-process lock table over advisory locks."""

    def __init__(self, store: PostgresStore) -> None:
        self._advisory = AdvisoryLocks(store)
        self._table: LockTable[psycopg.Connection[Any]] = LockTable(self._advisory)

    def acquire(self, owner: str, keys: list[bytes], timeout: float, names: dict[bytes, str] | None = None) -> None:
        _holder_here.set((self, owner))  # this thread's commits check this owner's locks
        self._table.acquire(owner, keys, timeout, names)

    def release(self, owner: str, keys: list[bytes] | None = None) -> None:
        self._table.release(owner, keys)

    def holds(self, owner: str, key: bytes) -> bool:
        return self._table.holds(owner, key)

    def hand_over(self, owner: str, keys: list[bytes]) -> Callable[[], None]:
        return self._table.hand_over(owner, keys)

    def sessions(self, owner: str) -> list[tuple[int, int]]:
        """``(backend pid, lock id)`` of each lock ``owner`` holds (the pid of a broken
        session is that of the ended session, which the server no longer knows)."""
        return [(_pid(conn), lock_id(key)) for key, conn in self._table.handles(owner)]

    def close(self) -> None:
        """Close every connection: the server releases every lock of this object."""
        self._advisory.close(self._table.close())
