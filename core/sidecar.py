"""The sidecar: a loopback HTTP server through which a running isolate reads and
writes variables and writes to its instance log (SPEC §4.4).

The protocol is Direktiv's, so isolates written for Direktiv work unchanged:

``GET /var?aid=&scope=&key=``
    200 with the variable's bytes and ``Content-Type`` = its mime type; a
    missing variable answers 200 with an empty body (no ``Content-Type``).
``POST /var?aid=&scope=&key=``
    Stores the body with the request's ``Content-Type`` as its mime type, or
    ``application/octet-stream`` when the request has none (most Direktiv
    isolates send none; the bytes are stored unchanged either way, and a
    getter decodes by content, not by mime type).  An empty body deletes the
    variable.  The write is committed durably before the 200 goes out, so a
    later state sees it.  A missing or empty ``scope`` means ``instance``, as
    in Direktiv.
Race-free updates (an isolde addition, SPEC §3's opt-in)
    A ``GET`` of an existing variable carries ``ETag: "<version>"``.  A
    ``POST`` with ``If-Match: "<version>"`` writes only if the variable is
    still at that version, and ``If-None-Match: *`` only if it does not exist;
    otherwise nothing is written and the answer is 412 with the current
    ``ETag``.  A read-modify-write loop (GET, change, POST with If-Match,
    retry on 412) therefore never loses an update, across instances and
    processes.  A successful conditional POST answers the new ``ETag``.
``POST /log?aid=`` (the body) or ``GET /log?aid=&log=``
    One entry in the instance log (a trailing newline is dropped; an empty
    message is accepted and ignored, as in Direktiv).

An action id (``aid``) is handed out by :meth:`Sidecar.grant` for one action
and is valid until :meth:`Sidecar.revoke`; it names the namespace, workflow and
instance the action runs for, so a request can only reach those three owners.
``revoke`` waits until no request of that id is in the middle of a write, so
nothing an isolate sends lands after its action has ended.

Errors answer ``{"error": "..."}`` (JSON): 404 for an unknown or revoked
``aid`` or an unknown path, 400 for a bad scope, key or precondition header,
412 for a failed precondition, 413 for a body over the
limit (decided from ``Content-Length`` or while reading a chunked body, so an
oversized body is never held in memory; ``Expect: 100-continue`` is answered
only once the request is accepted), 403 for a ``Host`` that is not loopback or
any ``Origin`` / ``Sec-Fetch-Site`` header (only browsers send those: this
shuts out DNS rebinding and cross-site requests), 405 for other methods.
Errors found after the action id was recognised are also written to the
instance log, because isolates often ignore the sidecar's answers.

Why this shape: the server is the stdlib's ``ThreadingHTTPServer`` (one
daemon thread per connection, at most ``MAX_CONNECTIONS``), with HTTP/1.1
keep-alive, ``TCP_NODELAY`` and each answer in one write.  Two parts are our
own, both measured or needed: the request head is parsed by ``_Handler``
instead of ``BaseHTTPRequestHandler`` (whose ``email``-based header parsing
was a third of a small request's cost; with ours a ``POST /var`` on the fast
store is quicker than a trivial ``http.server`` answering 200, see
``benchmarks/bench_sidecar.py``), and the accept loop blocks in ``accept``
and is woken by a socket shutdown, so ``close()`` returns at once instead of
after ``serve_forever``'s poll interval.  On the durable store a ``POST /var``
costs what its sync costs: the store's commit, not HTTP, bounds the rate.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import re
import secrets
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Final
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError, IsoldeError
from .store import Put, Ref, StoreError, check_key, check_scope

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["DEFAULT_PORT", "Sidecar", "SidecarError", "sidecar_for"]

DEFAULT_HOST: Final[str] = "127.0.0.1"
DEFAULT_PORT: Final[int] = 8889
"""Direktiv's sidecar port; kept so unmodified isolates that hard-code it work."""
DEFAULT_MAX_BODY: Final[int] = 64 << 20
DEFAULT_MAX_LOG: Final[int] = 4 << 20
"""Direktiv caps a log message at 4 MiB too."""
MAX_CONNECTIONS: Final[int] = 256
"""Open connections (one thread each); more are answered 503 and closed."""
IDLE_TIMEOUT: Final[float] = 120.0
"""Seconds a connection may sit idle (or stall mid-request) before it is closed."""
REVOKE_WAIT: Final[float] = 60.0
"""Longest ``revoke`` waits for a write of that action id that is under way."""

