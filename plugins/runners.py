"""The built-in isolate runners: ``process``, ``http``, ``python``, ``subflow`` and Direktiv's images.

Each is an ``isolde.isolates.Runner`` registered through ``isolde_isolate_runners``,
the same hook a third-party package uses (a container runner, say).  The fields
of each function type are declared in ``isolde.plugins.action``.

* ``process`` starts ``command`` once per engine (``$PORT``, ``$DIREKTIV_SIDECAR``),
  waits for it to listen, reuses it, restarts it if it died, stops it at close.
* ``http`` calls an isolate that already listens at ``url``.
* ``python`` calls ``module:function`` in-process with ``(input, request)``.
* ``subflow`` runs another workflow of the namespace as a child instance.
* ``isolated`` / ``reusable`` / ``knative-*`` (``image:`` / ``service:``) are
  looked up in ``[images."NAME"]`` of isolde.toml, which maps them to a
  ``command`` (run like ``process``) or a ``url`` (called like ``http``).
"""

from __future__ import annotations

import importlib
import json
import shlex
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from isolde import hookimpl
from isolde.errors import ConfigError, InstanceFailure, IsoldeError, ValidationError, WorkflowError
from isolde.isolates import (
    UNAVAILABLE_CODE,
    ActionRequest,
    ActionTimeout,
    HttpIsolate,
    IsolateProcess,
    Response,
    Runner,
    isolates_for,
    parse_url,
    stderr_line,
)

if TYPE_CHECKING:
    from isolde import Config, Engine, Workflow

IMAGE_TYPES = ("isolated", "reusable", "knative-workflow", "knative-namespace", "knative-global")
_IMAGE_KEYS = ("command", "url", "env", "port")


# --------------------------------------------------------------------------- process and http


def _command(value: Any, where: str) -> list[str]:
    """A command as a list of strings; a string is split like a shell would (no shell runs)."""
    if isinstance(value, str):
        parts = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = list(value)
    else:
        raise ConfigError(f"{where}: command must be a list of strings, got {value!r}")
    if not parts:
        raise ConfigError(f"{where}: command is empty")
    return parts


def _env(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _env_value(v) for k, v in value.items()}
    if isinstance(value, list):  # Direktiv's envs: [{name, value}]
        out: dict[str, str] = {}
        for item in value:
            if not isinstance(item, dict) or "name" not in item:
                raise ConfigError(f"{where}: envs entries need a name, got {item!r}")
            out[str(item["name"])] = _env_value(item.get("value", ""))
        return out
    raise ConfigError(f"{where}: env must be a mapping of names to values, got {value!r}")


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


class ProcessRunner(HttpIsolate):
    """``type: process``: isolde starts ``command`` and speaks the protocol to it on ``$PORT``.

    The program runs in the workflow file's directory (for an image mapped in
    isolde.toml: the config file's directory), once per engine, shared by every
    function with the same command, env and port.
    """

    types = ("process",)

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(engine, function, base_dir)
        name = str(function.get("name") or function.get("id") or "process")
        where = f"function '{name}'"
        settings = isolates_for(engine).settings
        self.process = IsolateProcess(
            _command(function.get("command"), where),
            name=name,
            cwd=base_dir,
            env=_env(function.get("env"), where),
            port=function.get("port"),
            startup_timeout=settings.startup_timeout,
            output=stderr_line,
        )

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        fields = {k: function.get(k) for k in ("command", "env", "port")}
        return f"process:{base_dir}:{json.dumps(fields, sort_keys=True, default=str)}"

    def describe(self) -> str:
        return f"isolate '{self.process.name}' ({' '.join(self.process.command)})"

    def prepare(self, request: ActionRequest) -> None:
        self.process.ensure(request.sidecar)
        port = self.process.port
        if port != self._port:  # (re)started, maybe by a concurrent call: follow its port
            self.set_url(f"http://127.0.0.1:{port}/")

    def _unavailable(self, exc: BaseException) -> WorkflowError:
        """A broken-off call: say whether the program died, with its exit code and last output."""
        error = super()._unavailable(exc)
        note = self.process.exit_note()
        if note:
            error = WorkflowError(error.code, error.msg + note)
        return error

    def close(self) -> None:
        super().close()
        self.process.close()


