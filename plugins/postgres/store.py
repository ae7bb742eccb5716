"""The PostgreSQL variable store: ``VariableStore`` on one database (see the package docstring).

Connections
-----------
A small pool of autocommit connections, one per thread at a time, each named
``application_name=isolde`` (unless the URL names one) with TCP keepalives (the
URL's own settings win).  isolde's tables are created and migrated when the store
opens (``schema.upgrade``).

When the database goes away
---------------------------
Every operation runs through ``_run``: a lost connection (the server restarted,
the backend was terminated, the network cut) is replaced and the operation run
again, for at most ``reconnect_timeout`` seconds (then a ``StoreError``), but only
when it is certain that nothing of it was committed: the connection broke before
``COMMIT`` was sent (the server rolls back a transaction whose client is gone),
or it broke during ``COMMIT`` and, on a new connection,
``pg_xact_status`` of the transaction's id, taken just before, says ``aborted``.
When it says ``committed``, the operation succeeded and is not repeated.
Reads are simply run again.

Statements in the commit (the fencing seam for the daemon's claims)
-------------------------------------------------------------------
A put that has a method ``in_pipeline(connection)`` is not a variable: ``write``
calls it first, in the batch's own transaction and pipeline (it sends its
statements without waiting for them), and the check it returns once their
results arrived, before COMMIT; whatever that raises aborts the whole batch
(nothing of it is applied) and propagates.  So a checked commit still takes two
round trips (everything up to the transaction id, then COMMIT).  A put with
``in_transaction(cursor)`` instead runs its statements one by one, reading their
results as it goes (the batch is then not pipelined).  The
daemon's instance records on PostgreSQL are such puts: their statement only
succeeds while the instance's claim still names this worker and epoch, so a
worker that lost its claim cannot commit a state any more.  Like everything in
the transaction, it is run again when the connection was lost before COMMIT.
"""


from __future__ import annotations

import builtins
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from isolde.plugin import (
    Put,
    Ref,
    StoreError,
    ValueReader,
    Variable,
    VariableStore,
    check_name,
    check_ref,
    is_orphan,
    machine,
    registration,
    scope_owner,
)

from . import schema
from .connection import connect, first_line, redact
from .locks import LockLost, held_sessions

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore", "SCHEMA_VERSION", "redact"]

SCHEMA_VERSION = max(s.version for s in schema.steps() if s.component == "store")
_XID = "SELECT pg_current_xact_id_if_assigned()::text"  # the transaction's id, if it wrote
_STILL_HELD = (  # how many of the (pid, lock id) pairs the server still grants
    "SELECT count(*) FROM pg_locks l JOIN unnest(%s::int[], %s::int8[]) AS h(pid, id) ON l.pid = h.pid "
    "AND ((l.classid::int8 << 32) | l.objid::int8) = h.id WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted"
)
_STREAM_THRESHOLD = 1 << 20  # values above this are read in chunks
_CHUNK = 1 << 20
T = TypeVar("T")

_COLS = "mime, data, size, created, updated, version"
_UPSERT = (
    "INSERT INTO isolde_variables AS v (namespace, scope, owner, key, mime, data, size, created, updated, version) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, nextval('isolde_version_seq')) "
    "ON CONFLICT (namespace, scope, owner, key) DO UPDATE SET mime = EXCLUDED.mime, data = EXCLUDED.data, "
    "size = EXCLUDED.size, updated = EXCLUDED.updated, version = EXCLUDED.version RETURNING version, created"
)
_AT = "FROM isolde_variables WHERE namespace = %s AND scope = %s AND owner = %s AND key = %s"
_INSERT_NEW = _UPSERT.split(" ON CONFLICT")[0] + " ON CONFLICT DO NOTHING RETURNING version, created"
_DELETE = f"DELETE {_AT}"
_SELECT = f"SELECT {_COLS} {_AT}"
_CHUNK_AT = f"SELECT substring(data FROM %s FOR %s) {_AT}"
_OF_OWNER = "FROM isolde_variables WHERE namespace = %s AND scope = %s AND owner = %s"
_MAX_NAME = 1024  # bytes of a namespace or owner: keeps an address within a btree entry

_Address = tuple[str, str, str, str]


