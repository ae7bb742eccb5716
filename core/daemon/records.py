"""Instance records: where each instance of the daemon stands, and the outcomes kept.

``InstanceRecords`` is the interface a backend implements (the LMDB one is here; the
PostgreSQL plugin's holds the same records with claims, ``docs/scale-out.md``).  A record is a JSON object:
``id``, ``namespace``, ``workflow``, ``status`` (pending | running | complete | failed |
cancelled), ``state``, ``trigger``, ``created``, ``started``, ``ended``, ``input``, ``output``, ``error``,
``resumed``, and while it runs ``data``, ``ivars``, ``log`` and ``lock`` (the state to
resume at while it holds variable locks).  ``core/conformance/records.py`` is the suite
every backend passes.  The records are the instance history's (``isolde.history``: the
same keys, so ``isolde instances`` and the API list the daemon's instances with the others).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any, Final, Iterable, List, Protocol, Sequence, cast

from ..history import ENDED, RECORD_OWNER, StoreHistory, encode_record
from ..store import Put, Ref, VariableStore

__all__ = ["DAEMON_OWNER", "RECORD_OWNER", "InstanceRecords", "LmdbInstanceRecords", "encode_record"]

RECORD_PREFIX: Final = "i-"
DAEMON_OWNER: Final = "~isolde-daemon"
"""Instance-scope owner of what the daemon keeps for itself (the ``workflows`` manifest of
each namespace); never registered as an instance, so the orphan sweep leaves it."""


class InstanceRecords(Protocol):
    """The daemon's instance records, behind one interface so a second backend can hold them."""

    in_history: bool
    """True when the engine's instance history lists these records (LMDB: they are its own
    store keys; a plugin's table: its ``InstanceHistory`` reads it), so a listing that
    already read the history need not read them again."""

    def create(self, record: dict[str, Any]) -> None:
        """Store a new (pending or running) record durably before its id is handed out."""

    def create_alone(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """``create`` for an instance of a ``singular`` workflow: unless another instance of
        that workflow is pending or running in a daemon sharing these records (then
        nothing is stored and that one's record is returned), atomically."""

    def update(self, record: dict[str, Any]) -> None:
        """Replace a running record durably (e.g. before a state that may call out)."""

    def with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        """The writes that store ``record`` in the same transaction as a state's own writes."""

    def finish(self, record: dict[str, Any], also: Sequence[Put] = ()) -> None:
        """Store an instance's outcome (with ``also``: the rest of its timeline); the oldest
        outcomes beyond the kept number go, with their timelines."""

    def finish_with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        """``finish`` as writes, to commit an outcome with the last state's own writes."""

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        """One record (``namespace`` filled in), None when unknown."""

    def list(self, namespace: str, *, offset: int = 0, limit: int | None = None) -> List[dict[str, Any]]:  # noqa: UP006 (a method named list)
        """The finished records of a namespace, newest outcome first, a page of them."""

    def running(self, namespace: str) -> List[dict[str, Any]]:  # noqa: UP006
        """The pending and running records of a namespace that daemons sharing these
        records hold (the other workers on one database; this daemon shows its own live),
        empty when the records are this daemon's alone."""

    def left_running(self) -> List[dict[str, Any]]:  # noqa: UP006
        """Records a previous daemon left pending or running (for recovery), oldest first;
        also makes the finished ones count towards the kept number."""

    def instance_store(self, store: VariableStore, namespace: str, instance_id: str) -> VariableStore:
        """The store through which an instance this daemon runs writes (its states' commits,
        its isolates' writes through the sidecar, its subflows'): ``store`` itself where no
        other daemon can take an instance over; where one can (claims), a view of it whose
        every write commits only while this daemon still holds the instance."""

    def claim(self, namespace: str, instance_id: str) -> None:
        """Take over an instance left by a dead daemon: its instance variables are now this
        process's (not swept as orphans)."""


class LmdbInstanceRecords:
    """Records as instance-scope variables ``i-<id>`` of the reserved owner ``~isolde-history``
    in each namespace of the variable store."""

    in_history = True

    def __init__(self, store: VariableStore, *, keep: int, log: logging.Logger | None = None) -> None:
        self.store = store
        self.keep = keep
        self.log = log or logging.getLogger("isolde.daemon")
        self._lock = threading.Lock()
        self._finished: deque[tuple[str, str]] = deque()
        self._history = StoreHistory(store, self.log)

    @staticmethod
    def _ref(namespace: str, instance_id: str) -> Ref:
        return Ref(namespace, "instance", RECORD_OWNER, RECORD_PREFIX + instance_id)

    def _put(self, record: dict[str, Any]) -> Put:
        return Put(self._ref(record["namespace"], record["id"]), encode_record(record))

    def create(self, record: dict[str, Any]) -> None:
        self.store.write([self._put(record)])

    update = create

    def create_alone(self, record: dict[str, Any]) -> dict[str, Any] | None:
        self.create(record)  # one daemon per data directory: the runner's own check suffices
        return None

    def with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        return (self._put(record),)

    def finish(self, record: dict[str, Any], also: Sequence[Put] = ()) -> None:
        self.store.write([*also, *self.finish_with_step(record)])

    def finish_with_step(self, record: dict[str, Any]) -> Sequence[Put]:
        doomed: list[tuple[str, str]] = []
        with self._lock:
            self._finished.append((record["namespace"], record["id"]))
            if len(self._finished) > self.keep + self.keep // 10:  # a tenth at a time, as PostgreSQL's
                while len(self._finished) > self.keep:
                    doomed.append(self._finished.popleft())
        # beyond the kept number: gone with their timelines, in the same commit (a second,
        # durable one per instance would halve a busy daemon's rate), and a tenth of the kept
        # number at once (one at a time, each commit would rewrite the B-tree's far end too)
        gone = [put for ns, iid in doomed for put in self._history.removal(ns, (iid,))]
        return (*gone, self._put(record))

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        if "\x00" in instance_id or not instance_id or len(instance_id) > 200:
            return None
        try:
            var = self.store.get(self._ref(namespace, instance_id))
        except Exception:  # an id the store refuses as a key is an unknown id
            return None
        if var is None:
            return None
        rec: dict[str, Any] = json.loads(var.data)
        rec["namespace"] = namespace
        return rec

    def _all(self, namespace: str) -> List[dict[str, Any]]:  # noqa: UP006
        out = []
        for key, var in self.store.list(namespace, "instance", RECORD_OWNER):
            if not key.startswith(RECORD_PREFIX):
                continue
            try:
                rec = json.loads(var.data)
            except ValueError:
                self.log.warning("unreadable instance record dropped", extra={"fields": {"ns": namespace, "key": key}})
                self.store.write([Put(Ref(namespace, "instance", RECORD_OWNER, key), None)])
                continue
            rec["namespace"] = namespace
            out.append(rec)
        return out

    def list(self, namespace: str, *, offset: int = 0, limit: int | None = None) -> List[dict[str, Any]]:  # noqa: UP006 (a method named list)
        done = [r for r in self._all(namespace) if r.get("status") in ENDED]
        done.sort(key=lambda r: (r.get("ended") or 0, r.get("id") or ""), reverse=True)
        return done[offset:] if limit is None else done[offset : offset + limit]

    def running(self, namespace: str) -> List[dict[str, Any]]:  # noqa: UP006
        return []  # one daemon per data directory: what runs is this daemon's own

    def left_running(self) -> List[dict[str, Any]]:  # noqa: UP006
        running: List[dict[str, Any]] = []  # noqa: UP006
        finished: List[tuple[float, str, str]] = []  # noqa: UP006
        for ns in cast("Iterable[str]", self.store.namespaces()):
            for rec in self._all(ns):
                if rec.get("status") in ("pending", "running"):
                    running.append(rec)
                else:
                    finished.append((float(rec.get("ended") or 0.0), ns, str(rec.get("id"))))
        finished.sort()
        with self._lock:
            known = set(self._finished)
            self._finished.extendleft(reversed([(ns, iid) for _, ns, iid in finished if (ns, iid) not in known]))
        running.sort(key=lambda r: float(r.get("created") or 0.0))
        return running

    def instance_store(self, store: VariableStore, namespace: str, instance_id: str) -> VariableStore:
        return store  # one daemon per data directory: nothing takes its instances over

    def claim(self, namespace: str, instance_id: str) -> None:
        self.store.write([], register_instance=(namespace, instance_id))