class HttpRunner(HttpIsolate):
    """``type: http``: an isolate that already listens at ``url`` (a container you started, say)."""

    types = ("http",)

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(engine, function, base_dir)
        try:
            self.set_url(str(function.get("url", "")))
        except ConfigError as exc:
            self._bad_url: str | None = str(exc)
        else:
            self._bad_url = None

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        return f"http:{function.get('url')}"

    def describe(self) -> str:
        return f"isolate at {self.url}"

    def prepare(self, request: ActionRequest) -> None:
        if self._bad_url:
            raise WorkflowError(UNAVAILABLE_CODE, f"function '{self.function.get('id', '?')}': {self._bad_url}")


# --------------------------------------------------------------------------- python


class PythonRunner(Runner):
    """``type: python``: ``call: "module:function"``, called in-process as ``function(input, request)``.

    ``request`` is the ``isolde.isolates.ActionRequest`` an HTTP isolate would
    get as headers: ``temp_dir`` (the action folder, with ``out/<scope>/``),
    ``sidecar`` (``host:port``), ``action_id``, ``instance_id``, ``namespace``,
    ``workflow``, ``deadline``, ``iterator``, ``headers()``, and ``cancelled``
    (an event set when the action timed out).  The function returns the result
    (any JSON value; ``bytes`` are treated like an HTTP body, an
    ``isolde.isolates.Response`` like a whole reply) or raises
    ``isolde.WorkflowError(code, message)`` for a catchable error.  It runs in
    its own thread so the action's timeout holds; a function that ignores
    ``cancelled`` keeps running in the background after a timeout.
    """

    types = ("python",)

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(engine, function, base_dir)
        self.target = str(function.get("call", ""))
        self._fn: Callable[..., Any] | None = None
        self._lock = threading.Lock()
        self._inflight: set[ActionRequest] = set()

    def cancel_inflight(self, instance_id: str | None = None) -> None:
        """Set ``request.cancelled`` of calls under way (all, or one instance's): a
        callable that polls it stops early."""
        with self._lock:
            for request in self._inflight:
                if instance_id is None or request.instance_id == instance_id:
                    request.cancelled.set()

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        return f"python:{function.get('call')}"

    def describe(self) -> str:
        return f"python function {self.target}"

    def _load(self) -> Callable[..., Any]:
        if self._fn is not None:
            return self._fn
        with self._lock:
            if self._fn is None:
                module_name, sep, attr = self.target.partition(":")
                if not sep or not module_name or not attr:
                    raise WorkflowError(UNAVAILABLE_CODE, f"python function {self.target!r}: write call as \"module:function\"")
                try:
                    obj: Any = importlib.import_module(module_name)
                    for part in attr.split("."):
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise WorkflowError(
                        UNAVAILABLE_CODE,
                        f"python function {self.target!r} cannot be loaded: {exc} (the module must be importable: "
                        "installed, or on PYTHONPATH)",
                    ) from None
                if not callable(obj):
                    raise WorkflowError(UNAVAILABLE_CODE, f"python function {self.target!r} is not callable")
                self._fn = obj
        return self._fn

    def call(self, request: ActionRequest) -> Response:
        fn = self._load()
        outcome: list[Any] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append(("ok", fn(request.input, request)))
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(("error", exc))
            finally:
                done.set()

        with self._lock:
            self._inflight.add(request)
        try:
            threading.Thread(target=work, name=f"isolde-python-{self.target}", daemon=True).start()
            if not done.wait(request.remaining()):
                request.cancelled.set()
                raise ActionTimeout(self.describe(), request.timeout)
        finally:
            with self._lock:
                self._inflight.discard(request)
        kind, value = outcome[0]
        if kind == "error":
            if isinstance(value, WorkflowError):
                raise value
            raise InstanceFailure(f"{self.describe()} raised {type(value).__name__}: {value}", code="isolde.isolate.failed")
        if isinstance(value, Response):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Response(200, {}, bytes(value), "OK")
        return Response.of(value)


# --------------------------------------------------------------------------- subflow


