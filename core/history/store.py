"""``StoreHistory``: instance history kept in the variable store (layout: ``codec``)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..store import Put, Ref, VariableStore
from ..store.types import make_put, make_ref
from .codec import (
    CANCEL_OWNER, ENDED, RECORD_OWNER, RECORD_PREFIX, cancel_key, chunk_key, decode_record, encode_record, timeline_owner,
)

if TYPE_CHECKING:
    import logging

__all__ = ["StoreHistory"]

_MAX_ID = 200
JSON = "application/json"


def _logger(log: logging.Logger | None) -> logging.Logger:
    import logging

    return log or logging.getLogger("isolde.history")


class StoreHistory:
    """``InstanceHistory`` on any ``VariableStore``."""

    def __init__(self, store: VariableStore, log: logging.Logger | None = None) -> None:
        self.store = store
        self._log = log  # (logging is imported only if something is to be logged: start-up time)
        self._decoded: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}  # ns -> key -> (version, record)
        self._lock = threading.Lock()

    @staticmethod
    def record_ref(namespace: str, instance_id: str) -> Ref:
        return Ref(namespace, "instance", RECORD_OWNER, RECORD_PREFIX + instance_id)

    def writes(self, namespace: str, instance_id: str, *, record: dict[str, Any] | None = None,
               chunk: tuple[int, bytes] | None = None, encoded: bytes | None = None) -> list[Put]:
        puts = []
        if chunk is not None:
            puts.append(make_put(make_ref(namespace, "instance", timeline_owner(instance_id), chunk_key(chunk[0])),
                                 chunk[1], JSON))
        if record is not None:
            puts.append(make_put(make_ref(namespace, "instance", RECORD_OWNER, RECORD_PREFIX + instance_id),
                                 encode_record(record) if encoded is None else encoded, JSON))
        return puts

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        if not instance_id or "\x00" in instance_id or len(instance_id) > _MAX_ID or not namespace:
            return None
        try:
            var = self.store.get(self.record_ref(namespace, instance_id))
        except Exception:  # an id the store refuses as a key is an unknown id
            return None
        return None if var is None else decode_record(var.data, namespace)

    def records(self, namespace: str) -> list[dict[str, Any]]:
        """(The dicts are shared with a cache of decoded records: read them, don't change them.)"""
        out = []
        cache = self._decoded.get(namespace, {})
        fresh: dict[str, tuple[int, dict[str, Any]]] = {}
        for key, var in self.store.list(namespace, "instance", RECORD_OWNER):
            if not key.startswith(RECORD_PREFIX):
                continue
            hit = cache.get(key)
            if hit is not None and hit[0] == var.version and var.version:
                fresh[key] = hit
                out.append(hit[1])
                continue
            try:
                rec = decode_record(var.data, namespace)
                fresh[key] = (var.version, rec)
                out.append(rec)
            except ValueError:
                _logger(self._log).warning("unreadable instance record dropped", extra={"fields": {"ns": namespace, "key": key}})
                self.store.write([Put(Ref(namespace, "instance", RECORD_OWNER, key), None)])
        with self._lock:
            if namespace in self._decoded or len(self._decoded) < 64:
                self._decoded[namespace] = fresh
        return out

    def elsewhere(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def finished(self, namespace: str, known: Mapping[str, tuple[float, str, int | None]]) -> list[tuple[float, str, int | None]]:
        """``(ended, id, chunks)`` of every ended instance of a namespace (retention);
        the records of ids in ``known`` are not read again (their entry is taken)."""
        out = []
        list_keys = getattr(self.store, "list_keys", None)  # keys without the values, where the store has it
        listed = ([(key, None) for key in list_keys(namespace, "instance", RECORD_OWNER)] if list_keys is not None
                  else self.store.list(namespace, "instance", RECORD_OWNER))
        skip = len(RECORD_PREFIX)
        for key, var in listed:
            if not key.startswith(RECORD_PREFIX):
                continue
            hit = known.get(key[skip:])
            if hit is not None:
                out.append(hit)
                continue
            if var is None:
                var = self.store.get(Ref(namespace, "instance", RECORD_OWNER, key))
                if var is None:
                    continue
            data = var.data
            try:
                rec = decode_record(data, namespace)
            except ValueError:
                _logger(self._log).warning("unreadable instance record dropped", extra={"fields": {"ns": namespace, "key": key}})
                self.store.write([Put(Ref(namespace, "instance", RECORD_OWNER, key), None)])
                continue
            iid = rec.get("id")
            if rec.get("status") in ENDED and isinstance(iid, str):
                out.append((float(rec.get("ended") or 0.0), iid, _chunks(rec)))
        return out

    def chunks(self, namespace: str, instance_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        if not instance_id or "\x00" in instance_id or len(instance_id) > _MAX_ID:
            return []
        out = []
        for key, var in self.store.list(namespace, "instance", timeline_owner(instance_id)):
            if key.startswith("c") and key[1:].isdigit() and int(key[1:]) >= after:
                out.append((int(key[1:]), var.data))
        return out

    def remove(self, namespace: str, instance_ids: Sequence[str], chunks: Sequence[int | None] | None = None) -> None:
        if not instance_ids:
            return
        groups = self._groups(namespace, instance_ids, chunks)
        bulk = getattr(self.store, "delete_keys", None)  # one transaction, no Put per key (LmdbStore)
        if bulk is not None:
            bulk(namespace, "instance", groups)
            return
        self.store.write(_deletions(namespace, groups))

    def write_and_remove(self, writes: Sequence[Put], namespace: str, instance_ids: Sequence[str],
                         chunks: Sequence[int | None] | None = None) -> None:
        """``store.write(writes)`` and ``remove`` in one transaction, the writes first (a
        record written and removed at once ends removed): a batch of ended instances'
        history and the retention it makes due cost one commit, not two."""
        groups = self._groups(namespace, instance_ids, chunks)
        bulk = getattr(self.store, "delete_keys", None)
        if bulk is not None:
            bulk(namespace, "instance", groups, writes=writes)
            return
        self.store.write([*writes, *_deletions(namespace, groups)])

    def removal(self, namespace: str, instance_ids: Sequence[str]) -> list[Put]:
        """``remove`` as writes, to go in the transaction of another write (the daemon's
        retention rides on the commit of the outcome that pushes the oldest out)."""
        return _deletions(namespace, self._groups(namespace, instance_ids, None))

    def _groups(self, namespace: str, instance_ids: Sequence[str],
                chunks: Sequence[int | None] | None) -> list[tuple[str, list[str]]]:
        """The keys of the instances' records and timelines, as ``(owner, keys)``; a timeline
        whose chunk count is not given is listed."""
        groups: list[tuple[str, list[str]]] = [(RECORD_OWNER, [RECORD_PREFIX + iid for iid in instance_ids])]
        for i, iid in enumerate(instance_ids):
            count = chunks[i] if chunks is not None else None
            if count == 0:
                continue  # (most instances: a short one's timeline is in its record)
            owner = timeline_owner(iid)
            keys = ([chunk_key(n) for n in range(count)] if count is not None
                    else [key for key, _ in self.store.list(namespace, "instance", owner)])
            if keys:
                groups.append((owner, keys))
        return groups

    def request_cancel(self, namespace: str, instance_id: str, reason: str) -> None:
        self.store.write([Put(Ref(namespace, "instance", CANCEL_OWNER, cancel_key(instance_id)), json.dumps(reason).encode())])

    def cancel_requests(self, namespace: str) -> dict[str, str]:
        out = {}
        for key, var in self.store.list(namespace, "instance", CANCEL_OWNER):
            if key.startswith("c-"):
                try:
                    out[key[2:]] = str(json.loads(var.data))
                except ValueError:
                    out[key[2:]] = "cancelled"
        return out

    def cancel_done(self, namespace: str, instance_id: str) -> list[Put]:
        return [Put(Ref(namespace, "instance", CANCEL_OWNER, cancel_key(instance_id)), None)]


def _deletions(namespace: str, groups: Sequence[tuple[str, Sequence[str]]]) -> list[Put]:
    return [Put(Ref(namespace, "instance", owner, key), None) for owner, keys in groups for key in keys]


def _chunks(record: dict[str, Any]) -> int | None:
    n = record.get("chunks")
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1_000_000 else None
