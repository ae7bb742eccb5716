"""Isolates: the HTTP call protocol, the runner base class and isolate processes (SPEC §4.1, §4.2).

An *isolate* is a program that serves Direktiv's action protocol: isolde sends
``POST /`` with the action input as JSON and a handful of ``Direktiv-*``
headers, and reads the reply::

    Direktiv-ErrorCode set      -> catchable error (code, Direktiv-ErrorMessage)
    only Direktiv-ErrorMessage  -> uncatchable failure
    non-2xx, no error headers   -> uncatchable failure naming the status
    otherwise                   -> the body is the result (.return): JSON, or
                                   a base64 string when it is not JSON

A *runner* is how a function of a workflow reaches its isolate.  Runners are
plugins (``isolde_isolate_runners``); this module holds what they share:

* :class:`Runner`, the base class (``types`` it serves, ``call(request)``);
* :class:`HttpIsolate`, a runner base that speaks the protocol over HTTP/1.1
  keep-alive with a small connection pool, enforces the deadline and, on a
  timeout, cancels with ``DELETE /`` carrying the action id;
* :class:`IsolateProcess`, one program started with ``$PORT`` and
  ``$DIREKTIV_SIDECAR``, waited for until it accepts connections, restarted if
  it died, and stopped (terminate, then kill) when the engine closes;
* :class:`Isolates`, the per-engine hub (``isolates_for(engine)``) that makes
  one runner per distinct function definition, owns background (``async``)
  actions and the subflow depth table, and closes them all in the right order.

No module globals: everything lives on an engine through ``engine.resource``.
"""

from __future__ import annotations

import base64
import collections
import datetime as _dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Final, Mapping, Sequence

from .errors import ConfigError, InstanceFailure, IsoldeError, WorkflowError

if TYPE_CHECKING:  # http.client and concurrent.futures are imported on first use: the CLI starts faster
    import http.client
    from concurrent.futures import Future, ThreadPoolExecutor

    from .engine import Engine
    from .instance import StateContext
    from .sidecar import Sidecar

__all__ = [
    "ActionSettings",
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "TIMEOUT_CODE",
    "ActionRequest",
    "ActionTimeout",
    "HttpIsolate",
    "IsolateProcess",
    "Isolates",
    "Response",
    "Reaper",
    "Runner",
    "Scheduler",
    "decode_result",
    "interpret",
    "isolates_for",
    "parse_url",
    "rfc3339",
]

DEFAULT_TIMEOUT: Final[float] = 15 * 60.0
"""Seconds an action may take when neither the state nor ``[actions] timeout`` says (Direktiv's default)."""
DEFAULT_STARTUP_TIMEOUT: Final[float] = 10.0
"""Seconds a ``process`` isolate may take to accept connections (``[actions] startup_timeout``)."""
CANCEL_TIMEOUT: Final[float] = 2.0
"""Seconds the ``DELETE /`` that cancels a timed-out action may take."""
STOP_GRACE: Final[float] = 3.0
"""Seconds an isolate process gets to exit after SIGTERM before it is killed."""
POOL_SIZE: Final[int] = 8
"""Idle keep-alive connections kept per runner."""
TIMEOUT_CODE: Final[str] = "direktiv.cancels.timeout.soft"
UNAVAILABLE_CODE: Final[str] = "isolde.isolate.unavailable"
OUTPUT_TAIL: Final[int] = 20
"""Lines of an isolate's output quoted when it fails to start."""

_NO_VALUE: Any = object()


# --------------------------------------------------------------------------- requests and replies


