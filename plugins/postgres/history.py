"""The instance history on PostgreSQL: ``StoreHistory`` that also reads ``isolde_runs``.

``isolde serve`` workers keep their instances' records in the shared table of
``records.py`` (claimed and fenced), not as history entries of the variable store; their
timelines and cancel requests are history entries like any other instance's.  So the
history of an engine on the database (``isolde instances``, every worker's API) answers
``get`` from the table when the store holds no record of that id, and lists the table's
records of a namespace beside its own (``elsewhere``): every worker's pending, running
and finished instances, as they last committed.  A cancel request it stores for one of
them is picked up by the worker that holds the instance (its history polls the requests
of the instances it runs), whichever process stored it.
"""

from __future__ import annotations

import builtins
import json
from typing import Any, Final

from isolde.plugin import StoreHistory

from .store import PostgresStore

__all__ = ["PostgresHistory"]

LISTED: Final = 10_000
"""Records of the table listed at most per namespace (the newest)."""


class PostgresHistory(StoreHistory):
    """The history in the store, with the daemon workers' records of ``isolde_runs``."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(store)
        self.pg = store

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        got = super().get(namespace, instance_id)
        if got is not None or not instance_id or len(instance_id) > 200 or "\x00" in instance_id + namespace:
            return got
        rows = self.pg.rows("SELECT record FROM isolde_runs WHERE namespace = %s AND id = %s", (namespace, instance_id))
        return _record(namespace, rows[0][0]) if rows else None

    def elsewhere(self, namespace: str) -> builtins.list[dict[str, Any]]:
        if not namespace or "\x00" in namespace:
            return []
        rows = self.pg.rows("SELECT record FROM isolde_runs WHERE namespace = %s ORDER BY created DESC LIMIT %s",
                            (namespace, LISTED))
        return [_record(namespace, r[0]) for r in rows]


def _record(namespace: str, raw: bytes) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads(bytes(raw))
    rec["namespace"] = namespace
    return rec
