"""Variable locks: what makes a read-modify-write race-free across instances and processes.

A getter variable marked ``lock: true`` takes an exclusive lock on that variable
for its instance before reading it.  The lock is released right after the
instance's setter has durably written the variable, or when the instance ends,
whatever the outcome.  Everything else keeps Direktiv's behaviour (no locks, lost
updates possible).

Mechanism
---------
One lock file per data directory (``<data_dir>/locks``) and Linux
open-file-description (OFD) byte-range locks on it, one byte per variable at an
offset taken from a 56-bit hash of the variable's full name.  OFD locks belong to
an open file description, so they exclude threads of one process as well as other
processes; the kernel drops them the moment their holder's descriptor closes,
which includes ``kill -9`` of the holder.  Taking a lock costs an ``open`` and a
``fcntl``: no store transaction, no fsync.

Inside one process, waiters for the same variable queue in arrival order (FIFO)
and are woken as soon as a lock is released; across processes a waiter polls with
a short back-off (1 ms doubling to ``POLL_MAX``), so after a holder in another
process releases or dies, a waiter takes over within ``POLL_MAX``.  Waits are
bounded: past the deadline the waiter fails with ``isolde.lock.timeout``.
Deadlocks between instances of one process (A holds x and waits for y while B
holds y and waits for x) are detected from the wait-for graph and fail the
instance that would close the cycle with ``isolde.lock.deadlock`` at once; a
cycle that spans processes is broken by the timeout.

Hash collisions between two different variables (2^-56 per pair) would only make
them share a lock: never incorrect, at worst slower.

Structure
---------
``LockTable`` is the in-process half (queues, hand-over, deadlock detection),
parameterised by a ``CrossProcess`` part that excludes other processes:
``FileLocks`` (the OFD locks above) here; a plugin whose store is shared by hosts
supplies its own (the PostgreSQL plugin: advisory locks) and reuses the table
through ``isolde.plugin``.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar, runtime_checkable

from .errors import InstanceFailure, WorkflowError

TIMEOUT_CODE: Final = "isolde.lock.timeout"
DEADLOCK_CODE: Final = "isolde.lock.deadlock"
POLL_MAX: Final = 0.02  # seconds between two cross-process attempts, at most
_MAX_WAIT_STEP: Final = 2.0  # seconds one wait inside ``CrossProcess.lock`` lasts before the deadline is looked at again
T = TypeVar("T")

_FLOCK = struct.Struct("hhqqi4x")  # struct flock on Linux (l_type, l_whence, l_start, l_len, l_pid)


@runtime_checkable
class VariableLocks(Protocol):
    """Exclusive locks on variables, held by owners (an instance's lock owner id).

    A key is the bytes of a variable's full name (the caller builds it; any
    bytes are fine).  Locks exclude every other owner, in this process and, for
    a backend shared between processes, in others; an owner's locks are dropped
    when its process dies.  Safe for concurrent use by threads."""

    def acquire(self, owner: str, keys: list[bytes], timeout: float, names: dict[bytes, str] | None = None) -> None:
        """Lock every key for ``owner``; keys it already holds count as taken.
        Waits at most ``timeout`` seconds in all (0: do not wait), then raises
        ``WorkflowError`` with code ``isolde.lock.timeout``; a wait that would
        close a cycle of owners waiting for each other raises ``isolde.lock.deadlock``
        at once (at least within one process).  Waiters for one key are served
        in arrival order.  On failure the locks taken before it stay held (the
        owner releases them when it ends).  ``names`` maps keys to what an error
        message calls them."""

    def release(self, owner: str, keys: list[bytes] | None = None) -> None:
        """Release those of ``owner``'s locks (all with None), waking the next
        waiter of each; keys it does not hold are ignored."""

    def holds(self, owner: str, key: bytes) -> bool:
        """Whether ``owner`` holds the lock on ``key``."""

    def hand_over(self, owner: str, keys: list[bytes]) -> Callable[[], None]:
        """Release ``owner``'s locks on ``keys`` to the next waiter of this
        process while the owner's write of them is still being made durable
        (its new values are already visible to this process's reads, see
        ``VariableStore.write(handover=...)``).  Waiters in other processes,
        which cannot see those values, stay excluded until the returned
        function is called, which the owner does once its write is durable
        (or failed)."""


H = TypeVar("H")


class CrossProcess(Protocol[H]):
    """What excludes *other processes* from a variable's lock: the part a ``LockTable``
    is parameterised by.  A **handle** (a descriptor of the lock file, a database
    connection) holds at most one key's lock; the table keeps one per lock held."""

    waits_in_lock: bool
    """True: ``lock`` itself waits (in the kernel or a server) for another process to let
    the key go, and the table lets the other threads go on meanwhile; False: ``lock``
    only tries, and the table polls with a back-off up to ``POLL_MAX``."""

    def handle(self) -> H:
        """A handle to take a lock with; raises ``InstanceFailure`` when none can be had."""

    def usable(self, handle: H) -> bool:
        """False when the handle broke (a lost connection): the table takes a new one."""

    def lock(self, handle: H, key: bytes, wait: float) -> bool:
        """Take ``key``'s lock on ``handle``, waiting at most ``wait`` seconds (only when
        ``waits_in_lock``); False when another process holds it."""

    def unlock(self, handle: H, key: bytes) -> None:
        """Give up ``key``'s lock and the handle (closed, or kept for reuse)."""

    def discard(self, handle: H) -> None:
        """Give back a handle that holds no lock."""