def rfc3339(epoch: float) -> str:
    """``2024-05-01T12:00:00Z``: the form Direktiv's isolates parse (Go's time.RFC3339)."""
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True, eq=False)
class ActionRequest:
    """One call of an isolate: the input and everything the ``Direktiv-*`` headers carry.

    ``deadline`` is wall-clock (``time.time()``) for the header; runners use
    :meth:`remaining`, computed from a monotonic clock, to bound their waits.
    """

    body: bytes
    input: Any
    action_id: str
    namespace: str
    workflow: str
    instance_id: str
    step: int
    timeout: float
    function: Mapping[str, Any]
    temp_dir: str = ""
    sidecar: str = ""
    iterator: int | None = None
    ctx: StateContext | None = None
    """The calling state's context, for runners that act inside the engine (subflow)."""
    background: bool = False
    """True for an ``async`` action: nothing waits for the result."""
    deadline: float = field(init=False)
    _expires: float = field(init=False, repr=False)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set when the action timed out: in-process runners may poll it and stop early."""

    def __post_init__(self) -> None:
        self.deadline = time.time() + self.timeout
        self._expires = time.monotonic() + self.timeout

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self._expires - time.monotonic())

    def headers(self) -> dict[str, str]:
        """The request headers of Direktiv's protocol (plus isolde's ``Direktiv-Sidecar``)."""
        h = {
            "Content-Type": "application/json",
            "Direktiv-ActionID": self.action_id,
            "Direktiv-InstanceID": self.instance_id,
            "Direktiv-Namespace": self.namespace,
            "Direktiv-Workflow": self.workflow,
            "Direktiv-Step": str(self.step),
            "Direktiv-Iterator": str(self.iterator or 0),
            "Direktiv-Deadline": rfc3339(self.deadline),
        }
        if self.temp_dir:
            h["Direktiv-TempDir"] = self.temp_dir
        if self.sidecar:
            h["Direktiv-Sidecar"] = self.sidecar
        return h


@dataclass(slots=True)
class Response:
    """An isolate's reply.  ``headers`` keys are lower-case.

    In-process runners may set ``value`` to hand over a result without
    encoding it to bytes and back.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    reason: str = ""
    value: Any = _NO_VALUE

    @classmethod
    def of(cls, value: Any) -> Response:
        """A successful reply carrying ``value`` as the result."""
        return cls(200, {}, b"", "OK", value)


