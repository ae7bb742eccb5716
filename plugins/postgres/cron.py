"""Cron that fires once per tick across workers.

Every worker runs the same in-process schedule (``CronThread``: croniter's ticks are
aligned to the clock, so every worker computes the same ones).  When a tick is due, the
worker inserts ``(namespace, workflow, tick)`` into ``isolde_cron_ticks``; the primary
key lets exactly one insert succeed, and only that worker starts the instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from isolde.plugin import CronThread, StoreError

from .claims import Connections, Worker
from .schema import migration

__all__ = ["PostgresCron"]

migration("cron", 1, "cron ticks fired, one row per tick and workflow", """
CREATE TABLE IF NOT EXISTS isolde_cron_ticks (
    namespace text NOT NULL, workflow text NOT NULL, tick double precision NOT NULL, worker text NOT NULL,
    fired timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (namespace, workflow, tick));
""")


class PostgresCron(CronThread):
    """``CronScheduler`` whose every tick starts one instance, whichever worker wins it."""

    def __init__(self, fire: Callable[[str, str, float], None], log: logging.Logger, db: Connections, worker: Worker) -> None:
        self._start_fn = fire
        self._db = db
        self._worker = worker
        super().__init__(self._once, log)

    def _once(self, namespace: str, workflow: str, tick: float) -> None:
        try:
            with self._db.tx() as conn:
                won = conn.execute(
                    "INSERT INTO isolde_cron_ticks (namespace, workflow, tick, worker) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING 1", (namespace, workflow, tick, self._worker.id)).fetchone()
        except StoreError as exc:
            self._log.warning("cron tick not fired: the database is not reachable", extra={"fields": {
                "ns": namespace, "workflow": workflow, "tick": tick, "error": str(exc)}})
            return
        if won is not None:
            self._start_fn(namespace, workflow, tick)