_OCTETS: Final[str] = "application/octet-stream"
_ALLOW: Final[str] = "GET, POST"
_SETTINGS: Final[tuple[str, ...]] = ("host", "port", "pinned", "max_body", "max_log")
_OK_EMPTY: Final[bytes] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_MAX_LINE: Final[int] = 65536
_SKIP_BODY: Final[int] = 65536
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch  # an RFC 9110 field name
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch
_MAX_HEADERS: Final[int] = 100
_SINGLE_HEADERS: Final[frozenset[str]] = frozenset({"content-length", "transfer-encoding", "host"})

_logger = logging.getLogger("isolde.sidecar")


class SidecarError(IsoldeError):
    """The sidecar could not start (port taken and pinned, bad address) or is closed."""


def is_loopback_host(value: str) -> bool:
    """True for a ``Host`` header naming this machine's loopback: ``localhost``,
    ``127.0.0.0/8`` or ``[::1]``, each with or without ``:port``.

    A DNS-rebinding page reaches 127.0.0.1 under the attacker's own domain name,
    so the browser sends that name as ``Host``; refusing every other name is
    what makes the attack fail.
    """
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return False
        host, rest = v[1:end], v[end + 1 :]
        if rest and not (rest[0] == ":" and _is_port(rest[1:])):
            return False
        try:
            return ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    host, sep, port = v.partition(":")
    if sep and not _is_port(port):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def _bind_address(host: str) -> tuple[str, socket.AddressFamily]:
    """The literal address to bind for a configured loopback host.

    ``localhost`` is bound as 127.0.0.1 rather than resolved: resolution may
    give ::1 first or, on a misconfigured machine, something that is not
    loopback at all.
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return DEFAULT_HOST, socket.AF_INET
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        addr = None
    if addr is None or not addr.is_loopback:
        raise SidecarError(
            f"sidecar host {host!r} is not a loopback address (use 127.x.x.x, ::1 or localhost): "
            "the sidecar hands out variables to whoever can reach it"
        )
    return str(addr), socket.AF_INET6 if addr.version == 6 else socket.AF_INET


@dataclass(slots=True)
class _Grant:
    """What one action id may reach, and how many of its writes are under way."""

    namespace: str
    workflow: str
    instance: str
    log: Callable[[str], None]
    active: int = 0
    revoked: bool = False


class _Refused(Exception):
    """Ends a request with an error answer (raised inside the handler only)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.grant: _Grant | None = None  # set when the aid was valid: the refusal is logged there too
        self.extra = ""  # more header lines for the answer