class ActionTimeout(WorkflowError):
    """The action ran past its deadline (``direktiv.cancels.timeout.soft``, catchable as in Direktiv)."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(
            TIMEOUT_CODE,
            f"{what} did not answer within {_seconds(timeout)} (the state's timeout, else [actions] timeout in isolde.toml)",
        )


def _seconds(value: float) -> str:
    return f"{value:g}s"


def decode_result(body: bytes) -> Any:
    """The body as ``.return``: its JSON value, else a base64 string of the bytes (Direktiv's rule;
    an empty body is not JSON, so it gives ``""``)."""
    if body:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            pass
    return base64.b64encode(body).decode("ascii")


def interpret(response: Response, what: str) -> Any:
    """Apply the reply rules of SPEC §4.2 and return the result (raise for the error cases)."""
    headers = response.headers
    code = headers.get("direktiv-errorcode", "").strip()
    message = headers.get("direktiv-errormessage", "")
    if code:
        raise WorkflowError(code, message or f"{what} reported error {code} without a message")
    if message:
        raise InstanceFailure(f"{what} failed: {message}", code="isolde.isolate.failed")
    if not 200 <= response.status < 300:
        snippet = response.body[:200].decode("utf-8", "replace").strip()
        detail = f": {snippet}" if snippet else ""
        raise InstanceFailure(
            f"{what} answered HTTP {response.status} {response.reason}".rstrip()
            + f" without Direktiv-ErrorCode / Direktiv-ErrorMessage headers{detail}",
            code="isolde.isolate.status",
        )
    if response.value is not _NO_VALUE:
        return response.value
    return decode_result(response.body)


# --------------------------------------------------------------------------- runners


class Runner:
    """Base class of isolate runners (built-in and third-party alike).

    A subclass lists the function ``type`` values it serves in ``types`` and
    implements :meth:`call`.  The hub makes one runner per distinct function
    definition (see :meth:`key`) and per engine, so a runner may keep
    connections or a process between calls; :meth:`close` releases them when
    the engine closes.  Register runners with the ``isolde_isolate_runners``
    hook; the function's fields are declared separately, as
    ``function <type> {...}`` through ``isolde_declarations``.
    """

    types: ClassVar[tuple[str, ...]] = ()
    """The function ``type`` values this runner serves."""

    uses_folder: ClassVar[bool] = True
    """Whether calls get an action folder (files, ``out/``) and a sidecar action id.
    False for runners that do not run an isolate (subflows)."""

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        """``function`` holds the validated fields of the function; ``base_dir`` is
        the directory of the workflow file (relative paths in it are resolved there)."""
        self.engine = engine
        self.function = function
        self.base_dir = base_dir

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        """Which definitions share one runner: by default every field but ``id``
        and ``files`` (two workflows naming the same isolate share its process)."""
        fields = {k: v for k, v in function.items() if k not in ("id", "files")}
        return f"{cls.__module__}.{cls.__qualname__}:{json.dumps(fields, sort_keys=True, default=str)}"

    def describe(self) -> str:
        """How error messages name this isolate."""
        return f"function '{self.function.get('id', '?')}' ({self.function.get('type', '?')})"

    def call(self, request: ActionRequest) -> Response:
        """Call the isolate once and return its reply.

        Raise :class:`ActionTimeout` when ``request.remaining()`` runs out (after
        cancelling the call if the isolate supports it), ``WorkflowError`` for a
        catchable failure, ``InstanceFailure`` for an uncatchable one.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections, processes, threads."""


def parse_url(url: str) -> tuple[bool, str, int, str]:
    """(https?, host, port, path) of an isolate URL; ConfigError when it is not http(s)://host[:port][/path]."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"isolate URL {url!r} must look like http://127.0.0.1:8080/")
    https = parts.scheme == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        raise ConfigError(f"isolate URL {url!r} has an invalid port") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return https, parts.hostname, port, path


