"""``isolde.Engine``: the embeddable interpreter (SPEC §5.2).

An engine builds its services once, in order, on first use (the variable store, the
variable locks, the event bus, the action machinery with its runners and sidecar, the
timeout watcher), registering each on an ``ExitStack`` as it is made, and closes them in
reverse order.  Each module receives the collaborators it uses (``isolde.instance.Services``
for running instances); nothing below the engine knows the engine.  Nothing is shared
between engines except what a process can only have once (an LMDB environment per data
directory, which the store shares by path).
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from .config import Config, config_from, resolve_data_dir
from .errors import IsoldeError, ValidationError
from .ids import new_instance_id
from .instance import (
    INVOKE,
    ErrorInfo,
    Lazy,
    Limits,
    LogSink,
    Result,
    Services,
    StepHook,
    Subflows,
    manual_start_refused,
    run_instance,
)
from .jqexpr import JqRuntime
from .loader import YamlError, load_document
from .observers import Observer, combine
from .names import check_name
from .registry import Registry, load_plugins
from .store import VariableStore
from .validate import build_workflow
from .variables import parse_json
from .workflow import Workflow
from .variable_access import Variables

if TYPE_CHECKING:
    from .actions.call import Functions
    from .history import HistoryService
    from .history import Recorder as HistoryRecorder
    from .events import EventBus
    from .guards import Deadlines
    from .locks import VariableLocks
    from .metrics import Metrics
    from .migrations import SchemaAdmin

WorkflowSource = Workflow | str | os.PathLike[str]
CLOSE_GRACE = 5.0  # seconds close() waits for running instances to wind down
T = TypeVar("T")


class Engine:
    """Loads, validates and runs workflows against one data directory.

    Use it as a context manager (``with Engine(data_dir=...) as engine:``) so the
    store, jq worker and any isolate processes are released at the end.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        config: Config | dict[str, Any] | str | os.PathLike[str] | None = None,
        *,
        log: LogSink | None = None,
        plugins: Sequence[Any] = (),
    ) -> None:
        self.config = config_from(config)
        self.data_dir = resolve_data_dir(data_dir, self.config)
        self.registry: Registry = load_plugins(self.config, plugins)
        self.jq = JqRuntime(
            timeout=float(self.config.limit("jq_timeout")),
            max_output=int(self.config.limit("jq_max_output")),
            workers=max(1, int(self.config.limit("jq_workers"))),
        )
        self.log_sink = log
        self._stack = contextlib.ExitStack()
        self._lazy: list[Lazy[Any]] = []
        self._made: list[Any] = []  # services in order of creation (cancelled first at close)
        self._resources: dict[str, Any] = {}
        self._resource_lock = threading.Lock()
        self._closed = False
        self._good_namespaces: set[str] = set()
        self._cache: dict[Any, tuple[int, int, Workflow, str]] = {}
        self._active = 0  # instances running now
        self._active_lock = threading.Lock()  # a plain lock: run_loaded takes it twice per instance
        self._active_cond = threading.Condition(self._active_lock)
        self._metrics: Metrics | None = None
        self.services = Services(
            config=self.config,
            limits=Limits.from_config(self.config),
            jq=self.jq,
            store=self._service(self._open_store),
            locks=self._service(self._open_locks),
            events=self._service(self._open_events),
            functions=self._service(self._open_functions),
            deadlines=self._service(self._open_deadlines),
            resource=self.resource,
            load=self.load,
            sink=log,
            report_internal=self._report_internal,
        )
        self._history: Lazy[HistoryService] = self._service(self._open_history)
        self.services.subflows = Subflows(self.services, self.instance_input)
        self.variables = Variables(self.services.store)

    # -- services --------------------------------------------------------------------
    def _service(self, factory: Callable[[], T]) -> Lazy[T]:
        lazy: Lazy[T] = Lazy(factory, self._made_service)
        self._lazy.append(lazy)
        return lazy

    def _made_service(self, service: Any) -> None:
        self._made.append(service)
        close = getattr(service, "close", None)
        if close is not None:
            self._stack.callback(self._quietly, close)

    def _quietly(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # keep closing the rest
            self._report_internal(exc)

    def _open_store(self) -> VariableStore:
        store: VariableStore | None = self.registry.pm.hook.isolde_store(config=self.config, data_dir=str(self.data_dir))
        if store is None:
            from .store import LmdbStore

            table = self.config.data.get("store", {})
            lmdb_store = LmdbStore(self.data_dir, durable=self.config.durable,
                                   blob_threshold=table.get("blob_threshold", 1 << 20))
            lmdb_store.sweep_orphans()
            store = lmdb_store
        return store

    def _open_locks(self) -> VariableLocks:
        locks: VariableLocks | None = self.registry.pm.hook.isolde_locks(
            config=self.config, store=self.services.store.get(), data_dir=str(self.data_dir))
        if locks is not None:
            return locks
        from .locks import lock_table

        return lock_table(str(self.data_dir))

    def _open_events(self) -> EventBus:
        from .events import InProcessEventBus

        return InProcessEventBus.from_config(self.config, self._report_internal)

    def _open_deadlines(self) -> Deadlines:
        from .guards import Deadlines

        return Deadlines()

    def _open_functions(self) -> Functions:
        import dataclasses

        from .actions.call import Functions
        from .actions.folders import ActionFiles
        from .files import ArchiveLimits
        from .isolates.hub import Isolates
        from .sidecar import Sidecar, sidecar_settings

        store = self.services.store.get()  # made first, so it is closed after the sidecar
        settings = sidecar_settings(self.config)
        limit = min(settings.max_body, self.services.limits.max_variable_bytes)
        sidecar = Sidecar.from_settings(store, dataclasses.replace(settings, max_body=limit))
        isolates = Isolates(self.config, self.registry.runners)
        files = ActionFiles(sidecar, isolates.settings, ArchiveLimits.from_config(self.config),
                            self.services.limits.max_variable_bytes)
        return Functions(isolates, files, dict(self.config.data.get("secrets", {}) or {}),
                         observer=lambda: self.services.observer)

    def wrap_events(self, wrap: Callable[[Callable[[], EventBus]], EventBus]) -> None:
        """Make the event bus with ``wrap(make_in_process)`` instead (the daemon, when a
        plugin shares events between workers); only before the bus is first used."""
        if self.services.events.peek() is not None:
            raise IsoldeError("the event bus is already in use")
        self.services.events = self._service(lambda: wrap(self._open_events))

    def _open_history(self) -> HistoryService:
        from .history import HistoryService, HistorySettings, InstanceHistory, StoreHistory

        store = self.services.store.get()  # made first, so it is closed after the history
        kept: InstanceHistory | None = self.registry.pm.hook.isolde_instance_history(config=self.config, store=store)
        return HistoryService(kept or StoreHistory(store), store, HistorySettings.from_config(self.config),
                              interrupt=self._interrupt, report=self._report_internal)

    def _interrupt(self, instance_id: str, reason: str) -> None:
        """Wake an instance's waits and sleeps, and cancel its isolate calls (``DELETE``)."""
        events = self.services.events.peek()
        if events is not None:
            events.interrupt(instance_id, reason)
        functions = self.services.functions.peek()
        if functions is not None:
            functions.isolates.cancel_instance(instance_id)

    @property
    def history(self) -> HistoryService:
        """Instance history (records, timelines, logs) and cancel, made on first use."""
        return self._history.get()

    def cancel(self, instance_id: str, namespace: str = "default", reason: str = "cancelled by a user") -> str:
        """Cancel an instance: one running in this engine stops at once (``"cancelled"``: its
        waits are woken, its isolate calls get their ``DELETE``, it ends ``cancelled`` with
        ``direktiv.cancels.api``); one running in another process gets a request it notices
        within ``[history] flush_interval`` (``"requested"``).  Raises
        ``isolde.history.NotFound`` for an unknown id, ``IsoldeError`` when it already ended."""
        return self.history.cancel(namespace, instance_id, reason)

    @property
    def store(self) -> VariableStore:
        """The variable store, opened on first use (``validate`` never opens it)."""
        return self.services.store.get()

    @property
    def events(self) -> EventBus:
        """The engine's CloudEvents bus, made on first use.  Closing the engine closes it,
        which wakes every instance waiting in a ``delay`` or an event state (they fail with
        ``isolde.cancelled``)."""
        return self.services.events.get()

    @property
    def locks(self) -> VariableLocks:
        """Variable locks of this data directory (``lock: true``), shared within the process."""
        return self.services.locks.get()

    @property
    def metrics(self) -> Metrics:
        """This engine's Prometheus metrics (``isolde.metrics.Metrics``; its ``registry`` is
        a ``CollectorRegistry`` of its own), made on first use: instances started from then
        on are counted.  An engine nobody asks for metrics pays nothing for them."""
        with self._resource_lock:
            if self._metrics is None:
                from .metrics import Metrics

                self._metrics = Metrics()
                self.services.observer = combine(self.services.observer, self._metrics)
            return self._metrics

    def observe(self, observer: Observer) -> None:
        """Add a listener (an ``isolde.observers.Observer``) to the instances started from
        now on: their states, actions, commits and progress."""
        with self._resource_lock:
            self.services.observer = combine(self.services.observer, observer)

    def resource(self, key: str, factory: Callable[[], T]) -> T:
        """A per-engine object made on first use under ``key`` (plugins keep their state
        here instead of in module globals).  At close, its ``cancel_all()`` (if any) runs
        with the other services', then its ``close()`` in reverse order of creation."""
        with self._resource_lock:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            if key not in self._resources:
                made = factory()
                self._resources[key] = made
                self._made_service(made)
            value: T = self._resources[key]
            return value

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what is in flight (waits are woken, isolate calls get their ``DELETE``),
        let running instances finish their clean-up (bounded), then close every service
        in reverse order of creation."""
        with self._resource_lock:
            if self._closed:
                return
            self._closed = True
        for lazy in self._lazy:
            lazy.close()
        for service in list(self._made):
            cancel = getattr(service, "cancel_all", None)
            if cancel is not None:
                self._quietly(cancel)
        with self._active_cond:
            self._active_cond.wait_for(lambda: self._active == 0, timeout=CLOSE_GRACE)
        self._stack.close()
        self.jq.close()

    # -- workflows -------------------------------------------------------------------
    def load(self, workflow: WorkflowSource, *, workflow_id: str | None = None) -> Workflow:
        """Validate a workflow given as a path, as YAML text, or already loaded.

        A ``str`` is YAML text when it has a newline, or a ``:`` and names no existing
        file; otherwise it is a path (``os.PathLike`` is always a path).

        Raises ``ValidationError`` (every problem, located) or ``FileNotFoundError``.
        A path is cached by its modification time and size, so running the same file
        again does not parse it again.
        """
        if isinstance(workflow, Workflow):
            return workflow
        if workflow_id is None:
            # The hot case, a path run again: one dict lookup by the argument itself and
            # the stat that notices an edited file (nothing else per run).
            hit = self._cache.get(workflow)
            if hit is None and not (isinstance(workflow, str) and "\n" in workflow) and not os.path.isabs(workflow):
                hit = self._cache.get((os.getcwd(), workflow))  # a relative path: cached with the working directory
            if hit is not None:
                st = os.stat(hit[3])
                if hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
                    return hit[2]
        if isinstance(workflow, str) and ("\n" in workflow or (":" in workflow and not os.path.exists(workflow))):
            return self.build(workflow, "<string>", workflow_id or "workflow")
        path = os.path.abspath(os.fspath(workflow))
        st = os.stat(path)
        with open(path, "rb") as fh:
            text = fh.read()
        wf = self.build(text, os.fspath(workflow), workflow_id or Path(path).stem)
        if workflow_id is None:
            if len(self._cache) >= 1024:
                self._cache.clear()
            # Keyed by the argument as given (a relative path only while the working
            # directory is the same: it is part of the key).
            self._cache[self._cache_key(workflow)] = (st.st_mtime_ns, st.st_size, wf, path)
        return wf

    @staticmethod
    def _cache_key(workflow: str | os.PathLike[str]) -> Any:
        return workflow if os.path.isabs(workflow) else (os.getcwd(), workflow)

    def build(self, text: str | bytes, filename: str, default_id: str) -> Workflow:
        """Validate YAML ``text`` (named ``filename`` in diagnostics) into a workflow."""
        try:
            doc = load_document(
                text,
                filename,
                max_bytes=int(self.config.limit("max_yaml_bytes")),
                max_nodes=int(self.config.limit("max_yaml_nodes")),
            )
        except YamlError as exc:
            raise ValidationError([exc.diagnostic]) from None
        return build_workflow(
            doc,
            schema=self.registry.schema,
            state_types=self.registry.state_types,
            jq=self.jq,
            default_id=default_id,
        )

    def validate(self, workflow: WorkflowSource) -> list[Any]:
        """Every diagnostic for a workflow (empty when it is valid)."""
        try:
            self.load(workflow)
        except ValidationError as exc:
            return list(exc.diagnostics)
        return []

    def run(
        self,
        workflow: WorkflowSource,
        input: Any = None,
        namespace: str = "default",
        *,
        workflow_id: str | None = None,
        instance_id: str | None = None,
        event: bool = False,
    ) -> Result:
        """Run one instance to its end and return its ``Result``.

        ``input`` is a JSON value (a dict is used as is, anything else becomes
        ``{"input": value}``), or ``bytes`` as the CLI reads them: JSON when they
        parse, otherwise ``{"input": "<base64>"}``.  ``None`` is ``{}``.  A workflow
        whose ``start`` waits for events fails with ``direktiv.workflow.invoke`` (as
        in Direktiv v0.7+) unless ``event`` says this run is that event's start.
        """
        wf = self.load(workflow, workflow_id=workflow_id)
        refused = None if event else manual_start_refused(wf)
        if refused is not None:
            return Result(instance_id or new_instance_id(), "failed", error=ErrorInfo(INVOKE, refused, wf.start.id),
                          workflow=wf.id, namespace=namespace)
        return self.run_loaded(wf, self.instance_input(input), namespace=namespace, instance_id=instance_id)

    def run_loaded(self, wf: Workflow, data: dict[str, Any], *, namespace: str = "default",
                   instance_id: str | None = None, sink: LogSink | None = None, start: str | None = None,
                   on_step: StepHook | None = None, started_at: float | None = None,
                   recorder: HistoryRecorder | None = None, store: VariableStore | None = None) -> Result:
        """Run a loaded workflow on instance data (already an object).  The daemon resumes
        an instance from state ``start`` (counting its timeouts from ``started_at``) and
        keeps its record with ``on_step`` and its history with its own ``recorder``
        (``history.recorder(..., owns_record=False)``); ``sink`` replaces the engine's log
        sink; ``store``, the engine's store as this instance writes to it (the daemon's
        ``InstanceRecords.instance_store``: fenced by a claim).  Otherwise the instance's
        history is kept here (``[history] enabled``)."""
        if namespace not in self._good_namespaces:
            check_name(namespace, "namespace")
            if len(self._good_namespaces) < 1024:
                self._good_namespaces.add(namespace)
        iid = instance_id or new_instance_id()
        with self._active_lock:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            self._active += 1
        try:
            history = self.history
            rec = recorder
            if rec is None:
                rec = history.recorder(namespace, iid, wf.id, data, enabled=history.settings.enabled)
            result = run_instance(self.services, wf, data, namespace=namespace, instance_id=iid,
                                  sink=sink or self.log_sink, start=start, on_step=on_step, started_at=started_at,
                                  recorder=rec, store=store)
            history.ended(rec, result)
            return result
        finally:
            with self._active_lock:
                self._active -= 1
                if self._closed:  # only close() waits on it
                    self._active_cond.notify_all()

    def instance_input(self, value: Any) -> dict[str, Any]:
        """SPEC §2.2: instance data is always an object."""
        if value is None:
            return {}
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            limit = int(self.config.limit("max_input_bytes"))
            if len(raw) > limit:
                raise IsoldeError(
                    f"input is {len(raw)} bytes, over the {limit}-byte limit (raise [limits] max_input_bytes in isolde.toml)"
                )
            if not raw.strip():
                return {}
            try:
                value = parse_json(raw)
            except ValueError:
                return {"input": base64.b64encode(raw).decode("ascii")}
        if isinstance(value, dict):
            return value
        return {"input": value}

    def schema_admin(self) -> SchemaAdmin | None:
        """The configured store's schema (``isolde db``), without opening the store; None
        when the store keeps no versioned tables (LMDB)."""
        admin: SchemaAdmin | None = self.registry.pm.hook.isolde_schema_admin(
            config=self.config, data_dir=str(self.data_dir))
        return admin

    # -- namespaces and workflows as holders of variables ---------------------------
    def namespaces(self) -> list[str]:
        """Namespaces holding variables; one that holds only instance history (of runs that
        wrote no variable there) is not listed (``isolde instances list -n NS`` reads it)."""
        store = self.store
        return [ns for ns in store.namespaces()
                if store.workflows(ns) or store.list(ns, "namespace") or not self.history.history_only(ns)]

    def workflows(self, namespace: str = "default") -> list[str]:
        return self.store.workflows(namespace)

    def delete_workflow(self, workflow: str, namespace: str = "default") -> int:
        """Delete a workflow's variables (exactly that workflow's); returns how many."""
        check_name(namespace, "namespace")
        return self.store.delete_workflow(namespace, workflow)

    def delete_namespace(self, namespace: str) -> int:
        """Delete every variable of a namespace (exactly that namespace's) and its instance
        history; returns how many variables (the history's entries not counted)."""
        check_name(namespace, "namespace")
        kept = self.history.stored_entries(namespace)
        return max(0, self.store.delete_namespace(namespace) - kept)

    def _report_internal(self, exc: BaseException) -> None:
        if os.environ.get("ISOLDE_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)


__all__ = ["Engine"]
