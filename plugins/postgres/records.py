"""Instance records in ``isolde_runs``, claimed and fenced (see ``claims``).

Implements ``isolde.plugin.InstanceRecords``.  Every write is a ``RecordWrite`` through
the variable store, so a state's record commits in the same transaction as the state's
variables and only while this worker's claim (owner, epoch) holds.  ``left_running``
is where claims are taken: it claims the pending and running instances of workers
whose lease ran out (never this worker's own), oldest first.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections import deque
from typing import Any, Final, Sequence

from isolde.plugin import Put, Ref, VariableStore

from .claims import UPSERT_RUN, ClaimLost, Connections, RecordWrite, Worker
from .fence import ClaimCheck, ClaimedStore
from .locks import lock_id
from .store import PostgresStore

__all__ = ["PostgresInstanceRecords"]

_OWNER: Final = "~isolde-daemon"  # the ref a RecordWrite carries, as LMDB keeps records
_FINISHED: Final = ("complete", "failed", "cancelled")
_CLAIM: Final = (
    "WITH c AS (SELECT namespace, id FROM isolde_runs r WHERE status IN ('pending', 'running') "
    "AND NOT EXISTS (SELECT 1 FROM isolde_workers w WHERE w.id = r.owner AND w.lease_until > now()) "
    "ORDER BY created LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
    "UPDATE isolde_runs r SET owner = %(me)s, epoch = r.epoch + 1 FROM c "
    "WHERE r.namespace = c.namespace AND r.id = c.id RETURNING r.namespace, r.id, r.epoch, r.record"
)
FORGET_AFTER: Final = 1024
"""Ended instances whose claims are still remembered (an outcome that failed to commit
with the last state is written again on its own, with the same epoch)."""
RUNNING_LISTED: Final = 10_000
"""Other workers' live instances listed at most (the newest)."""
CLAIM_BATCH: Final = 100
"""Orphaned instances claimed at most in one look (the next look takes more)."""