class HttpIsolate(Runner):
    """A runner that speaks the protocol over HTTP to ``self.url`` (set by the subclass).

    Connections are HTTP/1.1 keep-alive, kept in a small pool so concurrent
    instances each get one and a sequential workflow reuses the same socket
    (no connect per call).  A reused connection that the isolate closed while
    idle is retried once on a fresh one; anything else is not retried, since a
    POST may have had effects.
    """

    def __init__(self, engine: Engine, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(engine, function, base_dir)
        self._pool: list[http.client.HTTPConnection] = []
        self._pool_lock = threading.Lock()
        self._host = "127.0.0.1"
        self._port = 0
        self._path = "/"
        self._https = False
        self._closed = False
        self._inflight: set[ActionRequest] = set()

    def set_url(self, url: str) -> None:
        """Point the runner at ``url`` (``http://host:port/path``; https works too)."""
        self._https, self._host, self._port, self._path = parse_url(url)
        self._drop_pool()

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._https else 'http'}://{host}:{self._port}{self._path}"

    def prepare(self, request: ActionRequest) -> None:
        """Hook run before each call (the process runner starts its program here)."""

    def call(self, request: ActionRequest) -> Response:
        self.prepare(request)
        headers = request.headers()
        limit = int(self.engine.config.limit("max_input_bytes"))
        with self._pool_lock:
            self._inflight.add(request)
        try:
            return self._exchange("POST", request.body, headers, request, limit)
        except TimeoutError:
            request.cancelled.set()
            self.cancel(request)
            raise ActionTimeout(self.describe(), request.timeout) from None
        except WorkflowError:
            if request.cancelled.is_set():
                raise InstanceFailure(f"{self.describe()}: the engine is stopping; the call was cancelled with DELETE",
                                      code="isolde.cancelled") from None
            raise
        finally:
            with self._pool_lock:
                self._inflight.discard(request)

    def cancel_inflight(self, instance_id: str | None = None) -> None:
        """Cancel every call under way (``DELETE /`` each) -- of one instance, or all of
        them when the engine is stopping."""
        with self._pool_lock:
            pending = [r for r in self._inflight if instance_id is None or r.instance_id == instance_id]
        for request in pending:
            request.cancelled.set()
            self.cancel(request)

    def cancel(self, request: ActionRequest) -> None:
        """Tell the isolate to stop: ``DELETE /`` with the action id (errors ignored: it may be gone)."""
        import http.client

        conn = self._connect(min(CANCEL_TIMEOUT, 30.0))
        try:
            conn.request("DELETE", self._path, headers={"Direktiv-ActionID": request.action_id, "Content-Length": "0"})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()

    # -- connections -------------------------------------------------------------
    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=max(timeout, 0.001))
        return conn

    def _acquire(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._pool_lock:
            if self._pool:
                return self._pool.pop(), True
        return self._connect(timeout), False

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._pool_lock:
            if not self._closed and len(self._pool) < POOL_SIZE:
                self._pool.append(conn)
                return
        conn.close()

    def _drop_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def _exchange(self, method: str, body: bytes, headers: dict[str, str], request: ActionRequest, limit: int) -> Response:
        import http.client

        for attempt in (0, 1):
            remaining = request.remaining()
            if remaining <= 0:
                raise TimeoutError
            conn, reused = self._acquire(remaining)
            try:
                conn.timeout = remaining
                if conn.sock is None:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                else:
                    conn.sock.settimeout(remaining)
                conn.request(method, self._path, body, headers)
                resp = conn.getresponse()
                data = self._read_body(resp, conn, request, limit)
            except TimeoutError:
                conn.close()
                raise
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the isolate closed an idle keep-alive connection: one fresh try
                raise self._unavailable(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._unavailable(exc) from None
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
                conn.close()
            else:
                self._release(conn)
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, resp.reason or "")
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_body(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, request: ActionRequest, limit: int) -> bytes:
        length = resp.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise InstanceFailure(self._too_big(int(length), limit), code="direktiv.limits.size")
        if conn.sock is not None:
            conn.sock.settimeout(max(request.remaining(), 0.001))
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise InstanceFailure(self._too_big(len(data), limit, at_least=True), code="direktiv.limits.size")
        if not resp.isclosed():
            resp.read()  # drain, so the connection can be reused
        return data

    def _too_big(self, size: int, limit: int, *, at_least: bool = False) -> str:
        more = "more than " if at_least else ""
        return (
            f"{self.describe()} answered {more}{size} bytes, over the {limit}-byte limit for instance data "
            "(raise [limits] max_input_bytes in isolde.toml)"
        )

    def _unavailable(self, exc: BaseException) -> WorkflowError:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return WorkflowError(UNAVAILABLE_CODE, f"{self.describe()} at {self.url} could not be reached: {reason}")

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
        self._drop_pool()


# --------------------------------------------------------------------------- processes


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the program binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.25).close()
        return True
    except OSError:
        return False


