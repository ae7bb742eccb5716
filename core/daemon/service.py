"""The ``Daemon``: builds the watcher, folder sync, run queue, records, recovery and
triggers around one engine, starts them in order and stops them in reverse; the API
asks it (and only it) for what it serves."""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import IsoldeError
from .backend import DaemonServices
from ..history import ENDED, summary
from ..history import NotFound as HistoryNotFound
from .catalog import Catalog
from .dropvars import DropVariables
from .layout import workflow_id
from .records import InstanceRecords, LmdbInstanceRecords
from .recovery import DataDirLock, DeferredSweep, Recovery
from .runs import Runs
from .settings import DaemonError, DaemonSettings
from .sync import FolderSync, Manifests
from .triggers import CronScheduler, Triggers
from .watch import FileReader, Pending, Watcher

if TYPE_CHECKING:
    from ..engine import Engine
    from ..graph import Graph
    from ..store import VariableStore

__all__ = ["Daemon"]

_PRIVATE = ("v", "data", "ivars", "log", "lock", "input_truncated", "tl", "chunks")
"""Record fields the daemon keeps for itself (resuming), not shown."""

STOP_DRAIN = 1.0
"""Seconds the instances stopped at shutdown get to unwind before the engine closes."""


class Daemon:
    """The running server: watcher + catalog + triggers + instance runner (+ the API).

    ``records`` and ``scheduler`` may be given (another backend); by default instance
    records live in the engine's variable store and cron runs in a thread."""

    def __init__(self, root: str | os.PathLike[str], engine: Engine, settings: DaemonSettings, *,
                 logger: logging.Logger | None = None, records: InstanceRecords | None = None,
                 scheduler: CronScheduler | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise IsoldeError(f"{root}: not a directory (isolde serve needs DIR/<namespace>/*.yaml)")
        self.engine = engine
        self.settings = settings
        self.log = logger or logging.getLogger("isolde.daemon")
        self.max_variable_bytes = int(engine.config.limit("max_variable_bytes"))
        self.max_input_bytes = int(engine.config.limit("max_input_bytes"))
        self.max_event_bytes = int(engine.config.limit("max_event_bytes"))
        self._records = records
        self._scheduler = scheduler
        self._dir_lock = DataDirLock(Path(engine.data_dir))
        self._sweep = DeferredSweep()
        others = [h for h in engine.registry.pm.hook.isolde_store.get_hookimpls() if h.plugin_name != "postgres"]
        if not others and not engine.config.data.get("store", {}).get("url"):
            engine.registry.pm.register(self._sweep, name="isolde-daemon-store")
        self.catalog = Catalog(self.root)
        self.pending = Pending()
        self.watcher = Watcher(self.root, self.pending, settings)
        self.api: Any = None
        self._stop_event = threading.Event()
        self._status_thread: threading.Thread | None = None
        self._claim_thread: threading.Thread | None = None
        self.backend: DaemonServices | None = None
        self._started = False
        self._stopping = False
        self._lock = threading.Lock()
        self._unregister_metrics: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------ wiring
    def _build(self) -> None:
        engine, log, settings = self.engine, self.log, self.settings
        store: VariableStore = engine.store  # opened here: without the orphan sweep (see recovery)
        self.store = store
        # A plugin whose store is shared by several daemons makes this one a worker of many.
        backend: DaemonServices | None = engine.registry.pm.hook.isolde_daemon_services(config=engine.config, store=store)
        self.backend = backend
        scheduler: Any = self._scheduler
        gatherings = None
        if backend is not None:
            backend.start()
            if self._records is None:
                self._records = backend.records(keep=settings.keep_instances, log=log)
            if scheduler is None:
                scheduler = backend.scheduler
            gatherings = backend.gatherings()
            engine.wrap_events(backend.events)
        self.records: InstanceRecords = self._records or LmdbInstanceRecords(store, keep=settings.keep_instances, log=log)
        self.runs = Runs(engine, self.records, self.catalog, settings, log,
                         end_instance=store.end_instance, interrupt=lambda iid, why: None if engine.events.interrupt(iid, why) else None)
        self.triggers = Triggers(self.catalog, lambda: engine.events, self.runs.start, log, scheduler, gatherings)
        self.manifests = Manifests(store)
        reader = FileReader(self.pending, settings.settle, log)
        drop = DropVariables(store, self.catalog, self.pending, reader, settings, log,
                             max_variable_bytes=self.max_variable_bytes, pack=self._packer())
        self.sync = FolderSync(
            self.root, self.catalog, self.pending, reader, settings, log,
            store=store, manifests=self.manifests, triggers=self.triggers, runs=self.runs, drop=drop,
            build=engine.build, delete_workflow=engine.delete_workflow, delete_namespace=engine.delete_namespace,
            max_yaml_bytes=int(engine.config.limit("max_yaml_bytes")),
        )
        self.recovery = Recovery(self.records, self.runs, self.catalog, log,
                                 has_instance_vars=lambda ns, iid: bool(store.list(ns, "instance", iid)),
                                 end_instance=store.end_instance)
        from .metrics import DaemonCollector, register

        self._unregister_metrics = register(engine.metrics.registry, DaemonCollector(
            self.catalog, self.runs, engine.services.functions.peek, lambda: not self._stopping))

    def _packer(self) -> Callable[[Path, io.BytesIO, str], None]:
        from ..files import ArchiveLimits, pack_dir

        limits = ArchiveLimits.from_config(self.engine.config)

        def pack(path: Path, buf: io.BytesIO, label: str) -> None:
            pack_dir(path, buf, limits=limits, label=label)

        return pack

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, api: bool = True) -> None:
        """Recover, scan, then watch, schedule and serve (in that order, so nothing is missed:
        events arriving during the scan are handled after it, idempotently)."""
        self._dir_lock.acquire()
        self._build()
        self._started = True
        self.recovery.take_over()
        self._sweep.sweep()
        managed = self.manifests.load()  # as the last run left them
        self.watcher.start()
        self.sync.scan_all()
        self.sync.reconcile(managed)
        self.recovery.recover()
        self.sync.start()
        self.triggers.scheduler.start()
        if api:
            from ..api import ApiServer

            self.api = ApiServer(self, self.settings.api, token=self.settings.token)
            self.api.start()
        if self.backend is not None:
            self._claim_thread = threading.Thread(target=self._claim_loop, args=(self.backend.claim_interval,),
                                                  name="isolde-claims", daemon=True)
            self._claim_thread.start()
        if self.settings.status_interval > 0:
            self._status_thread = threading.Thread(target=self._status_loop, name="isolde-status", daemon=True)
            self._status_thread.start()
        n_ns, n_wf, _ = self.catalog.counts()
        self.log.info("daemon ready", extra={"fields": {
            "dir": str(self.root), "namespaces": n_ns, "workflows": n_wf,
            "api": self.api.url if self.api is not None else None,
            "ui": self.api.url + "/ui/" if self.api is not None else None,
            "data_dir": str(self.engine.data_dir), "pid": os.getpid(),
        }})

    def wait(self) -> None:
        """Block until ``request_stop`` (SIGTERM / SIGINT)."""
        self._stop_event.wait()

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self) -> None:
        """Graceful stop: no new starts, running instances get ``stop_grace`` seconds, the rest
        stop at their next state and are resumed (or marked interrupted) by the next start."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._stop_event.set()
        if self._started:
            self.log.info("stopping", extra={"fields": {"running": self.runs.running, "queued": self.runs.queued()}})
        if self.api is not None:
            self.api.close()
        if self._started:
            self.sync.stop()
        else:
            self.pending.close()
        self.watcher.stop()
        if self._claim_thread is not None:
            self._claim_thread.join()  # no more adoptions once the runs stop
        if self._started:
            self.triggers.close()
            self.runs.stop(self.settings.stop_grace, STOP_DRAIN)
        self.watcher.join()
        if self._started:
            self.sync.join()
        self.engine.close()
        if self.backend is not None:
            self.backend.close()  # after the instances stopped: the others may claim them at once
        self._unregister_metrics()
        self._dir_lock.release()
        self.log.info("stopped")

    # ------------------------------------------------------------------ for the API
    @property
    def max_wait(self) -> float:
        return self.settings.max_wait

    def start_and_view(self, ns: str, path: str, body: bytes | None, *, wait: bool, timeout: float | None) -> dict[str, Any]:
        """Start an instance for the API and return its view: at once, or with ``wait`` once
        it ended (or ``timeout`` passed; None: ``max_wait``).  A waited-for start makes no
        commit of its own: the outcome's record is the one commit (docs/daemon.md)."""
        if not wait:
            return self.runs.start(ns, path, body).view()
        info = self.runs.start(ns, path, body, announce=False, here=timeout is None)
        info.done.wait(self.settings.max_wait if timeout is None else timeout)
        return info.view() if info.status in ENDED else self.instance(ns, info.id)

    def instance(self, ns: str, iid: str) -> dict[str, Any]:
        """An instance's status, input, output and error (404 when unknown)."""
        info = self.runs.live(ns, iid)
        if info is not None:
            return info.view()
        rec = self._stored_record(ns, iid)
        for k in _PRIVATE:
            rec.pop(k, None)
        return rec

    def instance_detail(self, ns: str, iid: str) -> dict[str, Any]:
        """The record with its state-by-state ``timeline`` (404 when unknown)."""
        self.catalog.check_namespace(ns)
        view = self.instance(ns, iid)
        try:
            shown = self.engine.history.show(ns, iid)
        except HistoryNotFound:
            return {**view, "timeline": []}  # queued: no record of its own yet
        return {**view, "timeline": shown["timeline"]}

    def instance_log(self, ns: str, iid: str, after: int = 0) -> dict[str, Any]:
        """Log lines from number ``after`` on: ``{"id", "logs", "next", "ended"}``."""
        self.catalog.check_namespace(ns)
        view = self.instance(ns, iid)  # 404 when unknown
        try:
            lines, nxt, _ = self.engine.history.logs(ns, iid, after)
        except HistoryNotFound:
            lines, nxt = [], max(0, after)
        return {"id": iid, "logs": lines, "next": nxt, "ended": view.get("status") in ENDED}

    def instances(self, ns: str, *, status: str | None = None, workflow: str | None = None,
                  offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of a namespace's instances (running, queued and kept), newest first."""
        self.catalog.check_namespace(ns)
        rows, _ = self.engine.history.list(ns)
        by_id = {r["id"]: r for r in rows}
        if not self.records.in_history:  # records the history does not list (LMDB: its own keys)
            for rec in self.records.list(ns):
                by_id.setdefault(rec["id"], summary(rec))
            for rec in self.records.running(ns):  # other workers' (sharing the records), as they last committed
                by_id[rec["id"]] = summary(rec)
        for view in self.runs.live_views(ns):
            by_id[view["id"]] = summary(view)
        picked = [r for r in by_id.values()
                  if (status is None or r.get("status") == status) and (workflow is None or r.get("workflow") == workflow)]
        picked.sort(key=lambda r: (r.get("created") or 0, r.get("id") or ""), reverse=True)
        return {"namespace": ns, "instances": picked[offset:offset + limit], "total": len(picked),
                "offset": offset, "limit": limit}

    def cancel(self, ns: str, iid: str) -> dict[str, Any]:
        """Cancel an instance (202), running here or in another process; 404 unknown, 409 ended."""
        self.catalog.check_namespace(ns)
        reason = "cancelled through the API"
        info = self.runs.live(ns, iid)
        if info is not None:
            return {"id": iid, "status": self.runs.cancel_by_user(info, reason)}
        try:
            self.engine.history.cancel(ns, iid, reason)
        except HistoryNotFound:
            raise DaemonError(404, "isolde.instance.notFound", f"no instance '{iid[:100]}' in namespace '{ns}'") from None
        except IsoldeError as exc:
            raise DaemonError(409, "isolde.instance.ended", str(exc)) from None
        rec = self.engine.history.get(ns, iid) or {}
        return {"id": iid, "status": rec.get("status")}

    def _stored_record(self, ns: str, iid: str) -> dict[str, Any]:
        # the daemon's own records first (a plugin's may live elsewhere than the history,
        # e.g. the workers' shared table), then every other run's history
        rec = self.records.get(ns, iid) or self.engine.history.get(ns, iid)
        if rec is None or "status" not in rec:
            raise DaemonError(404, "isolde.instance.notFound", f"no instance '{iid[:100]}' in namespace '{ns}'")
        return rec

    def wait_for(self, ns: str, iid: str, timeout: float) -> dict[str, Any]:
        info = self.runs.live(ns, iid)
        if info is not None:
            info.done.wait(timeout)
        return self.instance(ns, iid)

    def publish_event(self, ns: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        self.catalog.check_namespace(ns)
        if self._stopping:
            raise DaemonError(503, "isolde.daemon.stopping", "the daemon is stopping")
        return self.triggers.publish(ns, event)

    def namespaces(self) -> list[dict[str, Any]]:
        with self.catalog.lock:
            names = sorted(self.catalog.namespaces)
            counts = {n: 0 for n in names}
            for (n, _) in self.catalog.workflows:
                if n in counts:
                    counts[n] += 1
        return [{"name": n, "workflows": counts[n]} for n in names]

    def workflows(self, ns: str) -> list[dict[str, Any]]:
        self.catalog.check_namespace(ns)
        out = [e.summary() for e in sorted(self.catalog.in_namespace(ns), key=lambda e: e.id)]
        for row in out:
            row["next_run"] = self.triggers.scheduler.next_fire(ns, row["path"])
        return out

    def workflow_graph(self, ns: str, path: str) -> tuple[dict[str, Any], Graph | None]:
        """A served workflow's summary (validation status, located errors) and the graph of
        the version that serves (None when no version validated)."""
        from ..graph import workflow_graph

        entry = self.catalog.entry(ns, workflow_id(path))
        wf = entry.workflow
        return entry.summary(), workflow_graph(wf, self.engine.registry.schema) if wf is not None else None

    def workflow_owner(self, ns: str, path: str) -> str:
        """The store owner of a served workflow's variables (404 when it is not served)."""
        return self.catalog.entry(ns, workflow_id(path)).id

    def check_namespace(self, ns: str) -> None:
        self.catalog.check_namespace(ns)

    def metrics(self, accept: str | None) -> tuple[bytes, str]:
        """``/metrics``: the engine's registry (with this daemon's collector), as ``accept`` asks."""
        return self.engine.metrics.exposition(accept)

    def status(self) -> dict[str, Any]:
        n_ns, n_wf, invalid = self.catalog.counts()
        return {"namespaces": n_ns, "workflows": n_wf, "invalid": invalid,
                "running": self.runs.running, "queued": self.runs.queued(), **self.runs.stats}

    def _claim_loop(self, interval: float) -> None:
        """A worker of many: take over, every ``interval`` seconds, the instances of workers
        whose lease ran out (resumed or ended ``interrupted``, as after a restart)."""
        while not self._stop_event.wait(interval):
            try:
                self.recovery.take_over()
                self.recovery.recover()
            except Exception as exc:  # the database away for a moment: try again next time
                self.log.warning("claiming orphaned instances failed", extra={"fields": {"error": str(exc)}})

    def _status_loop(self) -> None:
        while not self._stop_event.wait(self.settings.status_interval):
            self.log.info("status", extra={"fields": self.status()})