class _Handler(socketserver.StreamRequestHandler):
    """One connection; its requests are served one after another (keep-alive).

    The request head is parsed here rather than by ``BaseHTTPRequestHandler``:
    that one hands every header block to the ``email`` package, which cost
    about a third of a small request's time (benchmarks/bench_sidecar.py).  The
    parser is strict where leniency could be abused (request smuggling):
    duplicate ``Content-Length`` / ``Transfer-Encoding`` / ``Host``, header
    names that are not tokens and obsolete line folding are refused with 400.
    """

    disable_nagle_algorithm = True  # headers and body leave in one write; no 40 ms stalls
    timeout = IDLE_TIMEOUT
    server: _Server

    close_connection = True
    command = ""
    path = ""
    version = b"HTTP/1.1"
    headers: dict[str, str]
    # The request body has not been read yet: an error answer must then close
    # the connection, since the unread bytes would be taken for the next request.
    _unread = False
    _host_ok: str | None = None

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self._unread = False
        try:
            head = self._read_head()
        except _Refused as exc:
            self.close_connection = True
            self._send_error(exc.status, exc.message)
            return
        except (TimeoutError, ConnectionError):
            self.close_connection = True
            return
        if not head:
            self.close_connection = True
            return
        headers = self.headers
        self._unread = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        try:
            self._serve()
        except _Refused as exc:
            self._refuse(exc)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:  # a bug or a failing log sink: answer, don't just hang up
            _logger.error("sidecar: unexpected error while serving %s %s", self.command, self.path[:200], exc_info=exc)
            self.close_connection = True
            self._send_error(500, f"internal error in the sidecar: {type(exc).__name__}: {exc}")

    def _read_head(self) -> bool:
        """Request line and headers into ``command``, ``path``, ``headers``
        (lower-case names); False at a clean end of the connection."""
        readline = self.rfile.readline
        line = readline(_MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):  # RFC 9112: ignore an empty line before a request
            line = readline(_MAX_LINE + 1)
        if not line:
            return False
        if len(line) > _MAX_LINE:
            raise _Refused(414, f"request line is longer than {_MAX_LINE} bytes")
        parts = line.split()
        if len(parts) != 3:
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _Refused(505, "only HTTP/1.1 and HTTP/1.0 are supported")
        self.command = method.decode("latin-1")
        self.path = target.decode("latin-1")
        self.version = version
        headers: dict[str, str] = {}
        count = 0
        while True:
            line = readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionResetError("client closed the connection inside the request head")
            if len(line) > _MAX_LINE:
                raise _Refused(431, f"a header line is longer than {_MAX_LINE} bytes")
            count += 1
            if count > _MAX_HEADERS:
                raise _Refused(431, f"more than {_MAX_HEADERS} header lines")
            name_b, sep, value_b = line.partition(b":")
            if not sep or not _TOKEN(name_b):  # also refuses obsolete folding (a leading space)
                raise _Refused(400, "malformed header line")
            name = name_b.decode("latin-1").lower()
            value = value_b.strip().decode("latin-1")
            if name in headers:
                if name in _SINGLE_HEADERS:
                    raise _Refused(400, f"duplicate {name} header")
                value = f"{headers[name]}, {value}"
            headers[name] = value
        self.headers = headers
        # HTTP/1.0 clients get one request per connection: simpler than
        # negotiating keep-alive with the few that still exist.
        self.close_connection = version != b"HTTP/1.1" or "close" in headers.get("connection", "").lower()
        return True

    # -- requests --------------------------------------------------------------
    def _serve(self) -> None:
        headers = self.headers
        if "origin" in headers or "sec-fetch-site" in headers:
            raise _Refused(403, "requests from web browsers are refused (the request has an Origin or Sec-Fetch-Site header)")
        host = headers.get("host")
        if host is not None and host != self._host_ok:
            if not is_loopback_host(host):
                raise _Refused(403, f"Host {host[:100]!r} is not a loopback address (use 127.0.0.1, localhost or [::1])")
            self._host_ok = host  # a client sends the same Host on every request of a connection
        parts = urlsplit(self.path)
        path = parts.path
        if path not in ("/var", "/log"):
            raise _Refused(404, f"no such path {path[:100]!r} (the sidecar serves /var and /log)")
        method = self.command
        if method not in ("GET", "POST"):
            raise _Refused(405, f"method {method} is not allowed on {path} (use GET or POST)")
        query = dict(reversed(parse_qsl(parts.query, keep_blank_values=True)))  # first value wins, as in Go
        sidecar = self.server.sidecar
        grant = sidecar._grants.get(query.get("aid", ""))
        if grant is None:
            raise _Refused(404, "unknown action id (aid): it is valid only while its action runs")
        try:
            if path == "/var":
                self._var(sidecar, grant, query, method == "POST")
            else:
                self._log(sidecar, grant, query, method == "POST")
        except _Refused as exc:
            if not grant.revoked and exc.status != 412:  # a lost compare-and-set race is routine
                exc.grant = grant
            raise
        except StoreError as exc:
            code = getattr(exc, "code", "")
            status = 400 if code == "direktiv.var.invalidKey" else 507 if code == "isolde.store.full" else 500
            refused = _Refused(status, f"variable store: {exc}")
            refused.grant = grant
            raise refused from None

    def _var(self, sidecar: Sidecar, grant: _Grant, query: dict[str, str], post: bool) -> None:
        scope = query.get("scope") or "instance"
        key = query.get("key", "")
        try:
            check_scope(scope)
            check_key(key)
        except StoreError as exc:
            raise _Refused(400, str(exc)) from None
        owner = grant.instance if scope == "instance" else grant.workflow if scope == "workflow" else ""
        ref = Ref(grant.namespace, scope, owner, key)
        if not post:
            with sidecar._writing(grant):
                var = sidecar.store.get(ref)
            if var is None:
                self._reply(200, b"")
            else:
                self._reply(200, var.data, var.mime or None, f'ETag: "{var.version}"\r\n')
            return
        conditional, expected = self._precondition()
        data = self._read_body(sidecar.max_body, "[sidecar] max_body and [limits] max_variable_bytes")
        mime = (self.headers.get("content-type") or _OCTETS) if data else _OCTETS
        register = (grant.namespace, grant.instance) if scope == "instance" and data else None
        store = sidecar.store
        if not conditional:
            with sidecar._writing(grant):
                store.write([Put(ref, data or None, mime)], register_instance=register)
            self._ok()
            return
        with sidecar._writing(grant):
            if register is not None:
                store.write([], register_instance=register)  # before the variable can exist
            done = store.compare_and_set(ref, expected, data or None, mime)
            current = None if done else store.get(ref)
        if not done:
            now = f"is at version {current.version}" if current is not None else "does not exist"
            refused = _Refused(412, f"variable {key!r} ({scope}) {now}: the precondition failed, nothing was written "
                                    "(read it again and retry with its new ETag)")
            if current is not None:
                refused.extra = f'ETag: "{current.version}"\r\n'
            raise refused
        self._reply(200, b"", None, f'ETag: "{done}"\r\n' if data else "")

    def _precondition(self) -> tuple[bool, int | None]:
        """``If-Match: "<version>"`` (the ETag a GET gave) or ``If-None-Match: *``
        (must not exist) make a POST a compare-and-set: a race-free
        read-modify-write for isolates.  Returns (conditional, expected version
        or None for "must not exist")."""
        headers = self.headers
        match = headers.get("if-match")
        none_match = headers.get("if-none-match")
        if match is None and none_match is None:
            return False, None
        if match is not None and none_match is not None:
            raise _Refused(400, "send either If-Match or If-None-Match, not both")
        if none_match is not None:
            if none_match != "*":
                raise _Refused(400, 'If-None-Match on POST /var must be * ("create only if it does not exist")')
            return True, None
        assert match is not None
        text = match[1:-1] if len(match) >= 2 and match[0] == match[-1] == '"' else match
        if not (text.isascii() and text.isdigit() and 0 < int(text) < 1 << 63):
            raise _Refused(400, f'If-Match must be the ETag a GET returned, like "3"; got {match[:40]!r}')
        return True, int(text)

    def _log(self, sidecar: Sidecar, grant: _Grant, query: dict[str, str], post: bool) -> None:
        if post:
            text = self._read_body(sidecar.max_log, "[sidecar] max_log").decode("utf-8", "replace")
        else:
            text = query.get("log", "")
        text = text.rstrip("\r\n")
        if text:
            with sidecar._writing(grant):
                grant.log(text)
        self._ok()

    # -- bodies ------------------------------------------------------------------
    def _read_body(self, limit: int, setting: str) -> bytes:
        """The whole request body, refusing (413) anything over ``limit`` before
        reading it: from Content-Length up front, or as chunks arrive."""
        headers = self.headers
        te = headers.get("transfer-encoding")
        text = headers.get("content-length")
        if te is not None:
            if te.lower() != "chunked" or text is not None:
                raise _Refused(400, f"unsupported Transfer-Encoding {te[:50]!r} (send Content-Length or chunked)")
            self._continue()
            return self._read_chunked(limit, setting)
        if text is None:
            self._unread = False
            return b""
        if not (text.isascii() and text.isdigit()):
            raise _Refused(400, "invalid Content-Length header")
        size = int(text)
        if size > limit:
            raise _Refused(413, _too_large(size, limit, setting))
        self._continue()
        data = self.rfile.read(size) if size else b""
        if len(data) < size:
            raise ConnectionResetError("client closed the connection inside the body")
        self._unread = False
        return data

    def _read_chunked(self, limit: int, setting: str) -> bytes:
        parts: list[bytes] = []
        total = 0
        rfile = self.rfile
        while True:
            line = rfile.readline(1026)
            if not line.endswith(b"\n"):
                raise _Refused(400, "malformed chunked body")
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX(size_text):  # int(x, 16) alone would also take "0x1f", "+1f" and "1_f"
                raise _Refused(400, "malformed chunk size in chunked body")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > limit:
                raise _Refused(413, _too_large(total, limit, setting, at_least=True))
            chunk = rfile.read(size)
            if len(chunk) < size:
                raise ConnectionResetError("client closed the connection inside the body")
            parts.append(chunk)
            if rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _Refused(400, "malformed chunked body")
        for _ in range(_MAX_HEADERS + 1):  # trailers, ignored
            line = rfile.readline(_MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
        else:
            raise _Refused(431, f"more than {_MAX_HEADERS} trailer lines")
        self._unread = False
        return b"".join(parts)

    def _continue(self) -> None:
        if self.headers.get("expect", "").lower() == "100-continue" and self.version == b"HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- answers -----------------------------------------------------------------
    def _reply(self, status: int, body: bytes, mime: str | None = None, extra: str = "") -> None:
        """Status line, headers and body in one write (one packet for small answers)."""
        if self._unread:  # a body we did not read would be taken for the next request
            self.close_connection = True
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Length: {len(body)}\r\n{extra}"
        if mime is not None:
            head += f"Content-Type: {_header_safe(mime)}\r\n"
        if self.close_connection:
            head += "Connection: close\r\n"
        data = head.encode("latin-1", "replace") + b"\r\n"
        if len(body) < 65536:
            self.wfile.write(data + body)
        else:
            self.wfile.write(data)
            self.wfile.write(body)

    def _ok(self) -> None:
        """The empty 200 that answers a write (the most frequent answer)."""
        if self.close_connection or self._unread:
            self._reply(200, b"")
        else:
            self.wfile.write(_OK_EMPTY)

    def _send_error(self, status: int, message: str, extra: str = "") -> None:
        body = json.dumps({"error": message}).encode()
        try:
            self._reply(status, body, "application/json", extra)
        except OSError:
            self.close_connection = True

    def _refuse(self, exc: _Refused) -> None:
        if exc.grant is not None:  # logged first: once the client has the answer, the log has the line
            self.server.sidecar._log_refusal(exc.grant, f"{self.command} {urlsplit(self.path).path}", exc)
        if self._unread:
            self._skip_small_body()
        extra = f"Allow: {_ALLOW}\r\n" if exc.status == 405 else exc.extra
        self._send_error(exc.status, exc.message, extra)
        if self._unread:
            self._linger()

    def _skip_small_body(self) -> None:
        """Drop a small unread body that is already on its way, so the
        connection survives a refused request (keep-alive)."""
        headers = self.headers
        text = headers.get("content-length", "")
        if "transfer-encoding" in headers or "expect" in headers or not (text.isascii() and text.isdigit()):
            return
        size = int(text)
        if size <= _SKIP_BODY and len(self.rfile.read(size)) == size:
            self._unread = False

    def _linger(self) -> None:
        """Read and drop what the client still sends for a moment before closing.

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy our error answer before the client reads it; a client that
        is still uploading an oversized body would then see "connection reset"
        instead of the 413 telling it why.
        """
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.25)
            budget = 8 << 20
            while budget > 0:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass


def _too_large(size: int, limit: int, setting: str, *, at_least: bool = False) -> str:
    amount = f"at least {size}" if at_least else str(size)
    return f"body of {amount} bytes is over the sidecar's {limit}-byte limit (raise {setting} in isolde.toml)"


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so ``close`` can end them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, sidecar: Sidecar) -> None:
        self.address_family = family
        self.sidecar = sidecar
        self.conns: dict[socket.socket, threading.Thread] = {}
        self.conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would also look up the host's FQDN (a DNS
        # query, sometimes slow) only to fill server_name, which we never use.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.conns_lock:
            if len(self.conns) >= MAX_CONNECTIONS:
                full = True
            else:
                full = False
                thread = threading.Thread(
                    target=self._connection, args=(request, client_address),
                    name="isolde-sidecar-conn", daemon=True,
                )
                self.conns[request] = thread
        if full:
            body = json.dumps({"error": f"too many connections (at most {MAX_CONNECTIONS})"}).encode()
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        thread.start()

    def _connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:
            self.handle_error_exc(exc)
        finally:
            self.shutdown_request(request)
            with self.conns_lock:
                self.conns.pop(request, None)

    def handle_error_exc(self, exc: BaseException) -> None:
        # A client that hangs up or stalls is normal; anything else is a bug,
        # which must not kill the server but should be seen.
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        _logger.error("sidecar: unexpected error while serving a request", exc_info=exc)


