"""Runners that speak Direktiv's protocol over HTTP/1.1 (keep-alive, a small pool, deadlines,
``DELETE /`` on a timeout)."""

from __future__ import annotations

import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ConfigError, InstanceFailure, WorkflowError
from .protocol import CANCEL_TIMEOUT, POOL_SIZE, UNAVAILABLE_CODE, ActionRequest, ActionTimeout, Response
from .runner import Runner, RunnerHost

if TYPE_CHECKING:  # http.client is imported on first use: the CLI starts faster
    import http.client


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

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        super().__init__(host, function, base_dir)
        self._max_reply = int(host.config.limit("max_input_bytes"))
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
        limit = self._max_reply
        with self._pool_lock:
            if request.stopped():  # decided before the call was registered: not sent at all
                raise InstanceFailure(f"{self.describe()}: the state no longer needs this call; it was not made",
                                      code="isolde.cancelled")
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
        import socket

        for attempt in (0, 1):
            remaining = request.remaining()
            if remaining <= 0:
                raise TimeoutError
            conn, reused = self._acquire(remaining)
            try:
                conn.timeout = remaining
                if conn.sock is None:
                    conn.connect()
                    if conn.sock is not None:
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


__all__ = ["HttpIsolate", "parse_url"]
