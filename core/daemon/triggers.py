"""Starts that are not API calls: cron (``start: scheduled``) and CloudEvents (``event``,
``eventsXor``, ``eventsAnd``).

``CronScheduler`` is the interface a backend implements (the in-process thread is here; the
PostgreSQL plugin's fires each tick once across workers).  ``Triggers``
follows each served workflow's ``start`` and starts instances through a ``start``
function it is given.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol, cast

from .catalog import Catalog, WorkflowEntry
from .settings import DaemonError

if TYPE_CHECKING:
    from ..events import EventBus

__all__ = ["CronScheduler", "CronThread", "FireFn", "Gatherings", "StartFn", "Triggers", "event_filters"]

FireFn = Callable[[str, str, float], None]
"""``fire(namespace, workflow, tick)``: a cron tick is due (``tick``: its epoch seconds)."""
StartFn = Callable[..., Any]
"""``start(ns, wid, input, trigger=...)`` -> an object with ``id``; raises DaemonError."""


Groups = list[dict[str, Any]]
"""The ``eventsAnd`` groups of one start: ``{"created": epoch seconds, "events": {index
(a string): event}, "correlation": {attribute: value}}``, oldest first."""


class Gatherings(Protocol):
    """Where ``eventsAnd`` starts gather their events when daemons share them (workers
    on one database: an event received by one worker and one by another combine)."""

    def change(self, namespace: str, workflow: str, key: str, fn: Callable[[Groups], Groups]) -> None:
        """Replace the groups of one start (``key``: its definition) by ``fn(groups)``,
        atomically among the daemons sharing them (``fn`` may run again on a retry)."""


class CronScheduler(Protocol):
    """Fires ``fire(namespace, workflow, tick)`` on each tick of a workflow's cron expression."""

    def start(self) -> None: ...

    def set(self, namespace: str, workflow: str, cron: str | None) -> None:
        """Schedule a workflow (None: unschedule); an unchanged expression keeps its next tick."""

    def next_fire(self, namespace: str, workflow: str) -> float | None:
        """When it fires next (epoch seconds), None when not scheduled."""

    def close(self) -> None: ...


class CronThread:
    """Fires ``start: scheduled`` workflows by cron in one thread (UTC; a sixth field is seconds).

    ``fire(namespace, workflow, tick)`` gets the tick's epoch seconds: every process
    computes the same ticks for one expression (croniter's, aligned to the clock), so a
    shared scheduler can tell a tick another worker already fired."""

    def __init__(self, fire: FireFn, logger: logging.Logger) -> None:
        self._fire = fire
        self._log = logger
        self._cond = threading.Condition()
        self._jobs: dict[tuple[str, str], tuple[str, Any, float]] = {}  # (cron, croniter, next fire)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="isolde-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def set(self, namespace: str, workflow: str, cron: str | None) -> None:
        key = (namespace, workflow)
        with self._cond:
            old = self._jobs.get(key)
            if cron is None:
                if self._jobs.pop(key, None) is not None:
                    self._cond.notify_all()
                return
            if old is not None and old[0] == cron:
                return  # unchanged: keep the fire time already due
            from croniter import croniter

            it = croniter(cron, _dt.datetime.now(_dt.timezone.utc))
            self._jobs[key] = (cron, it, it.get_next(float))
            self._cond.notify_all()

    def next_fire(self, namespace: str, workflow: str) -> float | None:
        with self._cond:
            job = self._jobs.get((namespace, workflow))
            return None if job is None else job[2]

    def _loop(self) -> None:
        while True:
            due: list[tuple[str, str, float]] = []
            with self._cond:
                if self._stop:
                    return
                now = time.time()
                wait = 3600.0
                for key, (cron, it, at) in list(self._jobs.items()):
                    if at <= now:
                        due.append((*key, at))
                        nxt = it.get_next(float)
                        while nxt <= now:  # the daemon was busy or asleep: don't fire a backlog
                            nxt = it.get_next(float)
                        self._jobs[key] = (cron, it, nxt)
                        at = nxt
                    wait = min(wait, at - now)
                if not due:
                    self._cond.wait(max(0.0, wait))
                    continue
            for ns, wid, tick in due:
                try:
                    self._fire(ns, wid, tick)
                except Exception as exc:  # never let one workflow stop the schedule
                    self._log.error("scheduled start failed", extra={"fields": {"ns": ns, "workflow": wid, "error": str(exc)}})


