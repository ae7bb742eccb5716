"""``isolde.Engine``: the embeddable interpreter (SPEC §5.2).

An engine owns its plugin manager, jq runtime, store handle and workflow cache;
nothing is shared between engines except what a process can only have once (an
LMDB environment per data directory, which the store module shares by path).
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from .config import Config, config_from, resolve_data_dir
from .errors import IsoldeError
from .instance import LogSink, Result, run_instance
from .jqexpr import JqRuntime
from .loader import YamlError, load_document
from .locks import LockTable, lock_table
from .errors import ValidationError
from .registry import Registry, load_plugins
from .store import SCOPES, LmdbStore, Ref, Variable, check_key, check_scope
from .validate import build_workflow
from .variables import decode, encode, parse_json
from .workflow import Workflow

if TYPE_CHECKING:
    from .events import EventBus

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
        # read once: consulted by every instance
        self.max_steps = int(self.config.limit("max_steps"))
        self.max_variable_bytes = int(self.config.limit("max_variable_bytes"))
        self.max_data_bytes = int(self.config.limit("max_data_bytes"))
        self.lock_wait = float(self.config.limit("lock_wait"))
        self._locks: LockTable | None = None
        self._good_namespaces: set[str] = set()
        self._store: LmdbStore | None = None
        self._cache: dict[str, tuple[int, int, Workflow]] = {}
        self.variables = Variables(self)
        self._closed = False
        self._resources: dict[str, Any] = {}
        self._resource_lock = threading.Lock()
        self._active = 0  # instances running now
        self._active_cond = threading.Condition()

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._resource_lock:
            resources = list(self._resources.values())
            self._resources.clear()
        # Phase 1: cancel what is in flight (waiting instances are woken, isolate calls
        # under way get their DELETE), so running instances end promptly; phase 2: let
        # them finish their own clean-up (locks, instance variables) while the store is
        # still open; phase 3: close isolates, the sidecar and the rest.
        for res in resources:
            cancel = getattr(res, "cancel_all", None)
            if cancel is not None:
                try:
                    cancel()
                except Exception as exc:
                    self._report_internal(exc)
        self._drain(CLOSE_GRACE)
        for res in reversed(resources):  # last started, first stopped
            close = getattr(res, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # keep closing the rest
                    self._report_internal(exc)
        self.jq.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _drain(self, seconds: float) -> None:
        """Wait (bounded) until no instance of this engine is running."""
        with self._active_cond:
            self._active_cond.wait_for(lambda: self._active == 0, timeout=seconds)

    def peek_resource(self, key: str) -> Any | None:
        """The per-engine resource under ``key`` if it was made, without making it."""
        with self._resource_lock:
            return self._resources.get(key)

    def resource(self, key: str, factory: Callable[[], T]) -> T:
        """A per-engine object (sidecar, isolate processes, ...) made on first use.

        When the engine closes, every resource's ``cancel_all()`` (if it has one) is
        called first, to end what is in flight; then running instances are given
        ``CLOSE_GRACE`` seconds to finish; then each ``close()`` runs, in reverse
        order of creation.  Plugins use this instead of module globals, so several
        engines in one process never share state.
        """
        with self._resource_lock:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            res = self._resources.get(key)
            if res is None:
                res = factory()
                self._resources[key] = res
            return res

    @property
    def locks(self) -> LockTable:
        """Variable locks of this data directory (``lock: true``), shared within the process."""
        if self._locks is None:
            self._locks = lock_table(str(self.data_dir))
        return self._locks

    @property
    def events(self) -> EventBus:
        """The engine's in-process CloudEvents bus (``isolde.events``), made on first use.

        Closing the engine closes it, which wakes every instance waiting in a
        ``delay`` or an event state (they fail with ``isolde.cancelled``).
        """
        from .events import EventBus

        return self.resource("events", lambda: EventBus.from_config(self.config, self._report_internal))

    @property
    def store(self) -> LmdbStore:
        """The variable store, opened on first use (``validate`` never opens it)."""
        if self._store is None:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            store = self.registry.pm.hook.isolde_store(config=self.config, data_dir=str(self.data_dir))
            if store is None:
                store = LmdbStore(self.data_dir, durable=self.config.durable, blob_threshold=self.config.data.get("store", {}).get("blob_threshold", 1 << 20))
                store.sweep_orphans()
            self._store = store
        return self._store

    # -- workflows -------------------------------------------------------------
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
        if isinstance(workflow, str) and ("\n" in workflow or (":" in workflow and not os.path.exists(workflow))):
            return self._build(workflow, "<string>", workflow_id or "workflow")
        path = os.path.abspath(os.fspath(workflow))
        st = os.stat(path)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size and workflow_id is None:
            return hit[2]
        with open(path, "rb") as fh:
            text = fh.read()
        wf = self._build(text, os.fspath(workflow), workflow_id or Path(path).stem)
        if workflow_id is None:
            self._cache[path] = (st.st_mtime_ns, st.st_size, wf)
        return wf

    def _build(self, text: str | bytes, filename: str, default_id: str) -> Workflow:
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
    ) -> Result:
        """Run one instance to its end and return its ``Result``.

        ``input`` is a JSON value (a dict is used as is, anything else becomes
        ``{"input": value}``), or ``bytes`` as the CLI reads them: JSON when they
        parse, otherwise ``{"input": "<base64>"}``.  ``None`` is ``{}``.
        """
        wf = self.load(workflow, workflow_id=workflow_id)
        if namespace not in self._good_namespaces:
            check_name(namespace, "namespace")
            if len(self._good_namespaces) < 1024:
                self._good_namespaces.add(namespace)
        data = self.instance_input(input)
        iid = instance_id or new_instance_id()
        with self._active_cond:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            self._active += 1
        try:
            return run_instance(self, wf, data, namespace=namespace, instance_id=iid, sink=self.log_sink)
        finally:
            with self._active_cond:
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

    # -- namespaces and workflows as holders of variables ---------------------
    def namespaces(self) -> list[str]:
        return self.store.namespaces()

    def workflows(self, namespace: str = "default") -> list[str]:
        return self.store.workflows(namespace)

    def delete_workflow(self, workflow: str, namespace: str = "default") -> int:
        """Delete a workflow's variables (exactly that workflow's); returns how many."""
        check_name(namespace, "namespace")
        return self.store.delete_workflow(namespace, workflow)

    def delete_namespace(self, namespace: str) -> int:
        """Delete every variable of a namespace (exactly that namespace's); returns how many."""
        check_name(namespace, "namespace")
        return self.store.delete_namespace(namespace)

    def _report_internal(self, exc: BaseException) -> None:
        if os.environ.get("ISOLDE_DEBUG"):
            traceback.print_exception(exc, file=sys.stderr)


def new_instance_id() -> str:
    """A random (version 4) UUID as text, without the cost of building a ``uuid.UUID``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def check_name(value: str, what: str) -> None:
    if not value or "\x00" in value or "/" in value or len(value.encode()) > 255:
        raise IsoldeError(f"invalid {what} name {value!r}: 1-255 bytes, no '/' or NUL")


class Variables:
    """``engine.variables``: read and write variables by scope from Python.

    ``scope`` is ``namespace`` (default), ``workflow`` (needs ``workflow=``) or
    ``instance`` (needs ``instance=``).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _ref(self, key: str, scope: str, namespace: str, workflow: str | None, instance: str | None) -> Ref:
        check_name(namespace, "namespace")  # the same rule as run(): no namespace a workflow cannot use
        check_scope(scope)
        check_key(key)
        owner = ""
        if scope == "workflow":
            if not workflow:
                raise IsoldeError("workflow scope needs a workflow name")
            owner = workflow
        elif scope == "instance":
            if not instance:
                raise IsoldeError("instance scope needs an instance id")
            owner = instance
        return Ref(namespace, scope, owner, key)

    def get(self, key: str, *, scope: str = "namespace", namespace: str = "default",
            workflow: str | None = None, instance: str | None = None) -> Variable | None:
        """The stored variable (bytes, mime type, size, times) or None."""
        return self._engine.store.get(self._ref(key, scope, namespace, workflow, instance))

    def value(self, key: str, **where: Any) -> Any:
        """The variable decoded as a getter would see it (None when missing)."""
        var = self.get(key, **where)
        return None if var is None else decode(var.data)

    def set(self, key: str, value: Any, *, mime: str | None = None, scope: str = "namespace",
            namespace: str = "default", workflow: str | None = None, instance: str | None = None) -> None:
        """Store a value as a setter would (``bytes`` are stored as they are; None deletes)."""
        ref = self._ref(key, scope, namespace, workflow, instance)
        from .store import Put

        if value is None:
            self._engine.store.write([Put(ref, None)])
            return
        if isinstance(value, (bytes, bytearray)):
            data, mime = bytes(value), mime or "application/octet-stream"
        else:
            data, mime = encode(value, mime)
        self._engine.store.write([Put(ref, data, mime)])

    def delete(self, key: str, **where: Any) -> None:
        self.set(key, None, **where)

    def list(self, *, scope: str = "namespace", namespace: str = "default",
             workflow: str | None = None, instance: str | None = None) -> list[tuple[str, Variable]]:
        check_name(namespace, "namespace")
        check_scope(scope)
        owner = workflow if scope == "workflow" else instance if scope == "instance" else ""
        return self._engine.store.list(namespace, scope, owner or "")

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self.list())


__all__ = ["Engine", "Variables", "SCOPES"]