class IsolateProcess:
    """One isolate program: started with ``$PORT`` / ``$DIREKTIV_SIDECAR``, watched, stopped.

    Its stdout and stderr are read by a thread that forwards each line to
    isolde's stderr (prefixed with the isolate's name) and keeps the last lines
    for error messages.  The program runs in its own process group so that
    stopping it also stops what it spawned.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        cwd: Path,
        env: Mapping[str, str],
        port: int | None,
        startup_timeout: float,
        output: Callable[[str], None] | None = None,
    ) -> None:
        if not command:
            raise ConfigError(f"isolate {name}: command is empty")
        self.command = list(command)
        self.name = name
        self.cwd = cwd
        self.env = dict(env)
        self.fixed_port = port
        self.port = 0
        self.startup_timeout = startup_timeout
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure(self, sidecar: str) -> bool:
        """Start the program unless it runs and listens; True when it was (re)started."""
        if self._ready and self.alive():
            return False
        with self._lock:  # a concurrent caller waits here until the program listens
            if self._closed:
                raise IsoldeError(f"isolate {self.name}: the engine is closed")
            if self._ready and self.alive():
                return False
            self._ready = False
            if self._proc is not None:  # it died since the last call: say so, start again
                self._note(f"exited with code {self._proc.returncode}; starting it again")
                self._reap()
            self._start(sidecar)
            self._ready = True
            return True

    def _start(self, sidecar: str) -> None:
        port = self.fixed_port or free_port()
        if self.fixed_port and _listening("127.0.0.1", port):
            raise WorkflowError(
                UNAVAILABLE_CODE,
                f"isolate {self.name}: port {port} is already in use by another program; "
                "choose another `port` or leave it out (isolde then picks a free one)",
            )
        env = {**os.environ, **self.env, "PORT": str(port)}
        if sidecar:
            env["DIREKTIV_SIDECAR"] = sidecar
        self._tail.clear()
        try:
            # Under the supervisor: it stops the isolate if this process dies (even kill -9).
            proc = subprocess.Popen(
                [sys.executable, _SUPERVISOR, *self.command],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkflowError(
                UNAVAILABLE_CODE,
                f"isolate {self.name}: cannot start {self.command[0]!r} (in {self.cwd}): {exc.strerror or exc}",
            ) from None
        self._proc, self.port = proc, port
        reader = threading.Thread(target=self._pump, args=(proc,), name=f"isolate-output-{proc.pid}", daemon=True)
        self._reader = reader
        reader.start()
        self._wait_listening(proc, port)

    def _wait_listening(self, proc: subprocess.Popen[bytes], port: int) -> None:
        """Poll until the program accepts connections, dies, or the startup time runs out."""
        give_up = time.monotonic() + self.startup_timeout
        pause = 0.002
        while True:
            code = proc.poll()
            if code is not None:
                self._reap()
                raise WorkflowError(
                    UNAVAILABLE_CODE,
                    f"isolate {self.name} exited with code {code} before it listened on port {port}"
                    f"{self._tail_text()}",
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.25).close()
                return
            except OSError:
                pass
            if time.monotonic() >= give_up:
                self.stop()
                raise WorkflowError(
                    UNAVAILABLE_CODE,
                    f"isolate {self.name} did not listen on 127.0.0.1:{port} within {_seconds(self.startup_timeout)} "
                    f"(it must serve HTTP on the port in $PORT; raise [actions] startup_timeout if it starts slowly)"
                    f"{self._tail_text()}",
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(line)
            if self._output is not None:
                try:
                    self._output(f"[isolate {self.name}] {line}")
                except Exception:  # a closed stderr must not kill the reader
                    pass
        proc.stdout.close()

    def exit_note(self, wait: float = 0.3) -> str:
        """If the program has exited (or exits within ``wait`` seconds): its exit code and
        last output lines, for the error of a call it broke off; else ""."""
        proc = self._proc
        if proc is None:
            return ""
        try:
            code = proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return ""
        return f"; the isolate exited with code {code}{self._tail_text()}"

    def _tail_text(self) -> str:
        if self._reader is not None:
            self._reader.join(0.2)  # let the last lines arrive
        lines = [line for line in self._tail if line.strip()]
        return "; its last output: " + " | ".join(lines[-5:]) if lines else ""

    def _note(self, message: str) -> None:
        if self._output is not None:
            self._output(f"[isolate {self.name}] {message}")

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if proc.stdin is not None:  # the supervisor's lifeline
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(1.0)
            self._reader = None

    def stop(self) -> None:
        """Terminate the program (its process group), kill it if it lingers; idempotent."""
        self._ready = False
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE)
        else:  # the leader exited: still stop anything it left in its group
            self._signal(proc, signal.SIGKILL)
        self._reap()
        self._proc = None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)
            else:  # pragma: no cover - not POSIX
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.stop()


def stderr_line(line: str) -> None:
    """Default sink of isolate output: isolde's stderr (the CLI keeps stdout for the result)."""
    stream = sys.stderr
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


