"""An event bus shared by the workers: ``isolde_events`` + LISTEN/NOTIFY.

``publish`` inserts the event into ``isolde_events``, unique on (namespace, source,
id): an event already there (the same id sent to another worker, or sent again) is not
delivered a second time.  The worker that inserted it delivers it to its
**subscriptions** (event-started workflows: each starts once) and to its waiting
instances; every other worker's follower thread reads it (woken by NOTIFY, else every
``poll`` seconds) and delivers it to *its* waiting instances only.  Each worker keeps
its own in-process buses for that: one for waits and sleeps, one for subscriptions.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Mapping, Sequence

from isolde.plugin import EventBus, EventFilter, IsoldeError, Received, StoreError, normalize_event

from .claims import Connections, Worker
from .schema import migration

__all__ = ["EventNotStored", "PostgresEventBus", "PostgresGatherings"]

migration("events", 1, "events received, unique per namespace, source and id", """
CREATE TABLE IF NOT EXISTS isolde_events (
    seq bigserial PRIMARY KEY, namespace text NOT NULL, source text NOT NULL, id text NOT NULL,
    origin text NOT NULL, body bytea NOT NULL, created timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (namespace, source, id));
""")
migration("events", 2, "eventsAnd groups gathered across workers", """
CREATE TABLE IF NOT EXISTS isolde_gatherings (
    namespace text NOT NULL, workflow text NOT NULL, start text NOT NULL, groups bytea NOT NULL,
    PRIMARY KEY (namespace, workflow, start));
""")

_CHANNEL = "isolde_events"
SETTLE = 5.0
"""Seconds after which an event row is taken as settled: a sequence number still missing
by then belonged to a transaction that rolled back."""


class EventNotStored(IsoldeError):
    """The event could not be written to the shared table (the database is away): it was
    not delivered anywhere; the sender may try again (the API answers 503)."""

    status = 503
    code = "isolde.event.unavailable"


class PostgresGatherings:
    """``eventsAnd`` groups in ``isolde_gatherings``, one row per start (namespace,
    workflow, its definition): each event is received by one worker only, and every
    worker adds the events it receives to the shared groups, under the row's lock, so a
    set whose events arrive at different workers combines, and the worker whose event
    completes a group is the one that starts the instance (once)."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    def change(self, namespace: str, workflow: str, key: str,
               fn: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        with self._db.tx() as conn:
            row = None
            while row is None:  # (a row deleted by the worker it waited for: made again)
                conn.execute("INSERT INTO isolde_gatherings (namespace, workflow, start, groups) "
                             "VALUES (%s, %s, %s, '[]') ON CONFLICT DO NOTHING", (namespace, workflow, key))
                row = conn.execute("SELECT groups FROM isolde_gatherings WHERE namespace = %s AND workflow = %s "
                                   "AND start = %s FOR UPDATE", (namespace, workflow, key)).fetchone()
            groups = fn(json.loads(bytes(row[0])))
            if groups:
                conn.execute("UPDATE isolde_gatherings SET groups = %s WHERE namespace = %s AND workflow = %s "
                             "AND start = %s", (json.dumps(groups, separators=(",", ":")).encode(), namespace, workflow, key))
            else:
                conn.execute("DELETE FROM isolde_gatherings WHERE namespace = %s AND workflow = %s AND start = %s",
                             (namespace, workflow, key))