def resolve_subflow(name: str, parent: Workflow) -> Path:
    """Where ``workflow:`` of a subflow points: relative to the parent workflow file's
    directory, or with a leading ``/`` to the namespace root
    (``isolde.workflow.namespace_root``), never outside that root; ``.yaml`` /
    ``.yml`` may be left out."""
    from isolde.workflow import inside_root

    first = inside_root(parent, name, what="subflow")
    for candidate in (first, first.with_name(first.name + ".yaml"), first.with_name(first.name + ".yml")):
        if candidate.is_file():
            return candidate
    return first


class SubflowRunner(Runner):
    """``type: subflow``: runs ``workflow`` as a child instance in the same namespace.

    The child gets the action input as its input; its output becomes
    ``.return``; its failure fails the action with the child's code (catchable).
    Children nest at most ``[limits] max_subflow_depth`` deep
    (``direktiv.limits.depth``).  The child runs in the caller's thread, so a
    state ``timeout`` does not cut it off; the child's own states' timeouts apply.
    """

    types = ("subflow",)
    uses_folder = False

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        return "subflow"

    def describe(self) -> str:
        return "subflow"

    def call(self, request: ActionRequest) -> Response:
        ctx = request.ctx
        if ctx is None:
            raise IsoldeError("a subflow call needs the calling state's context")
        name = str(request.function.get("workflow", ""))
        path = resolve_subflow(name, ctx.workflow)
        engine = ctx.engine
        hub = isolates_for(engine)
        depth = hub.depth.get(ctx.instance_id, 0) + 1
        limit = int(engine.config.limit("max_subflow_depth"))
        if depth > limit:
            raise WorkflowError(
                "direktiv.limits.depth",
                f"subflow '{name}' would nest {depth} deep, over the limit of {limit} "
                "(raise [limits] max_subflow_depth in isolde.toml)",
            )
        root = ctx.workflow.root
        try:
            if root is not None:  # daemon mode: the child is the workflow its path names
                wid = path.relative_to(root).with_suffix("").as_posix()
                workflow = engine.load(path, workflow_id=wid)
                workflow.id, workflow.root = wid, root
            else:
                workflow = engine.load(path)
        except FileNotFoundError:
            raise WorkflowError(
                "isolde.subflow.notFound",
                f"subflow '{name}' not found: looked for {path} (relative names start at the calling "
                "workflow's directory, a leading / at the namespace root)",
            ) from None
        except ValidationError as exc:
            first = exc.diagnostics[0] if exc.diagnostics else exc
            raise WorkflowError("isolde.subflow.invalid", f"subflow '{name}' is not a valid workflow: {first}") from None
        child = str(uuid.uuid4())
        hub.depth[child] = depth
        try:
            if request.background:
                # Fire and forget: the parent may have ended and its engine begun to close,
                # which makes engine.run refuse new instances; a child started before that
                # still runs to its end (the isolates hub waits for it before the store closes).
                from isolde.instance import run_instance

                data = engine.instance_input(request.input)
                result = run_instance(engine, workflow, data, namespace=ctx.namespace, instance_id=child, sink=engine.log_sink)
            else:
                result = engine.run(workflow, input=request.input, namespace=ctx.namespace, instance_id=child)
        finally:
            hub.depth.pop(child, None)
        if not result.ok:
            err = result.error
            code, message = (err.code, err.message) if err is not None else ("isolde.subflow.failed", "failed")
            raise WorkflowError(code, message)
        return Response.of(result.output)


# --------------------------------------------------------------------------- images


def image_lookup(images: Mapping[str, Any], name: str) -> tuple[str, Mapping[str, Any]] | None:
    """``[images."NAME"]`` for an image or service: the exact name first, then
    without its tag or digest (``direktiv/greeting:v4`` -> ``direktiv/greeting``)."""
    entry = images.get(name)
    if isinstance(entry, dict):
        return name, entry
    base = name.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        base = base[:colon]
    entry = images.get(base)
    if isinstance(entry, dict):
        return base, entry
    return None


def unmapped_message(function: Mapping[str, Any]) -> str:
    """Exactly what to write in isolde.toml to run an ``image:`` / ``service:`` function."""
    field = "image" if function.get("image") else "service"
    name = str(function.get(field, ""))
    table = json.dumps(name)
    return (
        f"function '{function.get('id', '?')}' uses {field} {table}, which isolde cannot run by itself: "
        f"map it in isolde.toml with [images.{table}] and either "
        f'command = ["python3", "my_isolate.py"] (a program isolde starts; it serves Direktiv\'s protocol on $PORT) '
        f'or url = "http://127.0.0.1:8080/" (an isolate already listening there, e.g. the container run by hand); '
        "or install a container-runner plugin"
    )


