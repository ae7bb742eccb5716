"""``DaemonServices`` on PostgreSQL: what makes ``isolde serve`` workers on one database
behave as one daemon (docs/scale-out.md).

Settings, in ``[plugins.postgres]``: ``lease`` (seconds a worker's claims outlive its
last heartbeat, default 15), ``claim_interval`` (seconds between two looks for orphaned
instances, default 1), ``event_poll`` (seconds between two reads of the shared event
table when no NOTIFY came, default 1), ``event_dedupe`` (seconds an event id is
remembered, default 600).
"""

from __future__ import annotations

import logging
from typing import Callable

from isolde.plugin import Config, ConfigError, CronScheduler, EventBus, Gatherings, InstanceRecords

from .claims import Connections, Worker
from .cron import PostgresCron
from .events import PostgresEventBus, PostgresGatherings
from .records import PostgresInstanceRecords
from .store import PostgresStore

__all__ = ["PostgresDaemonServices", "settings"]

DEFAULTS = {"lease": 15.0, "claim_interval": 1.0, "event_poll": 1.0, "event_dedupe": 600.0}
TICKS_KEPT = 3600.0
"""Seconds a fired cron tick is remembered (a worker whose clock is behind by less
than that never fires a tick again)."""


def settings(config: Config) -> dict[str, float]:
    """The ``[plugins.postgres]`` table, checked."""
    table = config.section("postgres")
    out = dict(DEFAULTS)
    for key, value in table.items():
        if key not in DEFAULTS:
            raise ConfigError(f"[plugins.postgres] {key}: unknown setting (known: {', '.join(sorted(DEFAULTS))})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"[plugins.postgres] {key}: expected a positive number of seconds, got {value!r}")
        out[key] = float(value)
    return out


class PostgresDaemonServices:
    """Records with claims, cron once per tick, a shared event bus, for one worker."""

    def __init__(self, store: PostgresStore, config: Config, log: logging.Logger | None = None) -> None:
        self.cfg = settings(config)
        self.store = store
        self.log = log or logging.getLogger("isolde.daemon")
        self.db = Connections(store.url, durable=store.durable)
        self.worker = Worker(self.db, lease=self.cfg["lease"], log=self.log, housekeeping=self._housekeeping)

    @property
    def claim_interval(self) -> float:
        return self.cfg["claim_interval"]

    def start(self) -> None:
        self.worker.start()
        self.log.info("worker joined", extra={"fields": {"worker": self.worker.id, "lease": self.cfg["lease"]}})

    def records(self, *, keep: int, log: logging.Logger) -> InstanceRecords:
        return PostgresInstanceRecords(self.store, self.db, self.worker, keep=keep, log=log)

    def scheduler(self, fire: Callable[[str, str, float], None], log: logging.Logger) -> CronScheduler:
        return PostgresCron(fire, log, self.db, self.worker)

    def events(self, make_local: Callable[[], EventBus]) -> EventBus:
        return PostgresEventBus(make_local, self.db, self.worker, poll=self.cfg["event_poll"], log=self.log)

    def gatherings(self) -> Gatherings:
        return PostgresGatherings(self.db)

    def _housekeeping(self) -> None:
        with self.db.tx() as conn:
            conn.execute("DELETE FROM isolde_events WHERE created < now() - %s * interval '1 second'",
                         (self.cfg["event_dedupe"],))
            conn.execute("DELETE FROM isolde_cron_ticks WHERE fired < now() - %s * interval '1 second'", (TICKS_KEPT,))
            # workers long gone whose instances were all claimed since
            conn.execute("DELETE FROM isolde_workers w WHERE lease_until < now() - interval '1 hour' AND NOT EXISTS "
                         "(SELECT 1 FROM isolde_runs r WHERE r.owner = w.id AND r.status IN ('pending', 'running'))")

    def close(self) -> None:
        self.worker.close()
        self.db.close()