class PostgresEventBus:
    """``EventBus`` across workers (see the module docstring)."""

    def __init__(self, make_local: Callable[[], EventBus], db: Connections, worker: Worker, *,
                 poll: float, log: logging.Logger) -> None:
        self._waits = make_local()  # waits, sleeps and kept events of this worker's instances
        self._subs = make_local()  # event starts, fed only with events received by this worker
        self._db = db
        self._me = worker.id
        self._poll = poll
        self._log = log
        self._max_bytes: int | None = getattr(self._waits, "max_event_bytes", None)
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        self._stop = threading.Event()
        with db.tx() as conn:
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM isolde_events").fetchone()
        self._mark = int(row[0]) if row else 0  # every event up to here is handled
        self._seen: set[int] = set()
        self._listen = db.connect()
        self._listen.execute(f"LISTEN {_CHANNEL}")
        self._thread = threading.Thread(target=self._follow, name="isolde-events", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._waits.closed

    # -- publishing ------------------------------------------------------------------
    def publish(self, namespace: str, event: Mapping[str, Any], *, retain_for: float | None = None) -> dict[str, Any]:
        if self.closed:
            raise IsoldeError("the event bus is closed (its Engine was closed)")
        ev = normalize_event(dict(event), max_bytes=self._max_bytes)
        body = json.dumps(ev, separators=(",", ":")).encode()
        try:
            with self._db.tx() as conn:
                row = conn.execute(
                    "INSERT INTO isolde_events (namespace, source, id, origin, body) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING RETURNING seq", (namespace, ev["source"], ev["id"], self._me, body)).fetchone()
                if row is not None:
                    conn.execute(f"NOTIFY {_CHANNEL}")
        except StoreError as exc:
            raise EventNotStored(f"event not published (try again): {exc}") from None
        if row is None:
            self._log.info("event already received", extra={"fields": {"ns": namespace, "id": ev["id"], "source": ev["source"]}})
            return ev
        with self._lock:
            self._seen.add(int(row[0]))
        self._subs.publish(namespace, ev, retain_for=0)
        return self._waits.publish(namespace, ev, retain_for=retain_for)

    def publish_later(self, namespace: str, event: Mapping[str, Any], delay: float) -> dict[str, Any]:
        ev = normalize_event(dict(event), max_bytes=self._max_bytes)

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            if not self.closed:
                try:
                    self.publish(namespace, ev)
                except IsoldeError as exc:
                    self._log.warning("delayed event not published", extra={"fields": {"ns": namespace, "error": str(exc)}})

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()
        return ev

    # -- the other workers' events ---------------------------------------------------
    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in self._listen.notifies(timeout=self._poll, stop_after=1):
                    pass
                if self._stop.is_set():
                    return
                self._catch_up()
            except Exception as exc:  # the database away: reconnect and read what was missed
                if self._stop.is_set():
                    return
                self._log.warning("event follower: reconnecting", extra={"fields": {"error": str(exc)}})
                self._stop.wait(self._poll)
                try:
                    self._listen.close()
                    self._listen = self._db.connect()
                    self._listen.execute(f"LISTEN {_CHANNEL}")
                except Exception:  # noqa: S110 - tried again on the next round
                    pass

    def _catch_up(self) -> None:
        with self._db.tx() as conn:
            rows = conn.execute(
                "SELECT seq, namespace, origin, body, created < clock_timestamp() - %s * interval '1 second' "
                "FROM isolde_events WHERE seq > %s ORDER BY seq", (SETTLE, self._mark)).fetchall()
        for seq, ns, origin, body, settled in rows:
            with self._lock:
                fresh = seq not in self._seen
                self._seen.add(seq)
            if fresh and origin != self._me and not self.closed:
                self._waits.publish(ns, json.loads(bytes(body)))
            if settled:
                self._mark = max(self._mark, int(seq))
        with self._lock:
            self._seen = {s for s in self._seen if s > self._mark}

    # -- the rest is this worker's ---------------------------------------------------
    def pending(self, namespace: str) -> list[dict[str, Any]]:
        return self._waits.pending(namespace)

    def wait(self, namespace: str, filters: Sequence[EventFilter], timeout: float | None, *, all: bool = False,
             owner: str | None = None) -> Received | None:
        return self._waits.wait(namespace, filters, timeout, all=all, owner=owner)

    def sleep(self, seconds: float, *, owner: str | None = None, namespace: str | None = None) -> None:
        self._waits.sleep(seconds, owner=owner, namespace=namespace)

    def interrupt(self, owner: str, reason: str = "the instance was cancelled") -> int:
        return self._waits.interrupt(owner, reason)

    def waiting(self, namespace: str) -> list[tuple[str | None, list[EventFilter], bool]]:
        return self._waits.waiting(namespace)

    def subscribe(self, namespace: str, filters: Sequence[EventFilter], callback: Callable[[Received], None], *,
                  all: bool = False) -> Callable[[], None]:
        return self._subs.subscribe(namespace, filters, callback, all=all)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for t in timers:
            t.cancel()
        self._waits.close()
        self._subs.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._listen.close()

    def cancel_all(self) -> None:
        self.close()