class ImageRunner(Runner):
    """Direktiv's ``image:`` / ``service:`` functions, run as ``[images."NAME"]`` in isolde.toml says.

    The mapping's ``command`` starts a program like ``type: process`` (in the
    config file's directory, with the mapping's ``env`` plus the function's
    ``envs``); its ``url`` calls an isolate like ``type: http``.  An unmapped
    image still validates; its action fails with a message saying how to map it.
    """

    types = IMAGE_TYPES

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(engine, function, base_dir)
        self.name = str(function.get("image") or function.get("service") or "")
        self._target: Runner | None = None

    def describe(self) -> str:
        return f"image {self.name!r}"

    def _resolve(self) -> Runner:
        if self._target is not None:
            return self._target
        config = self.engine.config
        found = image_lookup(config.data.get("images", {}) or {}, self.name)
        if found is None:
            raise WorkflowError("isolde.image.unmapped", unmapped_message(self.function))
        mapped, entry = found
        hub = isolates_for(self.engine)
        config_dir = config.path.parent.resolve() if config.path else Path.cwd()
        if "url" in entry:
            fn = {"id": self.function.get("id"), "type": "http", "url": entry["url"]}
            self._target = hub.shared(HttpRunner.key(fn, config_dir), lambda: HttpRunner(self.engine, fn, config_dir))
        else:
            env = {**_env(entry.get("env"), f"[images.{json.dumps(mapped)}]"),
                   **_env(self.function.get("envs"), f"function '{self.function.get('id')}'")}
            fn = {"id": self.function.get("id"), "name": mapped, "type": "process",
                  "command": entry["command"], "env": env, "port": entry.get("port")}
            self._target = hub.shared(ProcessRunner.key(fn, config_dir), lambda: ProcessRunner(self.engine, fn, config_dir))
        return self._target

    def call(self, request: ActionRequest) -> Response:
        return self._resolve().call(request)


def check_images(config: Config) -> None:
    """``[images."NAME"]`` tables: exactly one of ``command`` / ``url``, plus optional ``env`` and ``port``."""
    where = str(config.path) if config.path else "config"
    images = config.data.get("images", {})
    if not isinstance(images, dict):
        raise ConfigError(f"{where}: [images] must be a table of [images.\"NAME\"] tables")
    for name, entry in images.items():
        label = f"{where}: [images.{json.dumps(name)}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} must be a table with command = [...] or url = \"...\"")
        for key in entry:
            if key not in _IMAGE_KEYS:
                raise ConfigError(f"{label}: unknown setting {key!r} (known: {', '.join(_IMAGE_KEYS)})")
        if ("command" in entry) == ("url" in entry):
            raise ConfigError(f"{label} needs exactly one of command = [\"program\", \"arg\"] or url = \"http://127.0.0.1:PORT/\"")
        if "command" in entry:
            _command(entry["command"], label)
        if "url" in entry:
            if not isinstance(entry["url"], str):
                raise ConfigError(f"{label}: url must be a string like \"http://127.0.0.1:8080/\", got {entry['url']!r}")
            try:
                parse_url(entry["url"])
            except ConfigError as exc:
                raise ConfigError(f"{label}: {exc}") from None
        _env(entry.get("env"), label)
        port = entry.get("port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            raise ConfigError(f"{label}: port must be a number from 1 to 65535, got {port!r}")


@hookimpl
def isolde_isolate_runners() -> list[type[Runner]]:
    return [ProcessRunner, HttpRunner, PythonRunner, SubflowRunner, ImageRunner]


@hookimpl
def isolde_configure(config: Config) -> None:
    check_images(config)


__all__ = [
    "IMAGE_TYPES",
    "HttpRunner",
    "ImageRunner",
    "ProcessRunner",
    "PythonRunner",
    "SubflowRunner",
    "image_lookup",
    "resolve_subflow",
    "unmapped_message",
]
