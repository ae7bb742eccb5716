"""The PostgreSQL variable store: ``VariableStore`` on one database (see the package docstring)."""


from __future__ import annotations

import builtins
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

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

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore", "SCHEMA_VERSION", "redact"]

SCHEMA_VERSION = 1
_STREAM_THRESHOLD = 1 << 20  # values above this are read in chunks
_CHUNK = 1 << 20
_SETUP_LOCK = 0x15_01DE  # advisory lock id guarding schema creation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS isolde_schema_version (version integer NOT NULL);
CREATE SEQUENCE IF NOT EXISTS isolde_version_seq;
CREATE TABLE IF NOT EXISTS isolde_variables (
    namespace text NOT NULL, scope text NOT NULL, owner text NOT NULL, key text NOT NULL,
    mime text NOT NULL, data bytea NOT NULL, size bigint NOT NULL,
    created double precision NOT NULL, updated double precision NOT NULL, version bigint NOT NULL,
    PRIMARY KEY (namespace, scope, owner, key));
CREATE TABLE IF NOT EXISTS isolde_instances (
    namespace text NOT NULL, instance text NOT NULL, host text NOT NULL, registration bytea NOT NULL,
    PRIMARY KEY (namespace, instance));
"""

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


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


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
        row = self._conn.execute(_CHUNK_AT, (self._pos + 1, n, *self._addr)).fetchone()
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


class PostgresStore:
    """Variables in PostgreSQL tables; connections kept in a small pool, one per thread at a time."""

    def __init__(self, url: str, *, durable: bool = True) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.durable = durable
        self._lock = threading.Lock()
        self._idle: builtins.list[psycopg.Connection[Any]] = []
        self._closed = False
        self._here = machine()
        conn = self._connect()
        try:
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)

    # ---------------------------------------------------------------- connections

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = self._psycopg.connect(self.url, autocommit=True)
            if not self.durable:
                conn.execute("SET synchronous_commit = off")
            return conn
        except self._psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"[store] url {redact(self.url)}: cannot connect to PostgreSQL: {first}") from None

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                conn.execute(_SCHEMA)
                row = conn.execute("SELECT max(version) FROM isolde_schema_version").fetchone()
                found = row[0] if row else None
                if found is None:
                    conn.execute("INSERT INTO isolde_schema_version VALUES (%s)", (SCHEMA_VERSION,))
                elif found > SCHEMA_VERSION:
                    raise StoreError(
                        f"[store] url {redact(self.url)}: the database holds isolde schema version {found}, "
                        f"newer than this isolde understands ({SCHEMA_VERSION}): upgrade isolde"
                    )
        except self._psycopg.Error as exc:
            raise StoreError(f"[store] url {redact(self.url)}: cannot set up isolde's tables: {exc}") from None

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction; backend errors become StoreError."""
        with self._lock:
            if self._closed:
                raise StoreError("the PostgreSQL store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._connect()
        try:
            with conn.transaction():
                yield conn
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL ({redact(self.url)}): {exc}") from None
        finally:
            with self._lock:
                keep = not self._closed and not conn.broken
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    # ---------------------------------------------------------------- reads

    def get(self, ref: Ref) -> Variable | None:
        addr = _address(ref)
        with self._tx() as conn:
            row = conn.execute(_SELECT, addr).fetchone()
        return None if row is None else _var(row)

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        addrs = [_address(r) for r in refs]
        unique = list(dict.fromkeys(addrs))
        with self._tx() as conn:  # one statement: one snapshot
            rows = conn.execute(
                f"SELECT q.i, {', '.join('v.' + c for c in _COLS.split(', '))} FROM unnest("
                "%s::text[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS q(ns, sc, ow, k, i) "
                "JOIN isolde_variables v ON v.namespace = q.ns AND v.scope = q.sc AND v.owner = q.ow AND v.key = q.k",
                [list(column) for column in zip(*unique)],
            ).fetchall() if unique else []
        found = {unique[r[0] - 1]: _var(r[1:]) for r in rows}
        return [found.get(a) for a in addrs]

    def open(self, ref: Ref) -> ValueReader | None:
        addr = _address(ref)
        with self._tx() as conn:
            row = conn.execute(f"SELECT mime, size, CASE WHEN size <= {_STREAM_THRESHOLD} THEN data END {_AT}", addr).fetchone()
        if row is None:
            return None
        mime, size, data = row
        if data is not None:
            return _Reader(bytes(data), mime)
        conn = self._connect()  # its own snapshot, held until the stream is closed
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            again = conn.execute(f"SELECT mime, size {_AT}", addr).fetchone()
        except self._psycopg.Error as exc:
            conn.close()
            raise StoreError(f"PostgreSQL ({redact(self.url)}): {exc}") from None
        if again is None:  # deleted in between
            conn.close()
            return None
        return _ChunkReader(conn, addr, again[0], int(again[1]))

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        addr = _address(ref)
        step = max(1, chunk_size)
        with self._tx() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute(f"SELECT mime, size, created, updated, version {_AT}", addr).fetchone()
            if row is None:
                return None
            mime, size, created, updated, version = row
            for off in range(0, int(size), step):
                part = conn.execute(_CHUNK_AT, (off + 1, step, *addr)).fetchone()
                assert part is not None
                write(memoryview(bytes(part[0])))
        return Variable(b"", mime, int(size), float(created), float(updated), int(version))

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        owner = _owner(namespace, scope, owner)
        with self._tx() as conn:
            rows = conn.execute(f'SELECT key, {_COLS} {_OF_OWNER} ORDER BY key COLLATE "C"', (namespace, scope, owner)).fetchall()
        return [(r[0], _var(r[1:])) for r in rows]

    def namespaces(self) -> builtins.list[str]:
        with self._tx() as conn:
            rows = conn.execute("SELECT DISTINCT namespace FROM isolde_variables").fetchall()
        return sorted(r[0] for r in rows)

    def workflows(self, namespace: str) -> builtins.list[str]:
        _name(namespace, "namespace")
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT DISTINCT owner FROM isolde_variables WHERE namespace = %s AND scope = 'workflow'", (namespace,)
            ).fetchall()
        return sorted(r[0] for r in rows)

    # ---------------------------------------------------------------- writes

    def write(
        self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
        handover: Callable[[], None] | None = None,
    ) -> None:
        staged: dict[_Address, tuple[bytes | None, str]] = {}
        # The fence seam: a put with ``in_transaction(cursor)`` is not a variable; its
        # statements run first in the batch's transaction, and raising aborts the batch
        # (the daemon's instance records check their claim's epoch so: docs/scale-out.md).
        fences = [p for p in puts if hasattr(p, "in_transaction")]
        for p in puts:
            if fences and hasattr(p, "in_transaction"):
                continue
            addr = _address(p.ref)
            staged.pop(addr, None)  # later puts win, in their own order
            staged[addr] = (None if p.data is None else _data(p.ref, p.data), p.mime)
        if register_instance is not None:
            _name(register_instance[0], "namespace")
            _name(register_instance[1], "instance id")
        if staged or register_instance is not None or fences:
            now = time.time()
            with self._tx() as conn, conn.cursor() as cur:
                for fence in fences:
                    fence.in_transaction(cur)
                deletes = [addr for addr, (data, _) in staged.items() if data is None]
                upserts = [(*addr, mime, data, len(data), now, now) for addr, (data, mime) in staged.items()
                           if data is not None]
                if deletes:
                    cur.executemany(_DELETE, deletes)
                if upserts:
                    cur.executemany(_UPSERT, upserts)
                if register_instance is not None:
                    cur.execute(
                        "INSERT INTO isolde_instances (namespace, instance, host, registration) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (namespace, instance) DO UPDATE SET host = EXCLUDED.host, "
                        "registration = EXCLUDED.registration",
                        (*register_instance, self._here[0], registration()),
                    )
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

    def update(self, ref: Ref, fn: Callable[[Variable | None], tuple[bytes | None, str] | None]) -> Variable | None:
        addr = _address(ref)
        while True:
            with self._tx() as conn:
                cur = self._locked(conn, addr)
                res = fn(cur)
                if res is None:
                    return cur
                data, mime = res
                if data is None:
                    conn.execute(_DELETE, addr)
                    return None
                done = self._put(conn, addr, _data(ref, data), mime, cur is not None)
                if done is not None:
                    return done

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None, mime: str = "application/json"
    ) -> int:
        addr = _address(ref)
        if expected_version is not None and expected_version < 0:
            raise StoreError(f"expected_version must be positive or None, got {expected_version}")
        value = None if data is None else _data(ref, data)
        with self._tx() as conn:
            cur = self._locked(conn, addr)
            if (cur.version if cur is not None else None) != (expected_version or None):
                return 0
            if value is None:
                conn.execute(_DELETE, addr)
                return cur.version if cur is not None else 1
            done = self._put(conn, addr, value, mime, cur is not None)
            return 0 if done is None else done.version  # created meanwhile: no longer missing

    # ---------------------------------------------------------------- deletion

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        owner = _owner(namespace, scope, owner)
        with self._tx() as conn:
            return conn.execute(f"DELETE {_OF_OWNER}", (namespace, scope, owner)).rowcount

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        _name(namespace, "namespace")
        with self._tx() as conn:
            n = conn.execute("DELETE FROM isolde_variables WHERE namespace = %s", (namespace,)).rowcount
            conn.execute("DELETE FROM isolde_instances WHERE namespace = %s", (namespace,))
            return n

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        _owner(namespace, "workflow", old)
        _owner(namespace, "workflow", new)
        with self._tx() as conn:
            if old == new:
                row = conn.execute(f"SELECT count(*) {_OF_OWNER}", (namespace, "workflow", old)).fetchone()
                return int(row[0]) if row else 0
            if conn.execute(f"SELECT 1 {_OF_OWNER} LIMIT 1", (namespace, "workflow", old)).fetchone() is None:
                return 0
            conn.execute(f"DELETE {_OF_OWNER}", (namespace, "workflow", new))
            return conn.execute("UPDATE isolde_variables SET owner = %s WHERE namespace = %s AND scope = 'workflow' "
                                "AND owner = %s", (new, namespace, old)).rowcount

    def end_instance(self, namespace: str, instance_id: str) -> None:
        _owner(namespace, "instance", instance_id)
        with self._tx() as conn:
            conn.execute(f"DELETE {_OF_OWNER}", (namespace, "instance", instance_id))
            conn.execute("DELETE FROM isolde_instances WHERE namespace = %s AND instance = %s", (namespace, instance_id))

    def sweep_orphans(self) -> int:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT namespace, instance, registration FROM isolde_instances WHERE host = %s", (self._here[0],)
            ).fetchall()
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