# --------------------------------------------------------------------------- delayed work


_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_supervise.py")


class Scheduler:
    """One thread that runs callbacks after a delay; scheduling costs a heap push.

    Used to start an action's ``out/`` watcher only when its call is still
    running after a moment: adding and removing inotify watches costs more than
    a whole fast call, and for a call that returns at once the sweep after it
    finds everything anyway.  A callback that is no longer wanted is simply
    left to run as a no-op (it checks its own flag).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        import heapq

        with self._cond:
            if self._closed:
                return
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="isolde-later", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is fn:
                self._cond.notify()

    def _run(self) -> None:
        import heapq

        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a callback failing must not stop the others
                pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(2.0)


class Reaper:
    """Runs clean-up work (removing action folders) on one background thread.

    Removing a directory tree is filesystem metadata work that can take
    milliseconds on a busy disk; the instance need not wait for it.  ``close``
    finishes everything queued, so nothing is left behind by a closed engine.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def put(self, job: Callable[[], None]) -> None:
        with self._cond:
            if self._closed:
                closed = True
            else:
                closed = False
                self._jobs.append(job)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="isolde-reaper", daemon=True)
                    self._thread.start()
                self._cond.notify()
        if closed:
            job()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # one failed removal must not stop the others
                pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()


# --------------------------------------------------------------------------- the per-engine hub