def event_filters(start: dict[str, Any]) -> list[dict[str, Any]]:
    """The CloudEvent filters of an ``event`` / ``eventsXor`` / ``eventsAnd`` start."""
    kind = start.get("type")
    if kind == "event":
        one = start.get("event")
        return [one] if isinstance(one, dict) else []
    if kind in ("eventsXor", "eventsAnd"):
        return [f for f in start.get("events") or [] if isinstance(f, dict)]
    return []


class Triggers:
    """Keeps cron schedules and event subscriptions in step with the served workflows."""

    def __init__(self, catalog: Catalog, bus: Callable[[], EventBus], start: StartFn, log: logging.Logger,
                 scheduler: CronScheduler | Callable[[FireFn, logging.Logger], CronScheduler] | None = None,
                 gatherings: Gatherings | None = None) -> None:
        """``scheduler``: a ready one, or a factory given the fire function (a shared one);
        ``gatherings``: shared ``eventsAnd`` groups (None: this daemon's own, in memory)."""
        self.catalog = catalog
        self._bus = bus  # the engine's event bus, made on first use
        self._start = start
        self.log = log
        self.scheduler: CronScheduler
        if scheduler is None:
            self.scheduler = CronThread(self._fire_scheduled, log)
        elif hasattr(scheduler, "next_fire"):
            self.scheduler = cast("CronScheduler", scheduler)
        else:
            self.scheduler = scheduler(self._fire_scheduled, log)
        self._lock = threading.Lock()
        self._gatherings: dict[tuple[str, str], Groups] = {}
        self._shared = gatherings
        self._tls = threading.local()  # instance ids started by the event being published

    # -- following the served workflows ----------------------------------------
    def apply(self, entry: WorkflowEntry) -> None:
        """Follow the (new) version's ``start``: cron schedule and event subscription."""
        wf = entry.workflow
        start = (wf.fields.get("start") or {}) if wf is not None else {}
        kind = start.get("type", "default")
        self.scheduler.set(entry.namespace, entry.id, start.get("cron") if kind == "scheduled" and start.get("cron") else None)
        self._unsubscribe(entry)
        filters = event_filters(start)
        if filters:
            entry.subscription = self._subscribe(entry.namespace, entry.id, filters)

    def remove(self, entry: WorkflowEntry) -> None:
        """The entry no longer serves under its name: no more cron or event starts."""
        self._unsubscribe(entry)
        self.scheduler.set(entry.namespace, entry.id, None)

    def _unsubscribe(self, entry: WorkflowEntry) -> None:
        if entry.subscription is not None:
            entry.subscription()
            entry.subscription = None
        with self._lock:
            self._gatherings.pop((entry.namespace, entry.id), None)

    def close(self) -> None:
        self.scheduler.close()
        with self.catalog.lock:
            entries = list(self.catalog.workflows.values())
        for entry in entries:
            if entry.subscription is not None:
                entry.subscription()
                entry.subscription = None

    # -- cron -------------------------------------------------------------------
    def _fire_scheduled(self, ns: str, wid: str, tick: float | None = None) -> None:
        try:
            info = self._start(ns, wid, None, trigger="cron")
        except DaemonError as exc:
            self.log.warning("scheduled start skipped", extra={"fields": {"ns": ns, "workflow": wid, "code": exc.code, "reason": exc.message}})
            return
        self.log.info("scheduled start", extra={"fields": {"ns": ns, "workflow": wid, "id": info.id}})

    # -- events -----------------------------------------------------------------
    def _subscribe(self, ns: str, wid: str, filters: list[dict[str, Any]]) -> Callable[[], None]:
        """Start ``wid`` from matching events of the bus; returns the unsubscribe function.

        ``eventsAnd`` is gathered here rather than by the bus, because the daemon also
        applies the start's ``correlate`` keys and ``lifespan``."""
        from ..events import EventFilter

        flts = [EventFilter(str(f.get("type", "")), dict(f.get("context") or {})) for f in filters]

        def deliver(received: list[tuple[int, dict[str, Any]]]) -> None:
            for index, event in received:
                self._on_event(ns, wid, index, event)

        return self._bus().subscribe(ns, flts, deliver)

    def publish(self, ns: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Publish a CloudEvent; returns it (id filled in) and the ids of the instances it
        started.  Running instances waiting for it get it too."""
        from ..events import EventError

        started: list[str] = []
        self._tls.started = started  # subscribers run on this thread and report here
        try:
            ev = self._bus().publish(ns, event)
        except EventError as exc:
            raise DaemonError(400, "isolde.event.invalid", str(exc)) from None
        finally:
            self._tls.started = None
        return ev, started

    def _on_event(self, ns: str, wid: str, index: int, event: dict[str, Any]) -> str | None:
        entry = self.catalog.get(ns, wid)
        wf = entry.workflow if entry is not None else None
        if wf is None:
            return None
        start = wf.fields.get("start") or {}
        if start.get("type") == "eventsAnd":
            data = self._gather(ns, wid, start, len(event_filters(start)), index, event)
            if data is None:
                return None
        else:
            data = {str(event.get("type")): event}
        try:
            info = self._start(ns, wid, data, trigger="event")
        except DaemonError as exc:
            self.log.warning("event start skipped", extra={"fields": {"ns": ns, "workflow": wid, "code": exc.code, "reason": exc.message}})
            return None
        self.log.info("event start", extra={"fields": {"ns": ns, "workflow": wid, "id": info.id, "event": event.get("type")}})
        started = getattr(self._tls, "started", None)
        if started is not None:
            started.append(info.id)
        return str(info.id)

    def _gather(self, ns: str, wid: str, start: dict[str, Any], count: int, index: int,
                event: dict[str, Any]) -> dict[str, Any] | None:
        """``eventsAnd``: keep one event per filter (events agreeing on the ``correlate``
        attributes go together; a group older than ``lifespan`` is dropped); once every
        filter has one, they start the instance, each under its type (a type listed twice:
        the later one under ``<type>.<index>``, as the waiting states place them)."""
        lifespan = start.get("lifespan")
        correlate = [str(k) for k in start.get("correlate") or []]
        corr = {k: event.get(k) for k in correlate}
        done: list[dict[str, Any]] = []

        def change(groups: Groups) -> Groups:
            done.clear()
            now = time.time()
            if lifespan:
                groups = [g for g in groups if now - float(g["created"]) <= float(lifespan)]
            for g in groups:
                if g["correlation"] == corr and str(index) not in g["events"]:
                    g["events"][str(index)] = event
                    break
            else:
                g = {"created": now, "events": {str(index): event}, "correlation": corr}
                groups.append(g)
            if len(g["events"]) < count:
                return groups
            done.append(g)
            return [other for other in groups if other is not g]

        if self._shared is not None:
            key = json.dumps([event_filters(start), correlate, lifespan], sort_keys=True, separators=(",", ":"))
            self._shared.change(ns, wid, key, change)
        else:
            with self._lock:
                self._gatherings[(ns, wid)] = change(self._gatherings.get((ns, wid), []))
        if not done:
            return None
        out: dict[str, Any] = {}
        for i, e in sorted((int(i), e) for i, e in done[0]["events"].items()):
            key = str(e.get("type"))
            out[f"{key}.{i}" if key in out else key] = e  # a repeated type: .<type>.<index>, as the states do
        return out