class PostgresInstanceRecords:
    """The daemon's records, shared by every worker on the database."""

    in_history = True  # a table of their own, which the engine's history lists too (history.py)

    def __init__(self, store: VariableStore, db: Connections, worker: Worker, *, keep: int,
                 log: logging.Logger | None = None) -> None:
        self.store = store
        self.db = db
        self.worker = worker
        self.keep = keep
        self.log = log or logging.getLogger("isolde.daemon")
        self._lock = threading.Lock()
        self._epochs: dict[tuple[str, str], int] = {}  # claims this worker holds
        self._since_prune = 0
        self._ended: deque[tuple[str, str]] = deque()

    def _write(self, record: dict[str, Any], *, finished: bool = False) -> RecordWrite:
        ns, iid = record["namespace"], str(record["id"])
        prune = None
        with self._lock:
            epoch = self._epochs.setdefault((ns, iid), 1)
            if finished:  # its claim is forgotten a while later (an outcome may be written twice)
                self._ended.append((ns, iid))
                if len(self._ended) > FORGET_AFTER:
                    self._epochs.pop(self._ended.popleft(), None)
                self._since_prune += 1
                if self._since_prune >= max(1, self.keep // 10):
                    self._since_prune = 0
                    prune = self.keep
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        return RecordWrite(Ref(ns, "instance", _OWNER, "i-" + iid), data, owner=self.worker.id, epoch=epoch,
                           status=str(record.get("status")), created=float(record.get("created") or 0.0),
                           ended=record.get("ended"), prune=prune, workflow=str(record.get("workflow") or ""))

    def create(self, record: dict[str, Any]) -> None:
        self.store.write([self._write(record)])

    update = create

    def create_alone(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """``create`` for a singular workflow: in one transaction, under an advisory lock
        of the workflow (two workers starting it at once take turns), store the record
        unless an instance of the workflow is pending or running on any worker; that
        one's record then, and nothing stored."""
        write = self._write(record)
        ns, wf = write.ref.namespace, write.workflow
        with self.db.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(f"singular\0{ns}\0{wf}".encode()),))
            row = conn.execute(
                "SELECT record FROM isolde_runs WHERE namespace = %s AND workflow = %s AND status IN ('pending', 'running') "
                "AND id <> %s LIMIT 1", (ns, wf, write.ref.key[2:])).fetchone()
            if row is not None:
                with self._lock:
                    self._epochs.pop((ns, write.ref.key[2:]), None)
                return _record(ns, row[0])
            if conn.execute(UPSERT_RUN, write.params()).fetchone() is None:
                raise ClaimLost(f"instance {write.ref.key[2:]} was claimed by another worker")
        return None

    def with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        return (self._write(record),)

    def finish(self, record: dict[str, Any], also: Sequence[Put] = ()) -> None:
        self.store.write([*also, *self.finish_with_step(record)])

    def finish_with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        return (self._write(record, finished=True),)

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        if not instance_id or len(instance_id) > 200 or "\x00" in instance_id or "\x00" in namespace:
            return None
        with self.db.tx() as conn:
            row = conn.execute("SELECT record FROM isolde_runs WHERE namespace = %s AND id = %s",
                               (namespace, instance_id)).fetchone()
        return None if row is None else _record(namespace, row[0])

    def list(self, namespace: str, *, offset: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT record FROM isolde_runs WHERE namespace = %s AND status IN ('complete', 'failed', 'cancelled') "
                "ORDER BY ended DESC, id DESC OFFSET %s LIMIT %s", (namespace, offset, limit)).fetchall()
        return [_record(namespace, r[0]) for r in rows]

    def running(self, namespace: str) -> builtins.list[dict[str, Any]]:
        """The pending and running instances of the other workers, as they last committed."""
        with self.db.tx() as conn:
            rows = conn.execute(
                "SELECT record FROM isolde_runs WHERE namespace = %s AND status IN ('pending', 'running') "
                "AND owner <> %s ORDER BY created DESC LIMIT %s", (namespace, self.worker.id, RUNNING_LISTED)).fetchall()
        return [_record(namespace, r[0]) for r in rows]

    def left_running(self) -> builtins.list[dict[str, Any]]:
        """Claim the instances of workers whose lease ran out (this worker's epoch for
        each is the old one plus one); oldest first."""
        with self.db.tx() as conn:
            rows = conn.execute(_CLAIM, {"me": self.worker.id, "n": CLAIM_BATCH}).fetchall()
        out = []
        with self._lock:
            for ns, iid, epoch, raw in rows:
                self._epochs[(ns, iid)] = int(epoch)
                out.append(_record(ns, raw))
        if out:
            self.log.info("claimed orphaned instances", extra={"fields": {"worker": self.worker.id, "count": len(out)}})
        out.sort(key=lambda r: float(r.get("created") or 0.0))
        return out

    def instance_store(self, store: VariableStore, namespace: str, instance_id: str) -> VariableStore:
        """``store`` with every write checked by this worker's claim of the instance (the
        claim its run begins with): its isolates' writes through the sidecar, its subflows'
        commits, the rest of what carries no record (``fence.py``)."""
        if not isinstance(store, PostgresStore):
            return store
        key = (namespace, instance_id)
        epoch = self._epochs.get(key, 1)  # (one dict read: atomic)
        epochs = self._epochs

        def check() -> ClaimCheck:  # made on the first write that needs it (most instances make none)
            return ClaimCheck(Ref(namespace, "instance", _OWNER, "i-" + instance_id), None, owner=self.worker.id,
                              epoch=epoch, recorded=lambda: key in epochs)

        return ClaimedStore(store, check)

    def claim(self, namespace: str, instance_id: str) -> None:
        """Its instance variables are now this process's (not swept as a dead process's)."""
        self.store.write([], register_instance=(namespace, instance_id))


def _record(namespace: str, raw: bytes) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads(bytes(raw))
    rec["namespace"] = namespace
    return rec