class Isolates:
    """Per-engine home of runners, background actions and the subflow depth table.

    Made by :func:`isolates_for` right after the engine's sidecar object, so at
    engine close it is closed *before* the sidecar: first background
    (``async``) actions are waited for, with runners and the sidecar still
    usable, then runners (and their processes) are closed in reverse order of
    creation.
    """

    def __init__(self, engine: Engine, sidecar: Sidecar, watcher: Any = None) -> None:
        self.engine = engine
        self.sidecar = sidecar
        self.watcher = watcher
        """The engine's shared ``out/`` watcher (``isolde.files.OutWatcher``)."""
        self.later = Scheduler()
        """Delayed work: starting the ``out/`` watcher of calls that take a while."""
        self.reaper = Reaper()
        """Background clean-up: removing action folders after their action."""
        self.settings = ActionSettings.from_config(engine.config)
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = True
        self._closed = False
        self.depth: dict[str, int] = {}
        """Subflow depth of running child instances by instance id (absent = a top-level instance)."""

    def runner(self, function: Mapping[str, Any], base_dir: Path) -> Runner:
        """The runner for a function definition, made on first use."""
        ftype = str(function.get("type") or "isolated")
        runners: Mapping[str, type[Runner]] = getattr(self.engine.registry, "runners", {})
        cls = runners.get(ftype)
        if cls is None:
            known = ", ".join(sorted(runners)) or "none"
            raise WorkflowError(
                "isolde.function.unsupported",
                f"no isolate runner serves function type '{ftype}' (function '{function.get('id', '?')}'); "
                f"installed runners serve: {known} (see `isolde plugins`)",
            )
        key = cls.key(function, base_dir)
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        return self.shared(key, lambda: cls(self.engine, function, base_dir))

    def shared(self, key: str, factory: Callable[[], Runner]) -> Runner:
        """The runner kept under ``key``, made by ``factory`` on first use
        (image mappings share one process with an equal ``process`` function this way)."""
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        with self._lock:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            runner = self._runners.get(key)
            if runner is None:
                runner = factory()
                self._runners[key] = runner
            return runner

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` in the background (``async`` actions); the engine waits for it at close."""
        with self._lock:
            if not self._accepting:
                raise IsoldeError("this Engine is closing: no new background actions")
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="isolde-async")
            return self._executor.submit(fn)

    def cancel_instance(self, instance_id: str) -> None:
        """Cancel an instance's isolate calls still under way (``DELETE``): a foreach or
        parallel state was decided without them."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            cancel = getattr(runner, "cancel_inflight", None)
            if cancel is not None:
                cancel(instance_id)

    def cancel_all(self) -> None:
        """Engine.close() calls this first: isolate calls under way get their ``DELETE``."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            cancel = getattr(runner, "cancel_inflight", None)
            if cancel is not None:
                cancel()

    def close(self) -> None:
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            executor = self._executor
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            runners = list(self._runners.values())
            self._runners.clear()
        self.later.close()
        self.reaper.close()
        errors: list[BaseException] = []
        for runner in reversed(runners):
            try:
                runner.close()
            except Exception as exc:  # keep closing the others
                errors.append(exc)
        if errors:
            raise errors[0]


_HUB_ATTR: Final[str] = "_isolde_isolates"


def isolates_for(engine: Engine) -> Isolates:
    """The engine's :class:`Isolates` hub.

    It is also remembered on the engine object, so that background actions
    still running while the engine closes (when ``engine.resource`` refuses new
    lookups) reach their runners and sidecar until they finish.
    """
    hub = engine.__dict__.get(_HUB_ATTR)
    if hub is not None:
        return hub  # type: ignore[no-any-return]
    from .files import OutWatcher
    from .sidecar import sidecar_for

    # Made (not started) before the hub, so they are closed after it: background
    # actions still use them while the hub waits for them.
    sidecar = sidecar_for(engine)
    watcher = engine.resource("isolde.outwatcher", OutWatcher)
    hub = engine.resource("isolates", lambda: Isolates(engine, sidecar, watcher))
    engine.__dict__[_HUB_ATTR] = hub
    return hub


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """The ``[actions]`` table of isolde.toml, checked."""

    timeout: float = DEFAULT_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    keep_folders: bool = False
    temp_dir: str | None = None

    KEYS: ClassVar[tuple[str, ...]] = ("timeout", "startup_timeout", "keep_folders", "temp_dir")

    @classmethod
    def from_config(cls, config: Any) -> ActionSettings:
        where = str(config.path) if getattr(config, "path", None) else "config"
        table = config.data.get("actions", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [actions] must be a table")
        for key in table:
            if key not in cls.KEYS:
                raise ConfigError(f"{where}: unknown setting [actions] {key!r} (known: {', '.join(cls.KEYS)})")
        timeout = config_seconds(table["timeout"], f"{where}: [actions] timeout") if "timeout" in table else DEFAULT_TIMEOUT
        startup = (
            config_seconds(table["startup_timeout"], f"{where}: [actions] startup_timeout")
            if "startup_timeout" in table
            else DEFAULT_STARTUP_TIMEOUT
        )
        keep = table.get("keep_folders", False)
        if not isinstance(keep, bool):
            raise ConfigError(f"{where}: [actions] keep_folders must be true or false, got {keep!r}")
        temp_dir = table.get("temp_dir")
        if temp_dir is not None:
            if not isinstance(temp_dir, str) or not temp_dir:
                raise ConfigError(f"{where}: [actions] temp_dir must be a directory path, got {temp_dir!r}")
            base = config.path.parent if getattr(config, "path", None) else Path.cwd()
            temp_dir = str((base / temp_dir).resolve())
        return cls(timeout, startup, keep, temp_dir)


def config_seconds(value: Any, where: str) -> float:
    """A time setting given as seconds (number) or an ISO-8601 duration string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        from .validate import parse_duration

        seconds = parse_duration(value)
        if seconds is not None and seconds > 0:
            return seconds
    raise ConfigError(f"{where} must be a positive number of seconds or an ISO-8601 duration like \"PT5M\", got {value!r}")

