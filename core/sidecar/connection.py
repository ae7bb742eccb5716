"""One sidecar connection: HTTP/1.1 framing with h11, time and size limits, answers.

Requests of a connection are served one after another (keep-alive).  Limits:

* the request line and header fields together at most ``MAX_HEAD`` bytes (431);
* a request must arrive whole (head and body) within ``request_timeout``
  seconds of its first byte (408, then the connection is closed), so a client
  that drips a byte now and then cannot hold a connection; between requests a
  kept-alive connection may wait ``IDLE_TIMEOUT``;
* bodies over the route's limit are refused (413) from ``Content-Length`` or
  while a chunked body arrives, never held whole in memory (``body.py``);
* duplicate ``Host``, ``Content-Length`` with ``Transfer-Encoding``, other
  transfer codings, malformed chunking and header lines are refused (400), as
  request smuggling needs leniency there.

Each answer leaves in one write (``TCP_NODELAY`` is set by the server).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from http import HTTPStatus
from typing import Callable, Final, Mapping

import h11

from .body import EMPTY, Body, BodySink
from .errors import RequestTimeout
from .grants import Grant, Grants
from .refused import Refused
from .routes import Answer, Routes
from .settings import IDLE_TIMEOUT, MAX_HEAD

_logger = logging.getLogger("isolde.sidecar")

_RECV: Final[int] = 65536
_SKIP_BODY: Final[int] = 65536
"""An unread body up to this size is read and dropped after a refusal, keeping the connection."""
_REASONS: Final[dict[int, bytes]] = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON: Final[tuple[bytes, bytes]] = (b"Content-Type", b"application/json")
_CLOSE: Final[tuple[bytes, bytes]] = (b"Connection", b"close")
_CONTINUE: Final = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
_END: Final = h11.EndOfMessage()
_OK_EMPTY: Final = h11.Response(status_code=200, headers=[(b"Content-Length", b"0")], reason=b"OK")
"""The answer to most writes, built (and checked by h11) once."""


class Closed(Exception):
    """The client went away (or the connection was evicted) mid-request."""


class Connection:
    """Serves one accepted socket until it closes; :meth:`run` is its thread's body.

    ``claim`` is called with the grant of each request carrying a live action id
    (the server keeps such connections when it is full).
    """

    def __init__(self, sock: socket.socket, routes: Routes, grants: Grants, *,
                 request_timeout: float, claim: Callable[[Grant], None]) -> None:
        self.sock = sock
        self.routes = routes
        self.grants = grants
        self.request_timeout = request_timeout
        self._claim = claim
        self.h = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.deadline: float | None = None  # when the current request must have arrived whole
        self._timeout = -1.0
        # The request being served (the Exchange view of routes.py).
        self.method = ""
        self.target = ""
        self.headers: Mapping[str, str] = {}

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        h = self.h
        try:
            while self._one():
                if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                    break
                h.start_next_cycle()
        except (Closed, OSError, h11.LocalProtocolError):
            pass  # a client that hangs up or stalls is normal; nothing to answer

    def _one(self) -> bool:
        """Serve one request; False when the connection is to end."""
        h = self.h
        self.method = ""
        self.deadline = time.monotonic() + self.request_timeout if h.trailing_data[0] else None
        try:
            event = self._next()
        except h11.RemoteProtocolError as exc:
            status = 431 if exc.error_status_hint == 431 else 400
            message = f"request head is over {MAX_HEAD} bytes" if status == 431 else f"malformed request: {exc}"
            self._error(status, message, close=True)
            return False
        except RequestTimeout:
            self._error(408, f"the request did not arrive whole within {self.request_timeout:g} s "
                             "([sidecar] request_timeout)", close=True)
            return False
        if not isinstance(event, h11.Request):
            return False  # ConnectionClosed
        self.method = event.method.decode("latin-1")
        self.target = event.target.decode("latin-1")
        if event.http_version not in (b"1.1", b"1.0"):
            self._error(505, "only HTTP/1.1 and HTTP/1.0 are supported", close=True)
            return False
        headers: dict[str, str] = {}
        for name_b, value_b in event.headers:
            name = name_b.decode("latin-1")
            value = value_b.decode("latin-1")
            if name in headers:
                if name == "host":
                    self._error(400, "duplicate host header", close=True)
                    return False
                value = f"{headers[name]}, {value}"
            headers[name] = value
        if "transfer-encoding" in headers and "content-length" in headers:
            self._error(400, "a request with both Transfer-Encoding and Content-Length is refused", close=True)
            return False
        self.headers = headers
        if "transfer-encoding" not in headers and headers.get("content-length", "0") == "0":
            self._next()  # the EndOfMessage of an empty body: already there, nothing to receive
        try:
            answer = self.routes.serve(self)
        except Refused as exc:
            self._refuse(exc)
            return True
        except RequestTimeout:
            self._error(408, f"the request body did not arrive within {self.request_timeout:g} s "
                             "([sidecar] request_timeout)", close=True)
            return False
        except (Closed, OSError, h11.LocalProtocolError):
            raise
        except Exception as exc:  # a bug or a failing log sink: answer, don't just hang up
            _logger.error("sidecar: unexpected error while serving %s %s", self.method, self.target[:200], exc_info=exc)
            self._error(500, f"internal error in the sidecar: {type(exc).__name__}: {exc}", close=True)
            return False
        self._send(answer.status, answer.body, answer.headers)
        return True

    # -- reading ---------------------------------------------------------------------
    def _next(self) -> h11.Event:
        """The next event of the request, receiving as needed within the deadlines."""
        h = self.h
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                self._receive()
                continue
            assert not isinstance(event, type)  # PAUSED is not seen: the loop starts each cycle
            return event

    def _receive(self) -> None:
        deadline = self.deadline
        timeout = IDLE_TIMEOUT if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            raise RequestTimeout
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout if deadline is None else -1.0
        try:
            data = self.sock.recv(_RECV)
        except TimeoutError:
            if deadline is None:
                raise Closed("idle") from None
            raise RequestTimeout from None
        if deadline is None and data:
            self.deadline = time.monotonic() + self.request_timeout
        self.h.receive_data(data)

    def read_body(self, limit: int, setting: str) -> Body:
        """The request body (Exchange protocol of routes.py): refused with 413
        from ``Content-Length`` before it is invited, or as chunks arrive."""
        h = self.h
        if h.their_state is not h11.SEND_BODY:
            return EMPTY
        length = self.headers.get("content-length")
        expected = int(length) if length is not None else None  # h11 checked it is digits
        if expected is not None and expected > limit:
            raise Refused(413, _too_large(expected, limit, setting))
        if h.they_are_waiting_for_100_continue:
            self._write(h.send(_CONTINUE) or b"")
        sink = BodySink(expected)
        try:
            while True:
                try:
                    event = self._next()
                except h11.RemoteProtocolError as exc:
                    raise Refused(400, f"malformed request body: {exc}") from None
                if isinstance(event, h11.Data):
                    sink.add(event.data)
                    if sink.size > limit:
                        raise Refused(413, _too_large(sink.size, limit, setting, at_least=True))
                elif isinstance(event, h11.EndOfMessage):
                    return sink.finish()
                else:
                    raise Closed("the client closed the connection inside the body")
        except BaseException:
            sink.discard()
            raise

    def claim(self, grant: Grant) -> None:
        self._claim(grant)

    # -- answering -------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], close: bool = False) -> None:
        """Status line, header fields and body in one write."""
        h = self.h
        if h.their_state is h11.SEND_BODY:  # an unread body would be taken for the next request
            close = True
        if status == 200 and not body and not headers and not close:
            response = _OK_EMPTY
        else:
            fields = [(b"Content-Length", b"%d" % len(body)), *headers]
            if close:
                fields.append(_CLOSE)
            response = h11.Response(status_code=status, headers=fields, reason=_REASONS.get(status, b""))
        out = h.send_with_data_passthrough(response) or []
        if body and self.method != "HEAD":  # a HEAD answer has the header fields of GET, no body
            out.extend(h.send_with_data_passthrough(h11.Data(data=body)) or ())
        out.extend(h.send_with_data_passthrough(_END) or ())
        if len(body) < 65536:
            self._write(b"".join(out))
        else:
            for part in out:
                self._write(part)

    def _write(self, data: bytes) -> None:
        if self._timeout != IDLE_TIMEOUT:
            self.sock.settimeout(IDLE_TIMEOUT)
            self._timeout = IDLE_TIMEOUT
        self.sock.sendall(data)

    def _error(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None,
               *, close: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        h = self.h
        if h.our_state is not h11.SEND_RESPONSE and h.our_state is not h11.IDLE:
            return  # nothing can be said on this connection any more
        try:
            self._send(status, body, [_JSON, *(headers or ())], close)
        except (OSError, h11.LocalProtocolError):
            pass

    def _refuse(self, exc: Refused) -> None:
        if exc.grant is not None:  # logged first: once the client has the answer, the log has the line
            self.grants.log_refusal(
                exc.grant, f"{self.method} {self.target.split('?', 1)[0][:100]}", exc.status, exc.message
            )
        h = self.h
        if h.their_state is h11.SEND_BODY:
            self._skip_small_body()
        unread = h.their_state is h11.SEND_BODY or h.their_state is h11.ERROR
        self._error(exc.status, exc.message, exc.headers, close=unread)
        if unread:
            self._linger()

    def _skip_small_body(self) -> None:
        """Drop a small unread body that is already on its way, so the
        connection survives a refused request (keep-alive)."""
        headers = self.headers
        text = headers.get("content-length", "")
        if "transfer-encoding" in headers or "expect" in headers or not text.isdigit() or int(text) > _SKIP_BODY:
            return
        try:
            while not isinstance(self._next(), (h11.EndOfMessage, h11.ConnectionClosed)):
                pass
        except (h11.RemoteProtocolError, RequestTimeout, Closed, OSError):
            pass

    def _linger(self) -> None:
        """Read and drop what the client still sends for a moment before closing.

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy our error answer before the client reads it; a client that
        is still uploading an oversized body would then see "connection reset"
        instead of the 413 telling it why.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.25)
            budget = 8 << 20
            while budget > 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass


def _too_large(size: int, limit: int, setting: str, *, at_least: bool = False) -> str:
    amount = f"at least {size}" if at_least else str(size)
    return f"body of {amount} bytes is over the sidecar's {limit}-byte limit (raise {setting} in isolde.toml)"