def _name(value: str, what: str) -> None:
    check_name(value, what)
    if len(value.encode()) > _MAX_NAME:
        raise StoreError(f"{what} is longer than {_MAX_NAME} bytes: {value[:40]!r}...")


def _fits(namespace: str, scope: str, owner: str) -> None:
    for value, what in ((namespace, "namespace"), (owner, f"owner of a {scope}-scope variable")):
        if len(value.encode()) > _MAX_NAME:
            raise StoreError(f"{what} is longer than {_MAX_NAME} bytes: {value[:40]!r}...")


def _owner(namespace: str, scope: str, owner: str) -> str:
    owner = scope_owner(namespace, scope, owner)
    _fits(namespace, scope, owner)
    return owner


def _address(ref: Ref) -> _Address:
    addr = check_ref(ref)
    _fits(addr[0], addr[1], addr[2])
    return addr


def _data(ref: Ref, data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StoreError(f"variable {ref.key!r}: data must be bytes, got {type(data).__name__}")
    return bytes(data)


def _var(row: Sequence[Any]) -> Variable:
    mime, data, size, created, updated, version = row
    return Variable(bytes(data), mime, int(size), float(created), float(updated), int(version))


class _Reader(io.BytesIO):
    """A small value, read whole."""

    def __init__(self, data: bytes, mime: str) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)


class _ChunkReader(io.RawIOBase):
    """A large value read in chunks inside one REPEATABLE READ transaction held
    on its own connection: a later replace or delete does not change what it reads."""

    def __init__(self, conn: psycopg.Connection[Any], addr: _Address, mime: str, size: int) -> None:
        super().__init__()
        self._conn = conn
        self._addr = addr
        self.mime = mime
        self.size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        left = self.size - self._pos
        want = left if size is None or size < 0 else min(size, left)
        out = bytearray()
        while len(out) < want:
            buf = bytearray(min(_CHUNK, want - len(out)))
            n = self.readinto(buf)
            if n == 0:
                break
            out += buf[:n]
        return bytes(out)

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self._pos)
        if n <= 0:
            return 0
        import psycopg

        try:
            row = self._conn.execute(_CHUNK_AT, (self._pos + 1, n, *self._addr)).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: reading variable {self._addr[3]!r}: {first_line(exc)}") from None
        chunk = bytes(row[0]) if row else b""
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            try:
                self._conn.close()
            finally:
                super().close()


def _check(conn: psycopg.Connection[Any], checks: Sequence[Put]) -> None:
    """Run the statements of puts with ``in_pipeline`` (outside a pipeline: one by one) and
    their checks, in the caller's transaction; what a check raises aborts it."""
    for check in [c.in_pipeline(conn) for c in checks]:  # type: ignore[attr-defined]
        check()


