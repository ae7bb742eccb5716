"""One sidecar connection: its requests served one after another (keep-alive), and the answers.

Limits (the reading side is ``framing.py``'s):

* the request line and header fields together at most ``MAX_HEAD`` bytes (431, 414
  for a request line alone over it);
* a request must arrive whole (head and body) within ``request_timeout`` seconds of
  its first byte (408, then the connection is closed); between requests a
  kept-alive connection may wait ``IDLE_TIMEOUT``;
* bodies over the route's limit are refused (413) from ``Content-Length`` or while
  a chunked body arrives, never held whole in memory (``body.py``).

Each answer leaves in one write (``TCP_NODELAY`` is set by the server).
HTTP/1.0 clients get one request per connection.
"""

from __future__ import annotations

import json
import logging
import socket
from http import HTTPStatus
from typing import Callable, Final, Mapping

from .body import Body
from .errors import RequestTimeout
from .framing import Closed, Head, Wire
from .grants import Grant, Grants
from .refused import Refused
from .routes import OK, Routes
from .settings import IDLE_TIMEOUT

_logger = logging.getLogger("isolde.sidecar")

_SKIP_BODY: Final[int] = 65536
"""An unread body up to this size is read and dropped after a refusal, keeping the connection."""
_REASONS: Final[dict[int, str]] = {s.value: s.phrase for s in HTTPStatus}
_OK_EMPTY: Final[bytes] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_CONTINUE: Final[bytes] = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON: Final[tuple[bytes, bytes]] = (b"Content-Type", b"application/json")


class Connection:
    """Serves one accepted socket until it closes; :meth:`run` is its thread's body.

    It is the ``Exchange`` of ``routes.py`` for the request being served;
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
        self.wire = Wire(sock, request_timeout)
        self.head = Head("", "", b"HTTP/1.1", {})
        self.close = False  # answer with Connection: close and end after this request
        self.unread = False  # the request's body has not been read (yet)

    # -- Exchange (routes.py) -----------------------------------------------------------
    @property
    def method(self) -> str:
        return self.head.method

    @property
    def target(self) -> str:
        return self.head.target

    @property
    def headers(self) -> Mapping[str, str]:
        return self.head.headers

    def read_body(self, limit: int, setting: str) -> Body:
        body = self.wire.read_body(self.head, limit, setting, self._continue)
        self.unread = False
        return body

    def claim(self, grant: Grant) -> None:
        self._claim(grant)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while self._one() and not self.close:
                pass
        except (Closed, OSError):
            pass  # a client that hangs up or stalls is normal; nothing to answer

    def _one(self) -> bool:
        """Serve one request; False when the connection is to end."""
        self.unread = False
        self.close = True  # until a head says otherwise
        self.head = Head("", "", b"HTTP/1.1", {})
        try:
            head = self.wire.read_head()
        except Refused as exc:
            self._error(exc.status, exc.message)
            return False
        except RequestTimeout:
            self._error(408, f"the request did not arrive whole within {self.request_timeout:g} s "
                             "([sidecar] request_timeout)")
            return False
        if head is None:
            return False
        self.head = head
        headers = head.headers
        self.close = head.version != b"HTTP/1.1" or "close" in headers.get("connection", "").lower()
        self.unread = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        try:
            answer = self.routes.serve(self)
        except Refused as exc:
            self._refuse(exc)
            return True
        except RequestTimeout:
            self.close = True
            self._error(408, f"the request body did not arrive within {self.request_timeout:g} s "
                             "([sidecar] request_timeout)")
            return False
        except (Closed, OSError):
            raise
        except Exception as exc:  # a bug or a failing log sink: answer, don't just hang up
            _logger.error("sidecar: unexpected error while serving %s %s", head.method, head.target[:200], exc_info=exc)
            self.close = True
            self._error(500, f"internal error in the sidecar: {type(exc).__name__}: {exc}")
            return False
        if answer is OK and not self.close and not self.unread:
            self._write(_OK_EMPTY)  # the answer to most writes
        else:
            self._send(answer.status, answer.body, answer.headers)
        return True

    # -- answering -------------------------------------------------------------------
    def _continue(self) -> None:
        if self.head.headers.get("expect", "").lower() == "100-continue" and self.head.version == b"HTTP/1.1":
            self._write(_CONTINUE)

    def _send(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Status line, header fields and body in one write (one packet for small answers)."""
        if self.unread:  # a body we did not read would be taken for the next request
            self.close = True
        head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, _REASONS.get(status, "").encode(), len(body))
        for name, value in headers:
            head += b"%s: %s\r\n" % (name, value)
        if self.close:
            head += b"Connection: close\r\n"
        head += b"\r\n"
        if self.head.method == "HEAD":  # a HEAD answer has the header fields of GET, no body
            self._write(head)
        elif len(body) < 65536:
            self._write(head + body)
        else:
            self._write(head)
            self._write(body)

    def _write(self, data: bytes) -> None:
        self.wire.settle_timeout(IDLE_TIMEOUT)
        self.sock.sendall(data)

    def _error(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        try:
            self._send(status, body, [_JSON, *(headers or ())])
        except OSError:
            self.close = True

    def _refuse(self, exc: Refused) -> None:
        if exc.grant is not None:  # logged first: once the client has the answer, the log has the line
            self.grants.log_refusal(
                exc.grant, f"{self.head.method} {self.head.target.split('?', 1)[0][:100]}", exc.status, exc.message
            )
        if self.unread:
            self._skip_small_body()
        self._error(exc.status, exc.message, exc.headers)
        if self.unread:
            self._linger()

    def _skip_small_body(self) -> None:
        """Drop a small unread body that is already on its way, so the
        connection survives a refused request (keep-alive)."""
        headers = self.head.headers
        text = headers.get("content-length", "")
        if "transfer-encoding" in headers or "expect" in headers or not text.isdigit() or int(text) > _SKIP_BODY:
            return
        if self.wire.skip(int(text)):
            self.unread = False

    def _linger(self) -> None:
        """Read and drop what the client still sends for a moment before closing.

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy our error answer before the client reads it; a client that
        is still uploading an oversized body would then see "connection reset"
        instead of the 413 telling it why.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.wire.settle_timeout(0.25)
            budget = 8 << 20
            while budget > 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass
