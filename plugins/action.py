"""The ``action`` state and the function types it calls (SPEC §4).

One action, start to end (:func:`perform`):

1. the input is evaluated against the state data (plus ``.secrets`` when the
   action names secrets; without ``input`` the whole data is sent, as Direktiv);
2. the function is resolved to an isolate runner (``isolde.isolates``);
3. for an isolate: a fresh action folder gets the ``files`` (function-level
   ones of the v0.3 era, then action-level ones), the sidecar grants an action
   id (starting the sidecar on first use), and the ``out/`` watcher starts if
   the call is still running after ``WATCH_AFTER`` (a fast call is only swept);
4. the isolate is called (SPEC §4.2); a matching catchable error is retried
   (``retries``: delay x multiplier^n, then ``direktiv.retries.exceeded``);
5. after a result ``out/<scope>/`` is collected and staged with the state, so it
   commits atomically with the state's other effects; after a catchable error
   it is committed at once (one transaction) before the error goes to
   ``catch``; after a timeout or an uncatchable failure nothing is committed;
6. the action id is revoked and the folder removed (by a background thread),
   whatever happened.

``perform`` is public so other state types that call functions (``foreach``,
``parallel``) run actions exactly the same way.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets as _secrets
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from isolde import StateContext, StateSpec, StateType, Workflow, hookimpl
from isolde.errors import InstanceFailure, IsoldeError, WorkflowError
from isolde.expr import Expr
from isolde.workflow import inside_root
from isolde.isolates import TIMEOUT_CODE, ActionRequest, ActionSettings, ActionTimeout, Runner, interpret, isolates_for
from isolde.store import InvalidKey, Variable, check_key
from isolde.validate import Report

if TYPE_CHECKING:
    from isolde.config import Config

Stage = Callable[[str, str, Any, str], None]
"""Where collected ``out/`` variables go: ``(scope, key, data, mime)``; ``ctx.set`` by default."""

WATCH_AFTER = 0.05
"""Seconds a call runs before its ``out/`` watcher starts (a faster call is swept only)."""

RETRY_DEFAULT_DELAY = 5.0
"""Seconds before a retry when ``retries`` gives no ``delay`` (Direktiv's default)."""

FILE_SCOPES = ("instance", "workflow", "namespace", "thread", "file")

SCHEMA = """
state action "Calls a function (an isolate, a subflow, ...) and places its result at .return." {
    action!: action        "What to call, with which input."
    async: bool = false    "Start the call and go on at once, without its result (fire and forget; meant for subflows)."
}
struct action "One call of a function." {
    function!: funcid      "The id of a function declared in `functions`."
    input: jx              "The input sent to the function, evaluated against the state data (default: the whole state data)."
    secrets: [string]      "Secrets placed at .secrets.NAME while `input` is evaluated (from [secrets] in isolde.toml or $ISOLDE_SECRET_NAME)."
    retries: retries       "Call again when the call fails with a matching error code."
    files: [file]          "Variables written into the action folder before the call (Knative era; added to the function's files)."
}
struct retries "Retry policy of an action." {
    max_attempts!: int     "How many times to call again after the first failure; then direktiv.retries.exceeded."
    delay: duration        "Wait before the first retry (default PT5S)."
    multiplier: number     "Each further retry waits this many times longer than the one before (default 1)."
    codes!: [string]       "Error codes to retry: regular expressions searched in the code (\\"*\\" or \\".*\\" match any)."
}
struct file "A variable written into the action folder before the call." {
    key!: varkey | string  "The variable's key (for scope file: a path relative to the workflow's directory)."
    scope: "instance" | "workflow" | "namespace" | "thread" | "file" = "instance"  "Where the variable lives; thread means instance; file is a file beside the workflow."
    as: relpath            "The file or directory name in the action folder (default: the key)."
    type: "plain" | "base64" | "tar" | "tar.gz" = "plain"  "plain: the bytes; base64: decoded; tar / tar.gz: unpacked into a directory."
    permissions: string    "Octal mode of the written file, e.g. \\"0755\\"."
}
"""

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


# --------------------------------------------------------------------------- compiled actions


@dataclass(slots=True)
class FileItem:
    """One ``files:`` entry, ready to resolve against the state data."""

    key: str | Expr
    scope: str
    as_: str | None
    type: str
    permissions: int | None


@dataclass(slots=True)
class ActionSpec:
    """An action definition compiled at load time (precomputed once per workflow)."""

    function_id: str
    function: Mapping[str, Any]
    input: Expr | None
    secrets: tuple[str, ...]
    files: tuple[FileItem, ...]
    retry_max: int = 0
    retry_delay: float = RETRY_DEFAULT_DELAY
    retry_multiplier: float = 1.0
    retry_codes: tuple[re.Pattern[str], ...] = ()
    base_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls, action: Mapping[str, Any], workflow: Workflow, report: Report | None = None, path: tuple[Any, ...] = ()
    ) -> ActionSpec:
        """Compile the validated fields of an ``action`` mapping (report bad retry patterns at ``path``)."""
        fid = action["function"]
        function = workflow.functions[fid]
        files = [_file_item(f) for f in function.get("files") or ()]
        files += [_file_item(f) for f in action.get("files") or ()]
        spec = cls(
            function_id=fid,
            function=function,
            input=action.get("input"),
            secrets=tuple(action.get("secrets") or ()),
            files=tuple(files),
            base_dir=workflow_dir(workflow),
        )
        retries = action.get("retries")
        if retries:
            spec.retry_max = int(retries["max_attempts"])
            spec.retry_delay = float(retries.get("delay", RETRY_DEFAULT_DELAY))
            spec.retry_multiplier = float(retries.get("multiplier") or 1.0)
            codes = []
            for i, pattern in enumerate(retries["codes"]):
                text = ".*" if pattern == "*" else pattern
                try:
                    codes.append(re.compile(text))
                except re.error as exc:
                    if report is not None:
                        report.error(path + ("retries", "codes", i), f"invalid regular expression {pattern!r}: {exc}")
            spec.retry_codes = tuple(codes)
            if spec.retry_max < 0 and report is not None:
                report.error(path + ("retries", "max_attempts"), "max_attempts must be 0 or more")
        return spec


def _file_item(f: Mapping[str, Any]) -> FileItem:
    perms = f.get("permissions")
    mode: int | None = None
    if perms is not None:
        try:
            mode = int(str(perms), 8)
        except ValueError:
            mode = -1  # reported when the action runs (validation stays lenient, as Direktiv's)
    return FileItem(f["key"], f.get("scope") or "instance", f.get("as"), f.get("type") or "plain", mode)


def workflow_dir(workflow: Workflow) -> Path | None:
    name = workflow.filename
    if not name or name.startswith("<"):
        return None  # loaded from a string: relative paths resolve in the current directory
    return Path(os.path.abspath(name)).parent


# --------------------------------------------------------------------------- the state


class Action(StateType):
    name = "action"
    schema = SCHEMA
    example = """
- id: greet
  type: action
  action:
    function: greeter
    input:
      name: 'jq(.name)'
    retries:
      max_attempts: 3
      delay: PT1S
      codes: ['greeter.busy']
  timeout: PT30S
  catch:
  - error: 'greeter.*'
    transition: report
  transform: 'jq({greeting: .return.greeting})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["spec"] = ActionSpec.build(state.fields["action"], workflow, report, state.path + ("action",))

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        spec: ActionSpec = state.extra["spec"]
        timeout = state.fields.get("timeout")
        if state.fields.get("async"):
            start_async(ctx, spec, data, timeout=timeout)
            return data
        result = perform(ctx, spec, data, timeout=timeout)
        return {**data, "return": result}


# --------------------------------------------------------------------------- performing an action


def perform(
    ctx: StateContext,
    spec: ActionSpec,
    data: dict[str, Any],
    *,
    timeout: float | None = None,
    iterator: int | None = None,
    stage: Stage | None = None,
    flush: Callable[[], None] | None = None,
    background: bool = False,
    deadline: float | None = None,
) -> Any:
    """Run one action (with its retries) and return its result (``.return``).

    ``deadline`` (``time.monotonic()``), when given, bounds the whole action, retries
    and their pauses included (foreach / parallel pass their state's): no attempt
    runs past it, and a retry that could not start before it is a timeout.

    ``timeout`` is the state's (seconds); without it ``[actions] timeout``; never
    beyond the workflow's next timeout (``ctx.time_left()``).
    ``iterator`` is sent as ``Direktiv-Iterator`` (foreach / parallel).
    Collected ``out/`` variables go to ``stage`` (default ``ctx.set``: they
    commit with the state); after a catchable error they are staged and then
    ``flush`` is called (default ``ctx.commit``), because a failing state
    commits nothing itself.  Raises ``WorkflowError`` / ``InstanceFailure``.
    """
    hub = isolates_for(ctx.engine)
    settings = hub.settings
    source = _with_secrets(ctx, spec, data) if spec.secrets else data
    value = source if spec.input is None else spec.input.eval(source)
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    runner = hub.runner(spec.function, spec.base_dir or Path.cwd())
    attempt = 0
    while True:
        limit = timeout if timeout else settings.timeout
        left = None if background else ctx.time_left()  # the workflow's timeouts cut a call (and its retries) short
        if left is not None and left < limit:
            limit = max(left, 0.001)
        if deadline is not None:
            limit = min(limit, max(deadline - time.monotonic(), 0.001))
        try:
            return _call_once(
                ctx, spec, runner, value, body, limit, iterator, stage or ctx.set, flush or ctx.commit, source, background
            )
        except WorkflowError as exc:
            if not (spec.retry_codes and exc.catchable and any(p.search(exc.code) for p in spec.retry_codes)):
                raise
            if left is not None and (ctx.time_left() or 0.0) <= 0:  # the workflow's timeout is due: no retry
                raise
            if attempt >= spec.retry_max:
                raise WorkflowError(
                    "direktiv.retries.exceeded",
                    f"maximum retries exceeded ({spec.retry_max}) calling function '{spec.function_id}'; "
                    f"last error {exc.code}: {exc.msg}",
                ) from None
            pause = spec.retry_delay * spec.retry_multiplier**attempt
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise WorkflowError(
                    TIMEOUT_CODE,
                    f"the state's timeout leaves no time to retry function '{spec.function_id}' "
                    f"(last error {exc.code}: {exc.msg})",
                ) from None
            attempt += 1
            ctx.log(f"action '{spec.function_id}' failed with {exc.code}; retry {attempt} of {spec.retry_max} in {pause:g}s")
            time.sleep(pause)


def _call_once(
    ctx: StateContext,
    spec: ActionSpec,
    runner: Runner,
    value: Any,
    body: bytes,
    timeout: float,
    iterator: int | None,
    stage: Stage,
    flush: Callable[[], None],
    source: dict[str, Any],
    background: bool,
) -> Any:
    wf = ctx.workflow
    step = ctx.step
    if not runner.uses_folder:
        request = ActionRequest(
            body=body, input=value, action_id=_secrets.token_urlsafe(16), namespace=ctx.namespace,
            workflow=wf.id, instance_id=ctx.instance_id, step=step, timeout=timeout, function=spec.function,
            iterator=iterator, ctx=ctx, background=background,
        )
        return interpret(runner.call(request), runner.describe())

    from isolde.files import ActionFolders, ArchiveLimits
    from isolde.sidecar import SidecarError

    hub = isolates_for(ctx.engine)
    settings: ActionSettings = hub.settings

    def folders() -> ActionFolders:  # one per engine: its first folder sweeps those of dead processes
        return ActionFolders(
            base=settings.temp_dir, limits=ArchiveLimits.from_config(ctx.engine.config), keep=settings.keep_folders
        )

    try:
        maker = ctx.engine.resource("isolde.actionfolders", folders)
    except IsoldeError:  # the engine is closing under a background action: no sweep now
        maker = folders()
    folder = maker.new(max_variable_bytes=ctx.max_variable_bytes)
    aid: str | None = None
    watch: _DeferredWatch | None = None
    try:
        files = _file_specs(ctx, spec, source)
        folder.write_files(files, _opener(ctx))
        try:
            aid = hub.sidecar.grant(ctx.namespace, wf.id, ctx.instance_id, ctx.log)
            sidecar = hub.sidecar.address
        except SidecarError as exc:
            raise WorkflowError("isolde.sidecar.unavailable", str(exc)) from None
        watch = _DeferredWatch(folder, hub.watcher)
        hub.later.call_later(WATCH_AFTER, watch.start)
        request = ActionRequest(
            body=body, input=value, action_id=aid, namespace=ctx.namespace, workflow=wf.id,
            instance_id=ctx.instance_id, step=step, timeout=timeout, function=spec.function,
            temp_dir=str(folder.path), sidecar=sidecar, iterator=iterator, ctx=ctx, background=background,
        )
        try:
            try:
                response = runner.call(request)
            finally:
                watch.finish()
            result = interpret(response, runner.describe())
        except ActionTimeout:
            raise
        except WorkflowError as exc:
            if exc.catchable:
                _flush_outputs(ctx, folder, exc, stage, flush)
            raise
        except IsoldeError as exc:  # e.g. the engine closed under a background action
            raise InstanceFailure(str(exc), code="isolde.isolate.failed") from None
        for out in folder.collect_outputs():
            stage(out.scope, out.key, out.view(), out.mime)  # big values stay mapped, never copied
        return result
    finally:
        if watch is not None:
            watch.finish()
        if aid is not None:
            hub.sidecar.revoke(aid)
            _note_instance_vars(ctx)
        hub.reaper.put(folder.close)  # removing the tree is disk work the instance need not wait for


class _DeferredWatch:
    """Starts the folder's ``out/`` watcher if the call is still running after
    ``WATCH_AFTER`` seconds, never after the call returned (see ``Scheduler``)."""

    __slots__ = ("folder", "watcher", "lock", "done")

    def __init__(self, folder: Any, watcher: Any) -> None:
        self.folder = folder
        self.watcher = watcher
        self.lock = threading.Lock()
        self.done = False

    def start(self) -> None:
        with self.lock:
            if not self.done:
                try:
                    self.folder.start_watch(self.watcher)
                except Exception:  # only an optimisation: the sweep after the call is authoritative
                    pass

    def finish(self) -> None:
        with self.lock:  # waits for a start under way, so collect stops what it started
            self.done = True


def _flush_outputs(ctx: StateContext, folder: Any, error: WorkflowError, stage: Stage, flush: Callable[[], None]) -> None:
    """After a catchable error, what the isolate left in ``out/`` is committed at once
    (one transaction, SPEC §4.3), since the failing state commits nothing itself."""
    try:
        outputs = folder.collect_outputs()
    except WorkflowError as exc:
        ctx.log(f"out/ not stored after error {error.code}: {exc.code}: {exc.msg}")
        return
    if outputs:
        for out in outputs:
            stage(out.scope, out.key, out.view(), out.mime)
        flush()


def _note_instance_vars(ctx: StateContext) -> None:
    """Instance variables the isolate may have written through the sidecar must end
    with the instance; ending an instance that has none costs one read transaction."""
    ctx.owns_instance_variables()


# --------------------------------------------------------------------------- files


def _file_specs(ctx: StateContext, spec: ActionSpec, data: dict[str, Any]) -> list[Any]:
    from isolde.files import FileSpec

    out = []
    for i, item in enumerate(spec.files):
        key = item.key
        if isinstance(key, Expr):
            key = key.eval(data)
            if not isinstance(key, str):
                raise WorkflowError("direktiv.var.invalidKey", f"files[{i}]: computed key must be a string, got {key!r}")
        scope = "instance" if item.scope == "thread" else item.scope
        if scope != "file":
            try:
                check_key(key)
            except InvalidKey as exc:
                raise WorkflowError("direktiv.var.invalidKey", f"files[{i}] of function '{spec.function_id}': {exc}") from None
        elif not key or "\x00" in key:
            raise WorkflowError("direktiv.var.invalidKey", f"files[{i}]: scope file needs a path as key")
        if item.permissions == -1:
            raise WorkflowError("direktiv.var.invalidPermissions", f"files[{i}]: permissions must be octal digits like \"0755\"")
        name = item.as_ or (key.lstrip("/") if scope == "file" else key)
        out.append(FileSpec(key, scope=scope, as_=name, type=item.type, mode=item.permissions))
    return out


def read_file_scope(workflow: Workflow, key: str, max_bytes: int) -> Variable | None:
    """The bytes of a ``scope: file`` key as a variable (None when there is no such
    file, which a getter reads as null and ``files:`` writes as an empty file).

    The key resolves inside the namespace root (``isolde.workflow.inside_root``);
    only a regular file is read (no symlink at the end, no FIFO or device), and at
    most ``max_bytes`` of it, whatever its size claims."""
    path = inside_root(workflow, "/" + key.lstrip("/"), what="file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise WorkflowError("isolde.files.unsafePath", f"file {key!r}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                return None
            raise WorkflowError("isolde.files.unsafePath", f"file {key!r} is not a regular file")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise WorkflowError(
                    "direktiv.limits.variable",
                    f"file {key!r} is over the {max_bytes}-byte limit (raise [limits] max_variable_bytes in isolde.toml)",
                )
            chunks.append(chunk)
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    return Variable(blob, "application/octet-stream", len(blob), st.st_mtime, st.st_mtime, 0)


class _MemoryValue(io.BytesIO):
    """A value held in memory as the readable stream ``files:`` reads (``mime``, ``size``)."""

    def __init__(self, data: bytes, mime: str) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)


def _opener(ctx: StateContext) -> Callable[[str, str], Any]:
    """``open_value(scope, key)`` for ``ActionFolder.write_files``: the value as a
    readable stream, or None when the variable is missing."""

    def open_value(scope: str, key: str) -> Any:
        if scope == "file":
            var = read_file_scope(ctx.workflow, key, ctx.max_variable_bytes)
            return None if var is None else _MemoryValue(var.data, var.mime)
        return _open_stored(ctx.store, ctx.ref(scope, key))

    return open_value


class _FileValue(io.BufferedReader):  # TEMP until store.open lands
    def __init__(self, raw: io.FileIO, mime: str, size: int) -> None:
        super().__init__(raw, buffer_size=1 << 20)
        self.mime = mime
        self.size = size


def _open_stored(store: Any, ref: Any) -> Any:  # TEMP until store.open lands
    """``store.open(ref)`` where the store has it; else the same result built from
    the store as it is: a value kept in LMDB in memory, a blob streamed from its file
    (found as ``LmdbStore.read_into`` finds it, read again if a writer replaced it)."""
    opener = getattr(store, "open", None)
    if opener is not None:
        return opener(ref)
    kb = store._kb(ref)
    for _ in range(8):
        got = store._read(store._get_body, kb)
        if got is None:
            return None
        if isinstance(got, Variable):
            return _MemoryValue(bytes(got.data), got.mime)
        try:
            return _FileValue(io.FileIO(store._blob_path(got.name), "rb"), got.mime, got.size)
        except FileNotFoundError:
            continue  # replaced meanwhile: read the new record
    var = store.get(ref)  # rewritten all the time: take one whole snapshot
    return None if var is None else _MemoryValue(bytes(var.data), var.mime)


# --------------------------------------------------------------------------- secrets and async


def _with_secrets(ctx: StateContext, spec: ActionSpec, data: dict[str, Any]) -> dict[str, Any]:
    """``.secrets.NAME`` for the input: ``[secrets] NAME`` in isolde.toml, else ``$ISOLDE_SECRET_NAME``."""
    table = ctx.engine.config.data.get("secrets", {}) or {}
    found: dict[str, Any] = {}
    for name in spec.secrets:
        if name in table:
            found[name] = table[name]
            continue
        env = os.environ.get("ISOLDE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper())
        if env is None:
            raise WorkflowError(
                "direktiv.secrets.notFound",
                f"secret '{name}' is not set: add {name} = \"...\" under [secrets] in isolde.toml "
                f"or set $ISOLDE_SECRET_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}",
            )
        found[name] = env
    return {**data, "secrets": found}


def start_async(ctx: StateContext, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None) -> None:
    """``async: true``: start the call in the background and go on.  Its result and
    ``out/`` files are dropped; errors go to the instance log.  The engine waits
    for background actions when it closes."""
    hub = isolates_for(ctx.engine)
    source = _with_secrets(ctx, spec, data) if spec.secrets else data
    snapshot = json.loads(json.dumps(source))  # the state goes on with its data; the call keeps its own

    def drop(scope: str, key: str, blob: Any, mime: str) -> None:
        pass

    def nothing() -> None:
        pass

    def background() -> None:
        try:
            perform(ctx, spec, snapshot, timeout=timeout, stage=drop, flush=nothing, background=True)
        except WorkflowError as exc:
            ctx.log(f"async action '{spec.function_id}' failed: {exc.code}: {exc.msg}")
        except Exception as exc:  # never lose a background failure silently
            ctx.log(f"async action '{spec.function_id}' failed: {type(exc).__name__}: {exc}")

    hub.submit(background)
    ctx.log(f"action '{spec.function_id}' started in the background (async)")


# --------------------------------------------------------------------------- hooks


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Action]


@hookimpl
def isolde_declarations() -> str:
    return FUNCTIONS


@hookimpl
def isolde_configure(config: Config) -> None:
    """Check [actions], [images] and [sidecar] at engine start, so a typo there is one
    clear error before any workflow runs, not a failure in the middle of one."""
    from isolde.sidecar import sidecar_settings

    ActionSettings.from_config(config)
    sidecar_settings(config)


__all__ = ["Action", "ActionSpec", "FileItem", "FILE_SCOPES", "perform", "read_file_scope", "start_async", "workflow_dir"]