class PostgresStore:
    """Variables in PostgreSQL tables; connections kept in a small pool, one per thread at a time."""

    def __init__(self, url: str, *, durable: bool = True, reconnect_timeout: float = 30.0) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.where = redact(url)
        self.durable = durable
        self.reconnect_timeout = reconnect_timeout
        self._lock = threading.Lock()
        self._idle: builtins.list[psycopg.Connection[Any]] = []
        self._closed = False
        self._here = machine()
        conn = self.connect()  # a wrong URL or refused login fails here, at once
        deadline = time.monotonic() + reconnect_timeout
        while True:
            try:
                schema.upgrade(conn, f"[store] url {self.where}")
                break
            except psycopg.Error as exc:
                lost = conn.broken or conn.closed
                conn.close()
                if not lost or time.monotonic() > deadline:
                    raise StoreError(f"[store] url {self.where}: cannot set up isolde's tables: {first_line(exc)}") from None
                conn = self._reconnect(deadline)  # the session was lost: set up again
            except BaseException:
                conn.close()
                raise
        self._idle.append(conn)

    # ---------------------------------------------------------------- connections

    def connect(self, *, session: str = "", patience: float = 0.0) -> psycopg.Connection[Any]:
        """A new autocommit connection with isolde's settings and this store's
        durability (``session``: more SET statements), trying again for ``patience``
        seconds while the server is away (a StoreError naming the URL after that)."""
        sets = ([] if self.durable else ["SET synchronous_commit = off"]) + ([session] if session else [])
        if patience <= 0:
            return connect(self.url, "; ".join(sets))
        return self._reconnect(time.monotonic() + patience, "; ".join(sets))

    def _reconnect(self, deadline: float, session: str | None = None) -> psycopg.Connection[Any]:
        """A new connection, trying again (with a growing pause) until ``deadline``."""
        pause = 0.05
        while True:
            try:
                return self.connect() if session is None else connect(self.url, session)
            except StoreError:
                if self._closed or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _take(self) -> psycopg.Connection[Any] | None:
        with self._lock:
            if self._closed:
                raise StoreError("the PostgreSQL store is closed")
            return self._idle.pop() if self._idle else None

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            keep = not self._closed and not conn.broken and len(self._idle) < 16
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def _run(self, body: Callable[[psycopg.Connection[Any]], T], *, begin: str | None = "BEGIN",
             pipelined: bool = False, settle: Callable[[T], None] | None = None) -> T:
        """Run ``body`` on a pooled connection, inside ``begin`` ... COMMIT (or as one
        autocommit statement with ``begin=None``).  A lost connection is replaced and
        ``body`` run again while it is certain that nothing was committed (see the module
        docstring); SQL errors become StoreError, anything else ``body`` raises rolls back
        and propagates.  ``pipelined``: ``body`` only sends statements (reads no result),
        and everything up to COMMIT goes to the server in one round trip.  ``settle`` gets
        what ``body`` returned, its results arrived, before COMMIT; raising aborts."""
        psycopg = self._psycopg
        deadline: float | None = None
        while True:
            conn = self._take()
            if conn is None:
                conn = self.connect() if deadline is None else self._reconnect(deadline)
            xid: str | None = None
            committing = False
            try:
                if pipelined and begin is not None:
                    with conn.pipeline():
                        conn.execute(begin)
                        result = body(conn)
                        ident = conn.execute(_XID)
                    if settle is not None:
                        settle(result)
                    row = ident.fetchone()
                    xid = row[0] if row else None
                    committing = True
                    conn.execute("COMMIT")
                else:
                    if begin is not None:
                        conn.execute(begin)
                    result = body(conn)
                    if settle is not None:
                        settle(result)
                    if begin is not None:
                        row = conn.execute(_XID).fetchone()
                        xid = row[0] if row else None
                        committing = True
                        conn.execute("COMMIT")
                self._give(conn)
                return result
            except psycopg.Error as exc:
                if not self._lost(conn, exc):  # the statement failed, the connection is fine
                    try:
                        if begin is not None:
                            conn.execute("ROLLBACK")
                        self._give(conn)
                    except psycopg.Error:
                        conn.close()
                    raise StoreError(f"PostgreSQL ({self.where}): {first_line(exc)}") from None
                conn.close()
                if deadline is None:
                    deadline = time.monotonic() + self.reconnect_timeout
                if committing and xid is not None and self._committed(xid, deadline, exc):
                    return result
                if committing and xid is None:  # nothing was written: nothing to lose
                    return result
                if time.monotonic() > deadline:
                    raise StoreError(f"PostgreSQL ({self.where}): connection lost and not back within "
                                     f"{self.reconnect_timeout:g} s: {first_line(exc)}") from None
            except BaseException:  # an error of ``body`` itself (a failed claim check), an interrupt
                self._abandon(conn)
                raise

    def _abandon(self, conn: psycopg.Connection[Any]) -> None:
        """Roll back what ``conn`` was doing and pool it again (close it if that fails)."""
        pq = self._psycopg.pq
        try:
            status = conn.info.transaction_status
            if status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
                conn.execute("ROLLBACK")
                status = conn.info.transaction_status
            if status == pq.TransactionStatus.IDLE:
                self._give(conn)
                return
        except self._psycopg.Error:
            pass
        conn.close()

    def _lost(self, conn: psycopg.Connection[Any], exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone (rather than a statement failing)."""
        if conn.broken or conn.closed:
            return True
        state = getattr(exc, "sqlstate", None)
        if isinstance(exc, self._psycopg.OperationalError) and (state is None or state.startswith(("08", "57P"))):
            return True  # e.g. a pipeline (executemany) cut in the middle
        return False

    def _committed(self, xid: str, deadline: float, exc: BaseException) -> bool:
        """After a connection broke during COMMIT: did transaction ``xid`` commit?
        False when it certainly did not; StoreError when that cannot be known in time."""
        while True:
            try:
                conn = self._reconnect(deadline)
            except StoreError:
                raise StoreError(
                    f"PostgreSQL ({self.where}): the connection broke during a commit and the server was not "
                    f"back within {self.reconnect_timeout:g} s to tell whether it was applied: {first_line(exc)}"
                ) from None
            try:
                row = conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone()
            except self._psycopg.Error:
                conn.close()
                continue
            self._give(conn)
            state = row[0] if row else None
            if state == "committed":
                return True
            if state == "aborted":
                return False
            if state != "in progress" or time.monotonic() > deadline:
                raise StoreError(
                    f"PostgreSQL ({self.where}): the connection broke during a commit whose outcome is unknown "
                    f"({state}): {first_line(exc)}"
                ) from None
            time.sleep(0.01)  # the old session is still finishing

    # ---------------------------------------------------------------- reads

    def get(self, ref: Ref) -> Variable | None:
        addr = _address(ref)
        row = self._run(lambda conn: conn.execute(_SELECT, addr).fetchone(), begin=None)
        return None if row is None else _var(row)

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        addrs = [_address(r) for r in refs]
        unique = list(dict.fromkeys(addrs))
        if not unique:
            return []
        rows = self._run(lambda conn: conn.execute(  # one statement: one snapshot
            f"SELECT q.i, {', '.join('v.' + c for c in _COLS.split(', '))} FROM unnest("
            "%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(ns, sc, ow, k, i) "
            "JOIN isolde_variables v ON v.namespace = q.ns AND v.scope = q.sc AND v.owner = q.ow AND v.key = q.k",
            [list(column) for column in zip(*unique)],
        ).fetchall(), begin=None)
        found = {unique[r[0] - 1]: _var(r[1:]) for r in rows}
        return [found.get(a) for a in addrs]

    def open(self, ref: Ref) -> ValueReader | None:
        addr = _address(ref)
        row = self._run(lambda conn: conn.execute(
            f"SELECT mime, size, CASE WHEN size <= {_STREAM_THRESHOLD} THEN data END {_AT}", addr).fetchone(),
            begin=None)
        if row is None:
            return None
        mime, size, data = row
        if data is not None:
            return _Reader(bytes(data), mime)
        conn = self.connect()  # its own snapshot, held until the stream is closed
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            again = conn.execute(f"SELECT mime, size {_AT}", addr).fetchone()
        except self._psycopg.Error as exc:
            conn.close()
            raise StoreError(f"PostgreSQL ({self.where}): {first_line(exc)}") from None
        if again is None:  # deleted in between
            conn.close()
            return None
        return _ChunkReader(conn, addr, again[0], int(again[1]))

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        addr = _address(ref)
        step = max(1, chunk_size)
        sent = [False]  # chunks went to ``write``: a lost connection can no longer be retried

        def body(conn: psycopg.Connection[Any]) -> Variable | None:
            if sent[0]:
                raise StoreError(f"PostgreSQL ({self.where}): the connection was lost in the middle of "
                                 f"streaming variable {ref.key!r}")
            row = conn.execute(f"SELECT mime, size, created, updated, version {_AT}", addr).fetchone()
            if row is None:
                return None
            mime, size, created, updated, version = row
            for off in range(0, int(size), step):
                part = conn.execute(_CHUNK_AT, (off + 1, step, *addr)).fetchone()
                assert part is not None
                sent[0] = True
                write(memoryview(bytes(part[0])))
            return Variable(b"", mime, int(size), float(created), float(updated), int(version))

        return self._run(body, begin="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        owner = _owner(namespace, scope, owner)
        rows = self._run(lambda conn: conn.execute(
            f'SELECT key, {_COLS} {_OF_OWNER} ORDER BY key COLLATE "C"', (namespace, scope, owner)).fetchall(),
            begin=None)
        return [(r[0], _var(r[1:])) for r in rows]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        """The rows of one read statement on the plugin's own tables (autocommit, run again
        on a new session when the connection was lost)."""
        return self._run(lambda conn: conn.execute(sql, params).fetchall(), begin=None)

    def namespaces(self) -> builtins.list[str]:
        rows = self._run(lambda conn: conn.execute("SELECT DISTINCT namespace FROM isolde_variables").fetchall(),
                         begin=None)
        return sorted(r[0] for r in rows)

    def workflows(self, namespace: str) -> builtins.list[str]:
        _name(namespace, "namespace")
        rows = self._run(lambda conn: conn.execute(
            "SELECT DISTINCT owner FROM isolde_variables WHERE namespace = %s AND scope = 'workflow'", (namespace,)
        ).fetchall(), begin=None)
        return sorted(r[0] for r in rows)

    # ---------------------------------------------------------------- writes

    def write(
        self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
        handover: Callable[[], None] | None = None,
    ) -> None:
        """``VariableStore.write``; puts with ``in_pipeline`` or ``in_transaction`` run
        their statements in the same transaction (see the module docstring)."""
        staged: dict[_Address, tuple[bytes | None, str]] = {}
        senders = [p for p in puts if hasattr(p, "in_pipeline")]
        hooks = [p for p in puts if hasattr(p, "in_transaction") and not hasattr(p, "in_pipeline")]
        for p in puts:
            if hasattr(p, "in_pipeline") or hasattr(p, "in_transaction"):
                continue
            addr = _address(p.ref)
            staged.pop(addr, None)  # later puts win, in their own order
            staged[addr] = (None if p.data is None else _data(p.ref, p.data), p.mime)
        if register_instance is not None:
            _name(register_instance[0], "namespace")
            _name(register_instance[1], "instance id")
        if staged or register_instance is not None or hooks or senders:
            now = time.time()
            locked = held_sessions()
            deletes = [addr for addr, (data, _) in staged.items() if data is None]
            upserts = [(*addr, mime, data, len(data), now, now) for addr, (data, mime) in staged.items()
                       if data is not None]

            def body(conn: psycopg.Connection[Any]) -> tuple[psycopg.Cursor[Any] | None, list[Callable[[], None]]]:
                check = None
                if locked:  # the instance's variable locks are still its own (see locks.py)
                    check = conn.execute(_STILL_HELD, ([p for p, _ in locked], [k for _, k in locked]))
                checks = [s.in_pipeline(conn) for s in senders]
                with conn.cursor() as cur:
                    for hook in hooks:
                        hook.in_transaction(cur)
                    for sql, rows in ((_DELETE, deletes), (_UPSERT, upserts)):
                        if len(rows) == 1:  # the common case, and cheaper than executemany
                            cur.execute(sql, rows[0])
                        elif rows:
                            cur.executemany(sql, rows)
                    if register_instance is not None:
                        cur.execute(
                            "INSERT INTO isolde_instances (namespace, instance, host, registration) "
                            "VALUES (%s, %s, %s, %s) ON CONFLICT (namespace, instance) DO UPDATE SET "
                            "host = EXCLUDED.host, registration = EXCLUDED.registration",
                            (*register_instance, self._here[0], registration()),
                        )
                return check, checks

            def settle(sent: tuple[psycopg.Cursor[Any] | None, list[Callable[[], None]]]) -> None:
                check, checks = sent
                row = None if check is None else check.fetchone()
                if row is not None and row[0] != len(locked):
                    raise LockLost(
                        "a variable lock of this instance was lost while it held it (its database session "
                        "ended: the server restarted or the session was terminated); nothing of this state "
                        "was committed, as another instance may have changed the variable meanwhile"
                    )
                for fenced in checks:
                    fenced()

            self._run(body, pipelined=not hooks, settle=settle)  # an in_transaction hook reads as it goes
        if handover is not None:
            handover()  # committed: later reads see the batch

    def _locked(self, conn: psycopg.Connection[Any], addr: _Address) -> Variable | None:
        """Within a transaction: read the variable and lock its row until the commit."""
        row = conn.execute(_SELECT + " FOR UPDATE", addr).fetchone()
        return None if row is None else _var(row)

    def _put(self, conn: psycopg.Connection[Any], addr: _Address, data: bytes, mime: str, exists: bool) -> Variable | None:
        """Write over the locked row, or create a missing one: None when another
        transaction created it since it was read (the caller reads again)."""
        now = time.time()
        row = conn.execute(_UPSERT if exists else _INSERT_NEW, (*addr, mime, data, len(data), now, now)).fetchone()
        return None if row is None else Variable(data, mime, len(data), float(row[1]), now, int(row[0]))

    def update(self, ref: Ref, fn: Callable[[Variable | None], tuple[bytes | None, str] | None], *,
               checks: Sequence[Put] = ()) -> Variable | None:
        """``VariableStore.update``; ``checks``: puts with ``in_pipeline`` whose statements
        and checks run first in the same transaction (a claim's fence, ``fence.py``)."""
        addr = _address(ref)
        missing = object()

        def body(conn: psycopg.Connection[Any]) -> Any:
            _check(conn, checks)
            cur = self._locked(conn, addr)
            res = fn(cur)
            if res is None:
                return cur
            data, mime = res
            if data is None:
                conn.execute(_DELETE, addr)
                return None
            done = self._put(conn, addr, _data(ref, data), mime, cur is not None)
            return missing if done is None else done

        while True:
            got = self._run(body)
            if got is not missing:
                return got  # type: ignore[no-any-return]

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None, mime: str = "application/json", *,
        checks: Sequence[Put] = (),
    ) -> int:
        """``VariableStore.compare_and_set``; ``checks`` as for ``update``."""
        addr = _address(ref)
        if expected_version is not None and expected_version < 0:
            raise StoreError(f"expected_version must be positive or None, got {expected_version}")
        value = None if data is None else _data(ref, data)

        def body(conn: psycopg.Connection[Any]) -> int:
            _check(conn, checks)
            cur = self._locked(conn, addr)
            if (cur.version if cur is not None else None) != (expected_version or None):
                return 0
            if value is None:
                conn.execute(_DELETE, addr)
                return cur.version if cur is not None else 1
            done = self._put(conn, addr, value, mime, cur is not None)
            return 0 if done is None else done.version  # created meanwhile: no longer missing

        return self._run(body)

    # ---------------------------------------------------------------- deletion

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        owner = _owner(namespace, scope, owner)
        return self._run(lambda conn: conn.execute(f"DELETE {_OF_OWNER}", (namespace, scope, owner)).rowcount)

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        _name(namespace, "namespace")

        def body(conn: psycopg.Connection[Any]) -> int:
            n = conn.execute("DELETE FROM isolde_variables WHERE namespace = %s", (namespace,)).rowcount
            conn.execute("DELETE FROM isolde_instances WHERE namespace = %s", (namespace,))
            return n

        return self._run(body)

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        _owner(namespace, "workflow", old)
        _owner(namespace, "workflow", new)

        def body(conn: psycopg.Connection[Any]) -> int:
            if old == new:
                row = conn.execute(f"SELECT count(*) {_OF_OWNER}", (namespace, "workflow", old)).fetchone()
                return int(row[0]) if row else 0
            if conn.execute(f"SELECT 1 {_OF_OWNER} LIMIT 1", (namespace, "workflow", old)).fetchone() is None:
                return 0
            conn.execute(f"DELETE {_OF_OWNER}", (namespace, "workflow", new))
            return conn.execute("UPDATE isolde_variables SET owner = %s WHERE namespace = %s AND scope = 'workflow' "
                                "AND owner = %s", (new, namespace, old)).rowcount

        return self._run(body)

    def end_instance(self, namespace: str, instance_id: str) -> None:
        _owner(namespace, "instance", instance_id)

        def body(conn: psycopg.Connection[Any]) -> None:
            conn.execute(f"DELETE {_OF_OWNER}", (namespace, "instance", instance_id))
            conn.execute("DELETE FROM isolde_instances WHERE namespace = %s AND instance = %s", (namespace, instance_id))

        self._run(body)

    def sweep_orphans(self) -> int:
        rows = self._run(lambda conn: conn.execute(
            "SELECT namespace, instance, registration FROM isolde_instances WHERE host = %s", (self._here[0],)
        ).fetchall(), begin=None)
        dead = [(ns, inst) for ns, inst, reg in rows if is_orphan(bytes(reg), self._here)]
        for ns, inst in dead:
            self.end_instance(ns, inst)
        return len(dead)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
