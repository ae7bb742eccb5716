"""The API's HTTP server: the stdlib ``ThreadingHTTPServer`` (one thread per keep-alive
connection), access rules, body limits, and dispatch through the routes' werkzeug map.

Security: a ``Host`` that is not loopback is refused while the API is bound to loopback
(DNS rebinding).  A browser's request (``Origin`` or ``Sec-Fetch-Site`` header) to the API
is refused unless it comes from a page of this same server (the web UI, ``/ui/``):
``Sec-Fetch-Site: same-origin`` and an ``Origin``, when sent, equal to ``http://`` + Host.
With a token every API request needs ``Authorization: Bearer TOKEN`` (the UI's script sends
it); the UI's files themselves are static, hold no data and need none.  Binding beyond
loopback without a token is refused at start.  Bodies are capped
before they are read.  Errors are ``{"error": {"code": ..., "message": ...}}``.

Why the stdlib server: with keep-alive it serves thousands of small requests a second on
loopback, and an instance start is bounded by its durable store commit anyway.  Its request
heads are parsed by ``isolde.httphead`` (the sidecar's strict rules) instead of the e-mail
parser ``http.server`` uses: stricter, and 60-70 µs less CPU per request.
"""

from __future__ import annotations

import functools
import hmac
import json
import socket
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..errors import ConfigError, IsoldeError
from ..httphead import MAX_FIELDS, Fields, HeadError, parse_fields, parse_request_line
from ..jsontext import compact
from ..loopback import is_loopback_host, loopback_address
from ..store import StoreError
from ..ui import PREFIX as UI_PREFIX
from ..ui import SECURITY_HEADERS, asset
from .handlers import HANDLERS, ApiError, Served
from .openapi import openapi_document
from .routes import ROUTES, url_map

__all__ = ["ApiServer", "parse_address"]

_JSON: Final = "application/json"
MAX_CONNECTIONS: Final = 512
IDLE_TIMEOUT: Final = 120.0
MAX_LINE: Final = 65536
"""Bytes of one header line (as http.server's request line)."""
_ONE_WRITE: Final = 1 << 16
"""Bytes of body sent in one write with the head (a larger body is written on its own)."""
_METHOD_ORDER: Final = ("GET", "POST", "PUT", "DELETE", "PATCH")


_encode = compact()
_date: list[tuple[int, str]] = [(0, "")]  # the Date header of the current second


def _http_date() -> str:
    now = int(time.time())
    second, text = _date[0]
    if second != now:
        text = formatdate(now, usegmt=True)  # (two threads may both make it: the same text)
        _date[0] = (now, text)
    return text


