"""The built-in isolate runners: ``process``, ``http``, ``python``, ``subflow`` and Direktiv's images.

Each is an ``isolde.isolates.Runner`` registered through ``isolde_isolate_runners``,
the same hook a third-party package uses (a container runner, say).  The fields
of each function type are declared here too (``FUNCTIONS``).

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
import os
import shlex
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from isolde.plugin import (
    UNAVAILABLE_CODE,
    ActionRequest,
    ActionTimeout,
    Config,
    ConfigError,
    ErrorReply,
    HttpIsolate,
    InstanceFailure,
    IsoldeError,
    Response,
    Runner,
    RunnerHost,
    WorkflowError,
    hookimpl,
    parse_url,
)

FUNCTIONS = """
struct envvar "An environment variable of an isolate." {
    name!: string
    value: string | number | bool
}
function isolated "A container image (Direktiv v0.3-v0.6 isolated function); isolde runs it as [images.\\"NAME\\"] in isolde.toml maps it." {
    image!: string         "The image; map it in isolde.toml: [images.\\"NAME\\"] with command = [...] or url = \\"...\\"."
    cmd: string            "Direktiv's command override (isolde runs what the mapping says)."
    size: "small" | "medium" | "large"  "Direktiv's resource size (ignored by isolde)."
    scale: int             "Direktiv's minimum scale (ignored by isolde)."
    files: [file]          "Variables written into the action folder before each call (v0.3 era)."
    envs: [envvar]         "Environment variables for the isolate's process."
}
function reusable "A container image kept running between calls (Direktiv v0.3-v0.6); mapped like isolated." {
    image!: string         "The image; map it in isolde.toml: [images.\\"NAME\\"]."
    cmd: string            "Direktiv's command override (ignored)."
    size: "small" | "medium" | "large"  "Direktiv's resource size (ignored)."
    scale: int             "Direktiv's minimum scale (ignored)."
    files: [file]          "Variables written into the action folder before each call."
    envs: [envvar]         "Environment variables for the isolate's process."
}
function knative-workflow "A container image of this workflow (Direktiv v0.6+); mapped like isolated." {
    image!: string         "The image; map it in isolde.toml: [images.\\"NAME\\"]."
    cmd: string            "Direktiv's command override (ignored)."
    size: "small" | "medium" | "large"  "Direktiv's resource size (ignored)."
    envs: [envvar]         "Environment variables for the isolate's process."
    patches: any           "Direktiv's Knative service patches (ignored)."
    files: [file]          "Variables written into the action folder before each call."
}
function knative-namespace "A service of the namespace (Direktiv v0.4+); map its name in isolde.toml [images.\\"NAME\\"]." {
    service!: string       "The service's name or path."
    files: [file]          "Variables written into the action folder before each call."
}
function knative-global "A service shared by all namespaces (Direktiv v0.4+); map its name in isolde.toml [images.\\"NAME\\"]." {
    service!: string       "The service's name."
    files: [file]          "Variables written into the action folder before each call."
}
function knative-system "A system service of Direktiv (v0.8.6+); map its name in isolde.toml [images.\\"NAME\\"]." {
    service!: string       "The service's name."
    files: [file]          "Variables written into the action folder before each call."
}
function subflow "Another workflow of the namespace, run as a child instance." {
    workflow!: string      "Its file, relative to this workflow's directory (a leading / means the namespace root; .yaml may be left out)."
}
function process "A program isolde starts and calls over HTTP (it listens on $PORT)." {
    command!: [string] | string  "The program and its arguments, run in the workflow's directory."
    port: int              "A fixed port instead of a free one."
    env: {string}          "Extra environment variables."
    files: [file]          "Variables written into the action folder before each call."
}
function http "An isolate already listening at a URL (e.g. a container you started)." {
    url!: string           "Where to POST, e.g. http://127.0.0.1:8080/."
    files: [file]          "Variables written into the action folder before each call."
}
function python "A Python callable run in-process, function(input, request) (for embedding)." {
    call!: string          "module:function; the module must be importable."
    files: [file]          "Variables written into the action folder before each call."
}
"""


IMAGE_TYPES = ("isolated", "reusable", "knative-workflow", "knative-namespace", "knative-global", "knative-system")
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

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(host, function, base_dir)
        name = str(function.get("name") or function.get("id") or "process")
        where = f"function '{name}'"
        settings = host.settings
        from isolde.plugin import IsolateProcess, stderr_line  # the process machinery, once a function needs it

        self.process = IsolateProcess(
            _command(function.get("command"), where),
            name=name,
            cwd=base_dir,
            env=_env(function.get("env"), where),
            port=function.get("port"),
            startup_timeout=settings.startup_timeout,
            output=stderr_line,
            base_env=settings.isolate_environment(dict(os.environ)),
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

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(host, function, base_dir)
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

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(host, function, base_dir)
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
            if request.stopped():  # decided before the call was registered: not started at all
                raise InstanceFailure(f"{self.describe()}: the state no longer needs this call; it was not made",
                                      code="isolde.cancelled")
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
                raise ErrorReply(value.code, value.msg) if value.catchable else value
            raise InstanceFailure(f"{self.describe()} raised {type(value).__name__}: {value}", code="isolde.isolate.failed")
        if isinstance(value, Response):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Response(200, {}, bytes(value), "OK")
        return Response.of(value)


# --------------------------------------------------------------------------- subflow


class SubflowRunner(Runner):
    """``type: subflow``: runs ``workflow`` as a child instance in the same namespace.

    The child gets the action input as its input; its output becomes
    ``.return``; its failure fails the action with the child's code (catchable).
    Children nest at most ``[limits] max_subflow_depth`` deep
    (``direktiv.limits.depth``).  The child runs in the caller's thread with the
    call's timeout as its deadline (then ``direktiv.cancels.timeout.soft``).
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
        timeout = None if request.background else request.timeout
        return Response.of(ctx.run_subflow(name, request.input, background=request.background, timeout=timeout))


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

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(host, function, base_dir)
        self.name = str(function.get("image") or function.get("service") or "")
        self._target: Runner | None = None

    def describe(self) -> str:
        return f"image {self.name!r}"

    @classmethod
    def config_warning(cls, function: Mapping[str, Any], config: Any) -> str | None:
        """What ``isolde validate`` warns about: an image or service with no ``[images]``
        mapping (the workflow is valid; calling the function would fail)."""
        name = str(function.get("image") or function.get("service") or "")
        if image_lookup(config.data.get("images", {}) or {}, name) is not None:
            return None
        return unmapped_message(function)

    def _resolve(self) -> Runner:
        if self._target is not None:
            return self._target
        config = self.host.config
        found = image_lookup(config.data.get("images", {}) or {}, self.name)
        if found is None:
            raise WorkflowError("isolde.image.unmapped", unmapped_message(self.function))
        mapped, entry = found
        hub = self.host
        config_dir = config.path.parent.resolve() if config.path else Path.cwd()
        if "url" in entry:
            fn = {"id": self.function.get("id"), "type": "http", "url": entry["url"]}
            self._target = hub.shared(HttpRunner.key(fn, config_dir), lambda: HttpRunner(self.host, fn, config_dir))
        else:
            env = {**_env(entry.get("env"), f"[images.{json.dumps(mapped)}]"),
                   **_env(self.function.get("envs"), f"function '{self.function.get('id')}'")}
            fn = {"id": self.function.get("id"), "name": mapped, "type": "process",
                  "command": entry["command"], "env": env, "port": entry.get("port")}
            self._target = hub.shared(ProcessRunner.key(fn, config_dir), lambda: ProcessRunner(self.host, fn, config_dir))
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
def isolde_declarations() -> str:
    return FUNCTIONS


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
    "unmapped_message",
]
