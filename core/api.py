"""The daemon's HTTP API: JSON over loopback HTTP/1.1, described by ``GET /api/openapi.json``.

Routes (``{path}`` is a workflow id and may contain ``/``; a ``.yaml`` / ``.yml``
suffix is accepted and ignored, so Direktiv-style ``/sub/wf.yaml`` works)::

    GET    /api/openapi.json
    GET    /api/status
    GET    /api/namespaces
    GET    /api/namespaces/{ns}/workflows
    POST   /api/namespaces/{ns}/workflows/{path}/instances[?wait=true[&timeout=S]]
    GET    /api/namespaces/{ns}/instances
    GET    /api/namespaces/{ns}/instances/{id}
    GET    /api/namespaces/{ns}/instances/{id}/logs
    GET    /api/namespaces/{ns}/variables
    GET|PUT|DELETE /api/namespaces/{ns}/variables/{key}
    GET    /api/namespaces/{ns}/workflows/{path}/variables
    GET|PUT|DELETE /api/namespaces/{ns}/workflows/{path}/variables/{key}
    POST   /api/namespaces/{ns}/events

Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status.
Security, as the sidecar: a request with an ``Origin`` or ``Sec-Fetch-Site``
header (a browser) is refused, and so is a ``Host`` that is not loopback while
the API is bound to loopback (DNS rebinding).  With a token (``--token`` /
``[daemon] token``) every request needs ``Authorization: Bearer TOKEN``;
binding beyond loopback without a token is refused at start.  Bodies are capped
before they are read: instance input by ``[limits] max_input_bytes``, variables
by ``[limits] max_variable_bytes``, events by ``[limits] max_event_bytes``.

Why the stdlib server: a ``ThreadingHTTPServer`` with keep-alive serves
thousands of small requests a second on loopback, and an instance start is
bounded by its two durable store commits anyway (docs/daemon.md has figures).
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from .variables import parse_json
from .errors import ConfigError, IsoldeError
from .sidecar import is_loopback_host
from .store import Put, Ref, StoreError, check_key

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["ApiServer", "openapi_document", "parse_address"]

_JSON: Final = "application/json"
_OCTETS: Final = "application/octet-stream"
_CHUNK: Final = 1 << 20
MAX_CONNECTIONS: Final = 512
IDLE_TIMEOUT: Final = 120.0


class ApiError(IsoldeError):
    """An answer other than success: HTTP status, a dotted code and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(f"API address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8890)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    api: ApiServer

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        super().__init__(address, _Handler, bind_and_activate=False)
        self.allow_reuse_address = True
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        api = self.api
        with api._conn_lock:
            if api._connections >= MAX_CONNECTIONS:
                busy = True
            else:
                api._connections += 1
                busy = False
        if busy:
            try:
                body = json.dumps({"error": {"code": "isolde.api.busy", "message": "too many connections"}}).encode()
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.api._conn_lock:
                self.api._connections -= 1


class ApiServer:
    """The API server of one daemon; ``start()`` binds and serves in a thread, ``close()`` stops."""

    def __init__(self, daemon: Daemon, address: str, *, token: str | None) -> None:
        host, port = parse_address(address)
        self.loopback = _is_loopback(host)
        if not self.loopback and not token:
            raise ConfigError(
                f"refusing to serve the API on {host} (beyond loopback) without a token: "
                "set --token or [daemon] token, or use 127.0.0.1"
            )
        self.daemon = daemon
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.token = token.encode() if token else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._connections = 0
        self._openapi: bytes | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            server = _Server((self.host, self.port), family)
        except OSError as exc:
            raise IsoldeError(f"cannot serve the API on {self.host}:{self.port}: {exc.strerror or exc} "
                              "(choose another with --api HOST:PORT or [daemon] api)") from None
        server.api = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="isolde-api", daemon=True)
        self._thread.start()

    def close(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        server.shutdown()
        server.server_close()

    def openapi(self) -> bytes:
        if self._openapi is None:
            self._openapi = json.dumps(openapi_document(self.url), indent=1).encode()
        return self._openapi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "isolde"
    server: _Server
    timeout = IDLE_TIMEOUT

    # -- plumbing ---------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged at debug level by the daemon's logger, not on stderr raw."""
        log = self.server.api.daemon.log
        if log.isEnabledFor(10):
            log.debug("api request", extra={"fields": {"request": format % args}})

    def handle_expect_100(self) -> bool:
        return True  # answered in _read_body, once the request is known to be acceptable

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        self._json(code, {"error": {"code": "isolde.api.badRequest", "message": message or HTTPStatus(code).phrase}})

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        self._body_read = not ("Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0").strip() not in ("", "0"))
        try:
            self._check_access()
            self._route()
        except ApiError as exc:
            self._error(exc)
        except IsoldeError as exc:
            status = getattr(exc, "status", 400)
            code = getattr(exc, "code", "isolde.error")
            self._error(ApiError(status, code, getattr(exc, "message", str(exc))))
        except StoreError as exc:
            self._error(ApiError(400 if exc.code == "direktiv.var.invalidKey" else 507 if exc.code == "isolde.store.full" else 500,
                                 exc.code, str(exc)))
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500, keep serving
            self.server.api.daemon.log.error("api: internal error", exc_info=exc, extra={"fields": {"path": self.path[:200]}})
            self._error(ApiError(500, "isolde.internal", f"internal error: {type(exc).__name__}: {exc}"))
        if not self._body_read:
            self.close_connection = True  # an unread body would be taken for the next request

    def _check_access(self) -> None:
        h = self.headers
        if "Origin" in h or "Sec-Fetch-Site" in h:
            raise ApiError(403, "isolde.api.forbidden", "requests from web browsers are refused (the request has an Origin or Sec-Fetch-Site header)")
        api = self.server.api
        host = h.get("Host")
        if api.loopback and host is not None and not is_loopback_host(host):
            raise ApiError(403, "isolde.api.forbidden", f"Host {host[:100]!r} is not a loopback address (use 127.0.0.1, localhost or [::1])")
        if api.token is not None:
            auth = h.get("Authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api.token):
                raise ApiError(401, "isolde.api.unauthorized", "missing or wrong token (send Authorization: Bearer TOKEN)",
                               {"WWW-Authenticate": 'Bearer realm="isolde"'})

    # -- responses --------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self._send(status, body, _JSON, headers)

    def _error(self, exc: ApiError) -> None:
        if not self._body_read:
            self.close_connection = True
        self._json(exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers)

    # -- bodies -----------------------------------------------------------------
    def _read_body(self, limit: int, setting: str) -> bytes:
        """The request body, refused (413) before it is read when it is over ``limit``."""
        h = self.headers
        te = h.get("Transfer-Encoding")
        lengths = h.get_all("Content-Length") or []
        if te is not None:
            if te.strip().lower() != "chunked" or lengths:
                raise ApiError(400, "isolde.api.badRequest", f"unsupported Transfer-Encoding {te[:50]!r} (send Content-Length or chunked)")
            self._continue()
            return self._read_chunked(limit, setting)
        if not lengths:
            self._body_read = True
            return b""
        text = lengths[0].strip()
        if len(lengths) > 1 or not (text.isascii() and text.isdigit()):
            raise ApiError(400, "isolde.api.badRequest", "invalid Content-Length header")
        size = int(text)
        if size > limit:
            raise ApiError(413, "isolde.api.tooLarge", f"the body is {size} bytes, over the {limit}-byte limit (raise {setting} in isolde.toml)")
        self._continue()
        data = self.rfile.read(size)
        if len(data) != size:
            self.close_connection = True
            raise ConnectionError("body ended early")
        self._body_read = True
        return data

    def _continue(self) -> None:
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def _read_chunked(self, limit: int, setting: str) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "isolde.api.badRequest", "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._body_read = True
                return bytes(out)
            if len(out) + size > limit:
                self.close_connection = True
                raise ApiError(413, "isolde.api.tooLarge", f"the body is over the {limit}-byte limit (raise {setting} in isolde.toml)")
            out += self.rfile.read(size)
            self.rfile.readline(8)

    # -- routing ----------------------------------------------------------------
    def _route(self) -> None:
        parts = urlsplit(self.path)
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        segs = [unquote(s) for s in parts.path.split("/")]
        if len(segs) < 3 or segs[0] != "" or segs[1] != "api":
            raise ApiError(404, "isolde.api.notFound", f"no such path {parts.path[:100]!r} (the API lives under /api; see /api/openapi.json)")
        segs = segs[2:]
        if segs and segs[-1] == "" and len(segs) > 1:
            segs = segs[:-1]
        method = self.command
        if segs == ["openapi.json"]:
            return self._allow(method, "GET", lambda: self._send(200, self.server.api.openapi(), _JSON))
        if segs == ["status"]:
            return self._allow(method, "GET", lambda: self._json(200, self.server.api.daemon.status()))
        if segs == ["namespaces"]:
            return self._allow(method, "GET", lambda: self._json(200, {"namespaces": self.server.api.daemon.namespaces()}))
        if len(segs) < 3 or segs[0] != "namespaces":
            raise self._no_route()
        ns, rest = segs[1], segs[2:]
        d = self.server.api.daemon
        if rest == ["workflows"]:
            return self._allow(method, "GET", lambda: self._json(200, {"namespace": ns, "workflows": d.workflows(ns)}))
        if rest == ["variables"]:
            return self._allow(method, "GET", lambda: self._list_vars(ns, "namespace", ""))
        if len(rest) == 2 and rest[0] == "variables":
            return self._variable(method, ns, "namespace", "", rest[1])
        if rest == ["events"]:
            return self._allow(method, "POST", lambda: self._event(ns))
        if rest == ["instances"]:
            return self._allow(method, "GET", lambda: self._json(200, {"namespace": ns, "instances": d.instances(ns)}))
        if len(rest) == 2 and rest[0] == "instances":
            return self._allow(method, "GET", lambda: self._instance(ns, rest[1]))
        if len(rest) == 3 and rest[0] == "instances" and rest[2] == "logs":
            return self._allow(method, "GET", lambda: self._logs(ns, rest[1]))
        if rest[0] == "workflows" and len(rest) >= 3:
            if rest[-1] == "instances" and len(rest) >= 3:
                path = "/".join(rest[1:-1])
                return self._allow(method, "POST", lambda: self._start(ns, path))
            if rest[-1] == "variables":
                path = "/".join(rest[1:-1])
                return self._allow(method, "GET", lambda: self._list_vars(ns, "workflow", d.workflow_owner(ns, path)))
            if len(rest) >= 4 and rest[-2] == "variables":
                path = "/".join(rest[1:-2])
                return self._variable(method, ns, "workflow", path, rest[-1])
        raise self._no_route()

    def _no_route(self) -> ApiError:
        return ApiError(404, "isolde.api.notFound", f"no such path {urlsplit(self.path).path[:200]!r} (see /api/openapi.json)")

    def _allow(self, method: str, allowed: str, fn: Callable[[], None]) -> None:
        ok = allowed.split(", ")
        if method == "HEAD" and "GET" in ok:
            ok.append("HEAD")
        if method not in ok:
            raise ApiError(405, "isolde.api.methodNotAllowed", f"method {method} is not allowed here (allowed: {allowed})", {"Allow": allowed})
        fn()

    # -- handlers ---------------------------------------------------------------
    def _start(self, ns: str, path: str) -> None:
        d = self.server.api.daemon
        d.workflow_owner(ns, path)  # 404 before reading a body
        body = self._read_body(d.max_input_bytes, "[limits] max_input_bytes")
        wait = self.query.get("wait", "").lower() in ("1", "true", "yes")
        timeout = d.settings.max_wait
        if "timeout" in self.query:
            try:
                timeout = min(float(self.query["timeout"]), timeout)
            except ValueError:
                raise ApiError(400, "isolde.api.badRequest", f"timeout must be a number of seconds, got {self.query['timeout'][:50]!r}") from None
        info = d.start_instance(ns, path, body or None, announce=not wait)
        loc = {"Location": f"/api/namespaces/{ns}/instances/{info.id}"}
        if not wait:
            return self._json(202, _result(info.view()), loc)
        view = d.wait_for(ns, info.id, max(0.0, timeout))
        self._json(200 if view["status"] in ("complete", "failed") else 202, _result(view), loc)

    def _instance(self, ns: str, iid: str) -> None:
        d = self.server.api.daemon
        d.check_namespace(ns)
        self._json(200, d.instance(ns, iid))

    def _logs(self, ns: str, iid: str) -> None:
        d = self.server.api.daemon
        d.check_namespace(ns)
        self._json(200, {"id": iid, "logs": d.instance_log(ns, iid)})

    def _ref(self, ns: str, scope: str, path: str, key: str) -> Ref:
        d = self.server.api.daemon
        owner = d.workflow_owner(ns, path) if scope == "workflow" else ""
        if scope == "namespace":
            d.check_namespace(ns)
        check_key(key)
        return Ref(ns, scope, owner, key)

    def _list_vars(self, ns: str, scope: str, owner: str) -> None:
        d = self.server.api.daemon
        d.check_namespace(ns)
        rows = d.store.list(ns, scope, owner)
        self._json(200, {"namespace": ns, **({"workflow": owner} if scope == "workflow" else {}),
                         "variables": [_var_meta(k, v) for k, v in rows]})

    def _variable(self, method: str, ns: str, scope: str, path: str, key: str) -> None:
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise ApiError(405, "isolde.api.methodNotAllowed", f"method {method} is not allowed here (allowed: GET, PUT, DELETE)",
                           {"Allow": "GET, PUT, DELETE"})
        d = self.server.api.daemon
        ref = self._ref(ns, scope, path, key)
        store = d.store
        where = f"variable '{key}' of workflow '{ref.owner}'" if scope == "workflow" else f"namespace variable '{key}'"
        if method in ("GET", "HEAD"):
            var = store.get(ref)
            if var is None:
                raise ApiError(404, "isolde.variable.notFound", f"no {where} in namespace '{ns}'")
            return self._send(200, var.data, var.mime or _OCTETS, {"Last-Modified": _http_date(var.updated), "ETag": f'"{var.version}"'})
        if method == "DELETE":
            if store.get(ref) is None:
                raise ApiError(404, "isolde.variable.notFound", f"no {where} in namespace '{ns}'")
            store.write([Put(ref, None)])
            return self._send(204, b"", None)
        limit = d.max_variable_bytes
        data = self._read_body(limit, "[limits] max_variable_bytes")
        mime = (self.headers.get("Content-Type") or _OCTETS).strip()
        if len(mime) > 255 or not mime.isprintable():
            raise ApiError(400, "isolde.api.badRequest", "invalid Content-Type")
        existed = store.get(ref) is not None
        store.write([Put(ref, data, mime)])
        var = store.get(ref)
        self._json(200 if existed else 201, _var_meta(key, var) if var is not None else {"key": key})

    def _event(self, ns: str) -> None:
        d = self.server.api.daemon
        d.check_namespace(ns)
        body = self._read_body(d.max_event_bytes, "[limits] max_event_bytes")
        ev, started = d.publish_event(ns, _cloudevent(self.headers, body))
        self._json(202, {"id": ev["id"], "type": ev["type"], "instances": started})


def _result(view: dict[str, Any]) -> dict[str, Any]:
    return {"id": view["id"], "status": view["status"], "output": view.get("output"), "error": view.get("error"),
            "workflow": view.get("workflow"), "namespace": view.get("namespace")}


def _var_meta(key: str, var: Any) -> dict[str, Any]:
    return {"key": key, "size": var.size, "mime": var.mime, "created": var.created, "updated": var.updated, "version": var.version}


def _http_date(t: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def _cloudevent(headers: Any, body: bytes) -> dict[str, Any]:
    """A CloudEvent from a request, structured (JSON body) or binary (``ce-*`` headers) mode.
    The bus checks it (``type`` and ``source`` required; ``id``, ``specversion`` and
    ``time`` filled in)."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if headers.get("ce-type") or headers.get("ce-specversion"):
        event: dict[str, Any] = {}
        for name, value in headers.items():
            if name.lower().startswith("ce-") and len(name) > 3:
                event[name[3:].lower()] = value
        if body:
            if ctype in ("", _JSON) or ctype.endswith("+json"):
                try:
                    event["data"] = parse_json(body)
                except ValueError:
                    raise ApiError(400, "isolde.event.invalid", "the body is not JSON but Content-Type says it is") from None
            else:
                try:
                    event["data"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    event["data_base64"] = base64.b64encode(body).decode("ascii")
            if ctype:
                event["datacontenttype"] = ctype
    else:
        try:
            event = parse_json(body)
        except ValueError:
            raise ApiError(400, "isolde.event.invalid", "the body is not a JSON CloudEvent (or send binary mode with ce-* headers)") from None
        if not isinstance(event, dict):
            raise ApiError(400, "isolde.event.invalid", "a CloudEvent is a JSON object")
    return event


# --------------------------------------------------------------------------- OpenAPI


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0 description of every route above."""
    err = {"$ref": "#/components/responses/Error"}
    ns_p = {"name": "ns", "in": "path", "required": True, "schema": {"type": "string"}, "description": "Namespace (a folder of DIR)."}
    wf_p = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "Workflow id: its path in the namespace folder without .yaml (may contain '/')."}
    key_p = {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^(([a-zA-Z][a-zA-Z0-9_\\-\\.]*[a-zA-Z0-9])|([a-zA-Z]))$"}}
    id_p = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

    def ok(desc: str, schema: str | dict[str, Any]) -> dict[str, Any]:
        s = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
        return {"description": desc, "content": {_JSON: {"schema": s}}}

    raw = {"description": "The raw bytes; Content-Type is the variable's mime type.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}

    def var_ops(scope: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "parameters": params,
            "get": {"summary": f"Read a {scope} variable", "responses": {"200": raw, "404": err}},
            "put": {"summary": f"Write a {scope} variable (body = bytes, Content-Type = mime type)",
                    "requestBody": {"required": True, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"200": ok("Replaced.", "Variable"), "201": ok("Created.", "Variable"), "400": err, "404": err, "413": err}},
            "delete": {"summary": f"Delete a {scope} variable", "responses": {"204": {"description": "Deleted."}, "404": err}},
        }

    var_list = {"type": "object", "properties": {"namespace": {"type": "string"}, "workflow": {"type": "string"},
                                                   "variables": {"type": "array", "items": {"$ref": "#/components/schemas/Variable"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "isolde daemon API", "version": "1", "description": "Start instances, read their status and logs, "
                 "read and write variables, post CloudEvents. Errors are {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": server_url}],
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3 document"}}}},
            "/api/status": {"get": {"summary": "Daemon counters", "responses": {"200": ok("Counters.", {"type": "object"})}}},
            "/api/namespaces": {"get": {"summary": "Served namespaces", "responses": {"200": ok("Namespaces.", {
                "type": "object", "properties": {"namespaces": {"type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "workflows": {"type": "integer"}}}}}})}}},
            "/api/namespaces/{ns}/workflows": {"parameters": [ns_p], "get": {
                "summary": "Workflows with their validation status", "responses": {"200": ok("Workflows.", {
                    "type": "object", "properties": {"namespace": {"type": "string"},
                                                     "workflows": {"type": "array", "items": {"$ref": "#/components/schemas/Workflow"}}}}), "404": err}}},
            "/api/namespaces/{ns}/workflows/{path}/instances": {"parameters": [ns_p, wf_p, {
                "name": "wait", "in": "query", "schema": {"type": "boolean"}, "description": "Wait for the instance to end."}, {
                "name": "timeout", "in": "query", "schema": {"type": "number"}, "description": "Seconds to wait at most."}],
                "post": {"summary": "Start an instance (body = input: JSON, or any bytes, passed base64-encoded)",
                         "requestBody": {"content": {"*/*": {"schema": {}}}},
                         "responses": {"200": ok("Ended (with wait).", "Result"), "202": ok("Started or still running.", "Result"),
                                       "404": err, "409": ok("Singular workflow already running (direktiv.mutex) or no valid version.", "Error"),
                                       "413": err, "503": err}}},
            "/api/namespaces/{ns}/instances": {"parameters": [ns_p], "get": {"summary": "Running, queued and recent instances",
                                                                               "responses": {"200": ok("Instances.", {"type": "object"}), "404": err}}},
            "/api/namespaces/{ns}/instances/{id}": {"parameters": [ns_p, id_p], "get": {
                "summary": "Instance status, output and error", "responses": {"200": ok("The instance.", "Instance"), "404": err}}},
            "/api/namespaces/{ns}/instances/{id}/logs": {"parameters": [ns_p, id_p], "get": {
                "summary": "Instance log", "responses": {"200": ok("Log lines.", {"type": "object", "properties": {
                    "id": {"type": "string"}, "logs": {"type": "array", "items": {"type": "object", "properties": {
                        "time": {"type": "number"}, "state": {"type": "string"}, "message": {"type": "string"}}}}}}), "404": err}}},
            "/api/namespaces/{ns}/variables": {"parameters": [ns_p], "get": {"summary": "List namespace variables",
                                                                                "responses": {"200": ok("Variables.", var_list), "404": err}}},
            "/api/namespaces/{ns}/variables/{key}": var_ops("namespace", [ns_p, key_p]),
            "/api/namespaces/{ns}/workflows/{path}/variables": {"parameters": [ns_p, wf_p], "get": {
                "summary": "List workflow variables", "responses": {"200": ok("Variables.", var_list), "404": err}}},
            "/api/namespaces/{ns}/workflows/{path}/variables/{key}": var_ops("workflow", [ns_p, wf_p, key_p]),
            "/api/namespaces/{ns}/events": {"parameters": [ns_p], "post": {
                "summary": "Post a CloudEvent (structured JSON, or binary mode with ce-* headers)",
                "requestBody": {"required": True, "content": {"application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}}},
                "responses": {"202": ok("Accepted; instances it started.", {"type": "object", "properties": {
                    "id": {"type": "string"}, "type": {"type": "string"}, "instances": {"type": "array", "items": {"type": "string"}}}}),
                    "400": err, "404": err, "413": err}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Needed when the daemon has a token."}},
            "responses": {"Error": ok("An error.", "Error")},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}},
                "InstanceError": {"type": "object", "nullable": True, "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}, "state": {"type": "string", "nullable": True}}},
                "Result": {"type": "object", "properties": {
                    "id": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "running", "complete", "failed"]},
                    "output": {}, "error": {"$ref": "#/components/schemas/InstanceError"},
                    "workflow": {"type": "string"}, "namespace": {"type": "string"}}},
                "Instance": {"type": "object", "properties": {
                    "id": {"type": "string"}, "namespace": {"type": "string"}, "workflow": {"type": "string"},
                    "status": {"type": "string"}, "state": {"type": "string", "nullable": True}, "trigger": {"type": "string"},
                    "created": {"type": "number"}, "started": {"type": "number", "nullable": True},
                    "ended": {"type": "number", "nullable": True}, "output": {}, "error": {"$ref": "#/components/schemas/InstanceError"},
                    "resumed": {"type": "boolean"}}},
                "Workflow": {"type": "object", "properties": {
                    "path": {"type": "string"}, "file": {"type": "string"}, "valid": {"type": "boolean"},
                    "serving": {"type": "boolean"}, "errors": {"type": "array", "items": {"type": "string"}},
                    "start": {"type": "string", "nullable": True}, "cron": {"type": "string", "nullable": True},
                    "singular": {"type": "boolean", "nullable": True}, "updated": {"type": "number"},
                    "next_run": {"type": "number", "nullable": True}}},
                "Variable": {"type": "object", "properties": {
                    "key": {"type": "string"}, "size": {"type": "integer"}, "mime": {"type": "string"},
                    "created": {"type": "number"}, "updated": {"type": "number"}, "version": {"type": "integer"}}},
                "CloudEvent": {"type": "object", "required": ["type", "source"], "properties": {
                    "specversion": {"type": "string"}, "id": {"type": "string"}, "type": {"type": "string"},
                    "source": {"type": "string"}, "data": {}}, "additionalProperties": True},
            },
        },
    }