@functools.lru_cache(maxsize=64)
def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@functools.lru_cache(maxsize=256)
def _query(text: str) -> tuple[tuple[str, str], ...]:
    """A query string's parameters (cached: ``wait=true`` and the like repeat)."""
    return tuple(parse_qsl(text, keep_blank_values=True))


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ConfigError(f"API address {text!r} is not HOST:PORT (e.g. 127.0.0.1:8890)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


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

    def __init__(self, daemon: Served, address: str, *, token: str | None) -> None:
        host, port = parse_address(address)
        self.loopback = loopback_address(host) is not None
        if not self.loopback and not token:
            raise ConfigError(
                f"refusing to serve the API on {host} (beyond loopback) without a token: "
                "set --token or [daemon] token, or use 127.0.0.1"
            )
        self.daemon = daemon
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.token = token.encode() if token else None
        self.routes = url_map().bind("isolde")  # matching only reads the map: shared by all threads
        self.route = functools.lru_cache(maxsize=1024)(self._route)  # a start's path repeats
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conn_lock = threading.Lock()
        self._connections = 0
        self._openapi: bytes | None = None

    def _route(self, path: str, method: str) -> tuple[int, tuple[tuple[str, Any], ...]]:
        """The route's index and arguments (raises werkzeug's NotFound / MethodNotAllowed)."""
        index, args = self.routes.match(path, method=method)
        return index, tuple(args.items())

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
    query: dict[str, str]
    raw_requestline: bytes  # (set by http.server before parse_request)

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
        return True  # answered in read_body, once the request is known to be acceptable

    def parse_request(self) -> bool:
        """The request line and header fields, parsed by the strict rules the sidecar
        uses (``isolde.httphead``) instead of the e-mail parser; on an error the answer
        is sent and the connection closed (False)."""
        self.command = ""  # (set in case of an error on the first line)
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        line = self.raw_requestline
        self.requestline = line.rstrip(b"\r\n").decode("latin-1")
        lines: list[bytes] = []
        try:
            self.command, path, version = parse_request_line(line)
            self.request_version = version.decode()
            rfile = self.rfile
            while True:
                raw = rfile.readline(MAX_LINE + 1)
                if len(raw) > MAX_LINE:
                    raise HeadError(431, f"a header line is longer than {MAX_LINE} bytes")
                if raw in (b"\r\n", b"\n", b""):
                    break
                lines.append(raw)
                if len(lines) > MAX_FIELDS:
                    raise HeadError(431, f"more than {MAX_FIELDS} header lines")
            fields = Fields(parse_fields(lines))
        except HeadError as exc:
            self.send_error(exc.status, exc.message)
            return False
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path  # no scheme-relative paths
        self.headers = fields  # type: ignore[assignment]  # read as http.server's Message is
        tokens = {t.strip().lower() for t in (fields.get("connection") or "").split(",")}
        self.close_connection = "close" in tokens or (version == b"HTTP/1.0" and "keep-alive" not in tokens)
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        self.json(code, {"error": {"code": "isolde.api.badRequest", "message": message or HTTPStatus(code).phrase}})

    def do_GET(self) -> None:
        self._handle()

    do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def openapi(self) -> bytes:
        return self.server.api.openapi()

    def _handle(self) -> None:
        self._body_read = not ("Transfer-Encoding" in self.headers or self.headers.get("Content-Length", "0").strip() not in ("", "0"))
        try:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if path in ("/", "/ui") or path.startswith(UI_PREFIX):
                self._check_host()
                self._page(path)
            else:
                self._check_access()
                self._dispatch(parts, path)
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

    def _check_host(self) -> None:
        host = self.headers.get("Host")
        if self.server.api.loopback and host is not None and not is_loopback_host(host):
            raise ApiError(403, "isolde.api.forbidden", f"Host {host[:100]!r} is not a loopback address (use 127.0.0.1, localhost or [::1])")

    def _check_access(self) -> None:
        h = self.headers
        self._check_host()
        site, origin = h.get("Sec-Fetch-Site"), h.get("Origin")
        if (site is not None or origin is not None) and not (
                site in (None, "same-origin") and (origin is None or origin.lower() == f"http://{h.get('Host', '')}".lower())):
            raise ApiError(403, "isolde.api.forbidden", "requests from other web sites are refused (only this server's own "
                           f"pages, under {UI_PREFIX}, may call the API from a browser)")
        api = self.server.api
        if api.token is not None:
            auth = h.get("Authorization", "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api.token):
                raise ApiError(401, "isolde.api.unauthorized", "missing or wrong token (send Authorization: Bearer TOKEN)",
                               {"WWW-Authenticate": 'Bearer realm="isolde"'})

    def _page(self, path: str) -> None:
        """The web UI's files (GET and HEAD only); ``/`` and ``/ui`` lead to ``/ui/``."""
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "isolde.api.methodNotAllowed", f"method {self.command} is not allowed here (allowed: GET)", {"Allow": "GET"})
        if path in ("/", "/ui"):
            self.send(302, b"", None, {"Location": UI_PREFIX})
            return
        found = asset(path[len(UI_PREFIX):])
        if found is None:
            raise ApiError(404, "isolde.api.notFound", f"no such path {path[:100]!r} (the web UI's files are "
                           f"{UI_PREFIX}index.html and what it loads; the API lives under /api)")
        self.send(200, found[0], found[1], SECURITY_HEADERS)

    def _dispatch(self, parts: Any, path: str) -> None:
        self.query = dict(_query(parts.query)) if parts.query else {}
        if not path.startswith("/api/") and path != "/metrics":
            raise ApiError(404, "isolde.api.notFound", f"no such path {parts.path[:100]!r} (the API lives under /api; see /api/openapi.json)")
        if path.endswith("/") and len(path) > 5:
            path = path[:-1]
        try:
            index, pairs = self.server.api.route(path, self.command)
        except MethodNotAllowed as exc:
            allowed = ", ".join(m for m in _METHOD_ORDER if m in (exc.valid_methods or ()))
            raise ApiError(405, "isolde.api.methodNotAllowed", f"method {self.command} is not allowed here (allowed: {allowed})",
                           {"Allow": allowed}) from None
        except NotFound:
            raise ApiError(404, "isolde.api.notFound", f"no such path {parts.path[:200]!r} (see /api/openapi.json)") from None
        route = ROUTES[index]
        HANDLERS[route.endpoint](self, self.server.api.daemon, dict(pairs), route.scope)

    # -- responses --------------------------------------------------------------
    def send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> None:
        """The answer, its head and body in one write (one packet for a small one)."""
        self.log_request(status)
        head = [f"HTTP/1.1 {status} {_phrase(status)}\r\nServer: {self.version_string()}\r\nDate: {_http_date()}\r\n"]
        if ctype:
            head.append(f"Content-Type: {ctype}\r\n")
        head.append(f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n")
        for k, v in (headers or {}).items():
            if "\n" in v or "\r" in v:
                raise ValueError(f"header {k} holds a line break")  # (an answer's head is never split)
            head.append(f"{k}: {v}\r\n")
        if self.close_connection:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1", "strict")
        if self.command == "HEAD":
            self.wfile.write(data)
        elif len(body) <= _ONE_WRITE:
            self.wfile.write(data + body)
        else:  # a large body is not copied to go with its head
            self.wfile.write(data)
            self.wfile.write(body)

    def json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, _encode(value).encode() + b"\n", _JSON, headers)

    def _error(self, exc: ApiError) -> None:
        if not self._body_read:
            self.close_connection = True
        self.json(exc.status, {"error": {"code": exc.code, "message": exc.message}}, exc.headers)

    # -- bodies -----------------------------------------------------------------
    def read_body(self, limit: int, setting: str) -> bytes:
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