class Sidecar:
    """Loopback HTTP server through which a running isolate reads and writes variables and logs.

    The server starts on the first :meth:`grant` (or :attr:`address`), not
    before: most workflows never call an isolate.  Several isolde processes on
    one machine coexist: when the port is taken, a free one is used and
    ``notice`` says so, unless ``pinned``, in which case starting fails with a
    :class:`SidecarError` (and the action that needed it fails with it).
    """

    def __init__(
        self,
        store: Any,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        pinned: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        max_log: int = DEFAULT_MAX_LOG,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.pinned = pinned
        self.max_body = max_body
        self.max_log = max_log
        self.notice: Callable[[str], None] = notice or _logger.warning
        self._bind_host, self._family = _bind_address(host)
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._address = ""
        self._closing = False
        self._closed = False

    # -- public API ----------------------------------------------------------------
    def grant(self, namespace: str, workflow: str, instance: str, log: Callable[[str], None]) -> str:
        """A new, unguessable action id reaching exactly these namespace /
        workflow / instance scopes until :meth:`revoke`; starts the server if needed."""
        for value, what in ((namespace, "namespace"), (workflow, "workflow"), (instance, "instance id")):
            if not value or "\x00" in value:
                raise SidecarError(f"sidecar grant: {what} must be a non-empty string without NUL, got {value!r}")
        self._start()
        aid = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[aid] = _Grant(namespace, workflow, instance, log)
        return aid

    def revoke(self, aid: str) -> None:
        """End an action id.  Returns once no write or log of it is under way,
        so nothing it sends lands after its action ended.  Unknown ids are ignored."""
        with self._cond:
            grant = self._grants.pop(aid, None)
            if grant is None:
                return
            grant.revoked = True
            self._cond.wait_for(lambda: grant.active == 0, timeout=REVOKE_WAIT)

    def revoke_instance(self, instance: str) -> None:
        """End every action id of an instance (it has ended): a call still running for it
        -- a foreach item or parallel branch the state no longer waits for -- can no
        longer write, so nothing lands after the instance's variables were removed."""
        with self._cond:
            aids = [aid for aid, g in self._grants.items() if g.instance == instance]
        for aid in aids:
            self.revoke(aid)

    @property
    def address(self) -> str:
        """``host:port`` isolates reach the sidecar at (``[::1]:port`` for IPv6);
        starts the server if needed."""
        self._start()
        return self._address

    @property
    def running(self) -> bool:
        return self._server is not None and not self._closing

    def close(self) -> None:
        """Stop accepting, end open connections and join their threads; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            server, thread = self._server, self._thread
            self._grants.clear()
        if server is None:
            return
        try:
            server.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocking accept() (Linux)
        except OSError:
            pass
        if thread is not None:
            thread.join(0.2)
            if thread.is_alive():  # elsewhere shutdown may not wake accept(): connect once
                try:
                    socket.create_connection(server.server_address[:2], timeout=0.5).close()
                except OSError:
                    pass
                thread.join(2.0)
        server.server_close()
        with server.conns_lock:
            conns = list(server.conns.items())
        for conn, _ in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading
            except OSError:
                pass
        for _, t in conns:
            t.join(2.0)

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------
    def _start(self) -> None:
        if self._server is not None and not self._closing:
            return
        with self._lock:
            if self._closed:
                raise SidecarError("the sidecar is closed (its engine was closed)")
            if self._server is not None:
                return
            server = self._bind()
            host, port = server.server_address[:2]
            self._address = f"[{host}]:{port}" if self._family == socket.AF_INET6 else f"{host}:{port}"
            thread = threading.Thread(target=self._accept_loop, args=(server,), name="isolde-sidecar", daemon=True)
            self._server, self._thread = server, thread
            thread.start()

    def _bind(self) -> _Server:
        try:
            return _Server((self._bind_host, self.port), self._family, self)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise SidecarError(f"sidecar cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
            if self.pinned:
                raise SidecarError(
                    f"sidecar port {self.port} on {self._bind_host} is taken (another isolde process or program "
                    "listens there) and [sidecar] pinned = true: free the port, choose another [sidecar] port, "
                    "or set pinned = false to let isolde pick a free one"
                ) from None
        try:
            server = _Server((self._bind_host, 0), self._family, self)
        except OSError as exc:
            raise SidecarError(f"sidecar cannot listen on {self._bind_host}: {exc.strerror or exc}") from None
        host, port = server.server_address[:2]
        shown = f"[{host}]:{port}" if self._family == socket.AF_INET6 else f"{host}:{port}"
        self.notice(
            f"sidecar port {self.port} is taken; using {shown} "
            "(isolates learn it from Direktiv-Sidecar / DIREKTIV_SIDECAR)"
        )
        return server

    def _accept_loop(self, server: _Server) -> None:
        while not self._closing:
            try:
                request, client_address = server.get_request()
            except OSError as exc:
                if self._closing:
                    break
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: let connections finish first
                continue
            if self._closing:
                server.shutdown_request(request)
                break
            server.process_request(request, client_address)

    def _writing(self, grant: _Grant) -> _InFlight:
        return _InFlight(self, grant)

    def _log_refusal(self, grant: _Grant, request: str, exc: _Refused) -> None:
        """Tell the instance log why an isolate's request was refused (isolates
        often ignore the answer); never after the grant was revoked."""
        try:
            with self._writing(grant):
                grant.log(f"sidecar: {request} refused ({exc.status}): {exc.message}")
        except _Refused:
            pass
        except Exception as err:  # the log sink failing must not break the answer
            _logger.error("sidecar: instance log failed", exc_info=err)


class _InFlight:
    """Marks a store operation or log call of a grant as under way (for ``revoke``)."""

    __slots__ = ("_sidecar", "_grant")

    def __init__(self, sidecar: Sidecar, grant: _Grant) -> None:
        self._sidecar = sidecar
        self._grant = grant

    def __enter__(self) -> None:
        with self._sidecar._lock:
            if self._grant.revoked:
                raise _Refused(404, "the action id (aid) was revoked: its action has ended")
            self._grant.active += 1

    def __exit__(self, *exc: object) -> None:
        cond = self._sidecar._cond
        with cond:
            self._grant.active -= 1
            if self._grant.active == 0 and self._grant.revoked:
                cond.notify_all()


# --------------------------------------------------------------------------- config


def sidecar_settings(config: Any) -> dict[str, Any]:
    """The ``[sidecar]`` table, checked: unknown keys, types and a non-loopback
    host are configuration errors (ConfigError naming the setting)."""
    where = str(config.path) if getattr(config, "path", None) else "config"
    table = config.data.get("sidecar", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [sidecar] must be a table")
    for key in table:
        if key not in _SETTINGS:
            raise ConfigError(f"{where}: unknown setting [sidecar] {key!r} (known: {', '.join(_SETTINGS)})")
    host = table.get("host", DEFAULT_HOST)
    if not isinstance(host, str):
        raise ConfigError(f"{where}: [sidecar] host must be a string")
    try:
        _bind_address(host)
    except SidecarError:
        raise ConfigError(
            f"{where}: [sidecar] host {host!r} must be a loopback address (127.x.x.x, ::1 or localhost): "
            "the sidecar serves variables to anyone who can reach it"
        ) from None
    port = table.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}: [sidecar] port must be an integer from 0 to 65535 (0 = any free port), got {port!r}")
    pinned = table.get("pinned", False)
    if not isinstance(pinned, bool):
        raise ConfigError(f"{where}: [sidecar] pinned must be true or false, got {pinned!r}")
    out: dict[str, Any] = {"host": host, "port": port, "pinned": pinned}
    for name, default in (("max_body", DEFAULT_MAX_BODY), ("max_log", DEFAULT_MAX_LOG)):
        value = table.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: [sidecar] {name} must be a positive number of bytes, got {value!r}")
        out[name] = value
    return out


def sidecar_for(engine: Engine) -> Sidecar:
    """The engine's sidecar, made on first use from ``[sidecar]`` (host, port,
    pinned, max_body, max_log) and closed with the engine.  A variable written
    through it is also bounded by ``[limits] max_variable_bytes``.  The server
    itself starts only when the first action is granted an id."""

    def make() -> Sidecar:
        settings = sidecar_settings(engine.config)
        settings["max_body"] = min(settings["max_body"], int(engine.config.limit("max_variable_bytes")))
        return Sidecar(engine.store, **settings)

    return engine.resource("sidecar", make)
