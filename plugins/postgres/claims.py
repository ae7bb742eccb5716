"""Workers, leases and claims: how several ``isolde serve`` share one database.

Every daemon on the database is a **worker**: a row of ``isolde_workers`` with a lease
(``lease_until``, the database's clock) that a heartbeat thread renews every third of
the lease.  Every instance record (``isolde_runs``) names the worker that **claimed** it
and the claim's **epoch**.  A worker claims the instances it starts (epoch 1) and the
ones whose worker's lease ran out (the epoch goes up by one); every write of a record
goes through the variable store's transaction as a ``RecordWrite``, whose statement
only succeeds while the row still names this worker and epoch (the fence).  A worker
paused past its lease, or cut off, finds its instances claimed by another and its next
commit refused with ``ClaimLost``: nothing it staged is committed.

The tables are migration steps of the component ``coordination`` (``schema.py``):
a store applies them when it opens, ``isolde db status|upgrade`` shows them.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from isolde.plugin import Put, StoreError

from .connection import pg_errors, redact
from .schema import migration, upgrade

if TYPE_CHECKING:
    import psycopg

__all__ = ["ClaimLost", "Connections", "RecordWrite", "UPSERT_RUN", "Worker", "create_tables"]

migration("coordination", 1, "workers with leases, instance records with claims", """
CREATE TABLE IF NOT EXISTS isolde_workers (
    id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL,
    started timestamptz NOT NULL DEFAULT now(), lease_until timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS isolde_runs (
    namespace text NOT NULL, id text NOT NULL, owner text NOT NULL, epoch bigint NOT NULL,
    status text NOT NULL, created double precision NOT NULL, ended double precision,
    record bytea NOT NULL, PRIMARY KEY (namespace, id));
CREATE INDEX IF NOT EXISTS isolde_runs_live ON isolde_runs (created) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS isolde_runs_done ON isolde_runs (namespace, ended DESC, id DESC)
    WHERE status IN ('complete', 'failed');
""")
migration("coordination", 2, "the workflow of each instance record (singular workflows across workers)", """
ALTER TABLE isolde_runs ADD COLUMN IF NOT EXISTS workflow text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS isolde_runs_live_workflow ON isolde_runs (namespace, workflow)
    WHERE status IN ('pending', 'running');
""")
migration("coordination", 3, "cancelled instances are finished (listed and pruned)", """
DROP INDEX IF EXISTS isolde_runs_done;
CREATE INDEX isolde_runs_done ON isolde_runs (namespace, ended DESC, id DESC)
    WHERE status IN ('complete', 'failed', 'cancelled');
""")
# (``IF NOT EXISTS``: a database whose tables an earlier isolde made without a step
# gains its row in isolde_schema_version and nothing else.)

UPSERT_RUN: Final = (
    "INSERT INTO isolde_runs AS r (namespace, id, owner, epoch, status, created, ended, record, workflow) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, id) DO UPDATE SET status = EXCLUDED.status, "
    "ended = EXCLUDED.ended, record = EXCLUDED.record WHERE r.owner = EXCLUDED.owner AND r.epoch = EXCLUDED.epoch "
    "RETURNING 1"
)
_PRUNE: Final = (
    "DELETE FROM isolde_runs WHERE (namespace, id) IN (SELECT namespace, id FROM isolde_runs "
    "WHERE namespace = %s AND status IN ('complete', 'failed', 'cancelled') ORDER BY ended DESC, id DESC OFFSET %s)"
)


class ClaimLost(StoreError):
    """This worker no longer holds the instance: another claimed it (its lease ran out)."""

    code: str = "isolde.claim.lost"
    instance_lost = True  # the instance loop ends the instance and leaves its variables alone


@dataclass(frozen=True, slots=True)
class RecordWrite(Put):
    """An instance record written in a state's transaction, fenced by its claim: the
    row is written only while it names ``owner`` and ``epoch`` (else ``ClaimLost``
    aborts the whole transaction).  ``prune``: also drop the namespace's finished
    records beyond that many.  Its ``ref`` and ``data`` are the record as the LMDB
    backend keeps it, so it stays a plain ``Put`` to anything else."""

    owner: str = ""
    epoch: int = 1
    status: str = "running"
    created: float = 0.0
    ended: float | None = None
    prune: int | None = None
    workflow: str = ""

    def params(self) -> tuple[Any, ...]:
        """The fenced upsert's parameters."""
        return (self.ref.namespace, self.ref.key[2:], self.owner, self.epoch, self.status, self.created, self.ended,
                self.data, self.workflow)

    def in_pipeline(self, conn: psycopg.Connection[Any]) -> Callable[[], None]:
        """Send the fenced upsert (and the prune) in the batch's pipeline, without
        waiting; the check it returns, called once the results arrived and before
        COMMIT, raises ``ClaimLost`` when the fence refused the row (the store then
        rolls the whole batch back)."""
        ns, iid = self.ref.namespace, self.ref.key[2:]
        cur = conn.execute(UPSERT_RUN, self.params())
        if self.prune is not None:
            conn.execute(_PRUNE, (ns, self.prune))

        def check() -> None:
            if cur.fetchone() is None:
                raise ClaimLost(f"instance {iid} was claimed by another worker (this worker's lease ran out); "
                                "nothing of this step was committed")

        return check


class Connections:
    """A few autocommit connections of the plugin's own (reads, claims, heartbeat)."""

    def __init__(self, url: str, *, durable: bool) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.durable = durable
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        self._closed = False

    def connect(self) -> psycopg.Connection[Any]:
        try:
            conn = self._psycopg.connect(self.url, autocommit=True)
            if not self.durable:
                conn.execute("SET synchronous_commit = off")
            return conn
        except self._psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"[store] url {redact(self.url)}: cannot connect to PostgreSQL: {first}") from None

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._closed:
                raise StoreError("the PostgreSQL daemon services are closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self.connect()
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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def create_tables(db: Connections) -> None:
    """Apply the plugin's missing migration steps (a store does that when it opens)."""
    conn = db.connect()
    try:
        with pg_errors(redact(db.url)):
            upgrade(conn, f"[store] url {redact(db.url)}")
    finally:
        conn.close()


class Worker:
    """This daemon as a worker: its row, its lease and the heartbeat that renews it.

    ``housekeeping`` runs after each beat (old cron ticks and events are dropped)."""

    def __init__(self, db: Connections, *, lease: float, log: Any, housekeeping: Any = None) -> None:
        self.db = db
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.log = log
        self._housekeeping = housekeeping
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, name="isolde-heartbeat", daemon=True)

    def start(self) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO isolde_workers (id, host, pid, lease_until) VALUES (%s, %s, %s, now() + %s * interval '1 second')",
                (self.id, socket.gethostname(), os.getpid(), self.lease))
        self._thread.start()

    def beat(self) -> None:
        with self.db.tx() as conn:
            if not self.renew(conn):  # its row was removed as long dead: announce again (claims are fenced anyway)
                conn.execute("INSERT INTO isolde_workers (id, host, pid, lease_until) "
                             "VALUES (%s, %s, %s, now() + %s * interval '1 second')",
                             (self.id, socket.gethostname(), os.getpid(), self.lease))

    def renew(self, conn: psycopg.Connection[Any]) -> bool:
        """Extend the lease (in the caller's transaction); False when this worker has no row."""
        cur = conn.execute("UPDATE isolde_workers SET lease_until = now() + %s * interval '1 second' WHERE id = %s",
                           (self.lease, self.id))
        return cur.rowcount > 0

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.beat()
                if self._housekeeping is not None:
                    self._housekeeping()
            except Exception as exc:  # the database away for a moment: the next beat tries again
                self.log.warning("worker heartbeat failed", extra={"fields": {"worker": self.id, "error": str(exc)}})

    def close(self) -> None:
        """Stop beating and leave: what this worker still holds is claimable at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            with self.db.tx() as conn:
                conn.execute("DELETE FROM isolde_workers WHERE id = %s", (self.id,))
        except StoreError as exc:
            self.log.warning("could not remove the worker row", extra={"fields": {"worker": self.id, "error": str(exc)}})