def _offset(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=7).digest(), "big")


class FileLocks:
    """Cross-process part of the built-in locks: OFD byte-range locks on ``<data_dir>/locks``."""

    waits_in_lock = False

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "locks")
        os.makedirs(data_dir, mode=0o700, exist_ok=True)

    def handle(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise InstanceFailure(f"cannot open the lock file {self.path}: {exc.strerror}",
                                  code="isolde.lock.unavailable") from None

    def usable(self, handle: int) -> bool:
        return True

    def lock(self, handle: int, key: bytes, wait: float) -> bool:
        try:
            fcntl.fcntl(handle, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, _offset(key), 1, 0))
            return True
        except OSError:
            return False

    def unlock(self, handle: int, key: bytes) -> None:
        os.close(handle)  # closing the descriptor drops the OFD lock

    def discard(self, handle: int) -> None:
        os.close(handle)


def _timeout(name: str, timeout: float) -> WorkflowError:
    return WorkflowError(TIMEOUT_CODE, f"variable {name} stayed locked by another instance for {timeout:g} s "
                         "(raise [limits] lock_wait in isolde.toml, or catch isolde.lock.timeout)")


class LockTable(Generic[H]):
    """The in-process half of ``VariableLocks``, over a cross-process part: FIFO queues
    per key, hand-over to this process's next waiter, deadlock detection among this
    process's owners.  One per data directory (``lock_table``) for the built-in locks;
    a plugin builds one over its own cross-process part (advisory locks of a database)."""

    def __init__(self, cross: CrossProcess[H]) -> None:
        self.cross = cross
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)  # guards every table below
        # A waiter sleeps on its own condition and is woken only when it is next in its
        # key's queue (no herd of waiters waking for one hand-over).
        self._wakers: dict[str, threading.Condition] = {}
        self._held: dict[str, dict[bytes, H]] = {}  # owner -> key -> handle
        self._holder: dict[bytes, str] = {}  # key -> owner, for holders in this process
        self._waiting: dict[str, bytes] = {}  # owner -> key it waits for
        self._queues: dict[bytes, collections.deque[str]] = {}
        # Hand-over (see hand_over): handles whose lock is kept for writes not yet
        # durable, and how many such writes each key has in flight.
        self._free: dict[bytes, H] = {}
        self._inflight: dict[bytes, int] = {}
        self._closed = False

    def acquire(self, owner: str, keys: list[bytes], timeout: float, names: dict[bytes, str] | None = None) -> None:
        """Lock every key for ``owner`` (already held ones count), in a fixed order so that
        two owners locking the same set never deadlock; raise a catchable WorkflowError
        on timeout or deadlock, keeping the locks taken before the failure (they are
        released when the owner ends)."""
        deadline = time.monotonic() + timeout
        for key in sorted(set(keys)):
            with self._cond:
                if key in self._held.get(owner, ()):
                    continue
            self._acquire_one(owner, key, deadline, timeout, (names or {}).get(key, key.decode(errors="replace")))

    def _take(self, owner: str, key: bytes, handle: H, queue: collections.deque[str]) -> None:
        queue.popleft()
        self._holder[key] = owner
        self._held.setdefault(owner, {})[key] = handle
        self._waiting.pop(owner, None)

    def _outside(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` without ``_cond`` (others go on meanwhile); with ``_cond`` held."""
        self._cond.release()
        try:
            return fn()
        finally:
            self._cond.acquire()

    def _acquire_one(self, owner: str, key: bytes, deadline: float, timeout: float, name: str) -> None:
        cross = self.cross
        handle: H | None = cross.handle()
        delay = 0.001
        with self._cond:
            queue = self._queues.setdefault(key, collections.deque())
            queue.append(owner)
            try:
                while True:
                    if self._closed:  # the engine is closing: give up rather than take a lock
                        raise InstanceFailure("the variable locks were closed", code="isolde.lock.unavailable")
                    first = queue[0] == owner
                    if first and key in self._free:  # handed over in this process: adopt it
                        assert handle is not None
                        cross.discard(handle)
                        handle = None
                        self._take(owner, key, self._free.pop(key), queue)
                        return
                    holder = self._holder.get(key)
                    remaining = deadline - time.monotonic()
                    if first and holder is None:  # nobody here holds it: ask the other processes
                        assert handle is not None
                        if not cross.usable(handle):
                            handle = self._outside(cross.handle)
                            continue
                        h, wait = handle, min(remaining, _MAX_WAIT_STEP)
                        got = self._outside(lambda: cross.lock(h, key, wait)) if cross.waits_in_lock \
                            else cross.lock(h, key, 0)
                        if got:
                            self._take(owner, key, h, queue)
                            handle = None
                            return
                        if cross.waits_in_lock:
                            if deadline - time.monotonic() <= 0:
                                raise _timeout(name, timeout)
                            continue
                    if holder is not None and self._closes_cycle(owner, holder):
                        raise WorkflowError(
                            DEADLOCK_CODE,
                            f"locking variable {name} would deadlock: its holder waits for a lock this "
                            "instance holds (lock variables in the same order, or in one getter)",
                        )
                    if remaining <= 0:
                        raise _timeout(name, timeout)
                    self._waiting[owner] = key
                    waker = self._wakers.get(owner)
                    if waker is None:
                        waker = self._wakers[owner] = threading.Condition(self._mutex)
                    waker.wait(remaining if cross.waits_in_lock else min(delay, remaining))
                    delay = min(delay * 2, POLL_MAX)
            finally:
                self._wakers.pop(owner, None)
                if handle is not None:  # failed: leave the queue, give the next waiter its turn
                    cross.discard(handle)
                    self._waiting.pop(owner, None)
                    try:
                        queue.remove(owner)
                    except ValueError:
                        pass
                    self._wake(key)
                if not queue:
                    self._queues.pop(key, None)

    def _closes_cycle(self, owner: str, holder: str) -> bool:
        """Would ``owner`` waiting on ``holder`` close a cycle in the wait-for graph?"""
        seen = set()
        cur: str | None = holder
        while cur is not None and cur not in seen:
            if cur == owner:
                return True
            seen.add(cur)
            waits_for = self._waiting.get(cur)
            cur = None if waits_for is None else self._holder.get(waits_for)
        return False

    def holds(self, owner: str, key: bytes) -> bool:
        with self._cond:
            return key in self._held.get(owner, ())

    def handles(self, owner: str) -> list[tuple[bytes, H]]:
        """The keys ``owner`` holds and the handle holding each."""
        with self._cond:
            return list(self._held.get(owner, {}).items())

    def release(self, owner: str, keys: list[bytes] | None = None) -> None:
        """Release some (or all) of ``owner``'s locks and wake this process's waiters."""
        with self._cond:
            held = self._held.get(owner)
            if not held:
                return
            for key in list(held) if keys is None else keys:
                handle = held.pop(key, None)
                if handle is None:
                    continue
                self._holder.pop(key, None)
                self._drop(key, handle)
                self._wake(key)
            if not held:
                del self._held[owner]

    def _wake(self, key: bytes) -> None:
        """Wake the waiter next in line for ``key``; with ``_cond`` held."""
        queue = self._queues.get(key)
        if queue:
            waker = self._wakers.get(queue[0])
            if waker is not None:
                waker.notify()

    def _drop(self, key: bytes, handle: H) -> None:
        """Give up a handle's lock; with ``_cond`` held.  While a handed-over write of
        the key is not durable yet, the lock is kept (another process must not read
        the old value): the handle waits in ``_free`` for an in-process waiter to
        adopt it or for the last write to finish."""
        if self._inflight.get(key):
            self._free[key] = handle
        else:
            self.cross.unlock(handle, key)

    def hand_over(self, owner: str, keys: list[bytes]) -> Callable[[], None]:
        """See VariableLocks.hand_over.  The cross-process lock stays with this process
        until the returned function has been called for every hand-over of the key."""
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
                    handle = self._free.pop(key, None)
                    if handle is not None:
                        self.cross.unlock(handle, key)
                        self._wake(key)

        return durable

    def close(self) -> list[H]:
        """Refuse new locks and forget every lock: the handles, for the caller to close."""
        with self._cond:
            self._closed = True
            handles = [*self._free.values(), *(h for held in self._held.values() for h in held.values())]
            self._free, self._held, self._holder = {}, {}, {}
            for waker in self._wakers.values():
                waker.notify()
        return handles


class DirectoryLocks(LockTable[int]):
    """The process-wide table of one data directory, shared by every engine open on it
    (deadlock detection must see all of them): one engine's ``close`` leaves the others'
    locks working; the last one's closes the table and its lock files, and the next
    engine on the directory gets a new table."""

    def __init__(self, ident: tuple[str, int, int], data_dir: str) -> None:
        super().__init__(FileLocks(data_dir))
        self._ident = ident
        self.users = 0  # engines using the table; changed under _tables_lock

    def close(self) -> list[int]:
        with _tables_lock:
            self.users -= 1
            if self.users > 0:
                return []
            if _tables.get(self._ident) is self:
                del _tables[self._ident]
        for handle in super().close():  # dropping the descriptors drops their locks
            self.cross.discard(handle)
        return []


_tables: dict[tuple[str, int, int], DirectoryLocks] = {}
_tables_lock = threading.Lock()


def lock_table(data_dir: str) -> LockTable[int]:
    """The process-wide table for a data directory, for one more user (its ``close``
    ends that use)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    st = os.stat(data_dir)
    # the path too: a deleted directory's inode number can come back for a new one
    ident = (os.path.realpath(data_dir), st.st_dev, st.st_ino)
    with _tables_lock:
        table = _tables.get(ident)
        if table is None:
            table = _tables[ident] = DirectoryLocks(ident, data_dir)
        table.users += 1
        return table
