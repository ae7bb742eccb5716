"""HTTP/1.1 request framing off one socket: heads and bodies, within size and time limits.

The parser is strict where leniency could be abused (request smuggling):
duplicate ``Content-Length`` / ``Transfer-Encoding`` / ``Host``, both of the
first two together, other transfer codings, header names that are not tokens,
obsolete line folding (``isolde.httphead``, shared with the API server) and
malformed chunking are refused with 400.

It is our own rather than h11's: measured side by side (benchmarks/bench_sidecar.py
``--baseline``), h11 doubled the server's CPU per ``POST /var`` (fast store: 58 %
of this parser's rate; durable: 80 %), above the 10 % issue 9 allows.  The head
is cut out of the buffer with one search and split with one call, so a small
request costs a few microseconds of parsing.

Every read is bounded by a deadline: ``IDLE_TIMEOUT`` while a kept-alive
connection waits for a request, then ``request_timeout`` from the request's
first byte until its last (:class:`RequestTimeout`), so a client dripping a
byte now and then cannot hold a connection.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Final

from ..httphead import MAX_FIELDS, HeadError, parse_fields, parse_request_line
from .body import EMPTY, Body, BodySink
from .errors import RequestTimeout
from .refused import Refused
from .settings import IDLE_TIMEOUT, MAX_HEAD

_RECV: Final[int] = 65536
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}").fullmatch


class Closed(Exception):
    """The client went away (or the connection was evicted, or sat idle too long)."""


class Head:
    """A request line and its header fields (lower-case names; repeats joined with ", ")."""

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: bytes, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers


class Wire:
    """Buffered, deadline-bounded reading of requests from ``sock``."""

    __slots__ = ("sock", "buf", "deadline", "request_timeout", "_timeout")

    def __init__(self, sock: socket.socket, request_timeout: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.request_timeout = request_timeout
        self.deadline: float | None = None  # when the current request must have arrived whole
        self._timeout = -1.0

    def _fill(self) -> None:
        """Receive more bytes; the first byte of a request starts its deadline."""
        deadline = self.deadline
        if deadline is None:
            timeout = IDLE_TIMEOUT
        else:
            timeout = deadline - time.monotonic()
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
        if not data:
            raise Closed("the client closed the connection")
        if deadline is None:
            self.deadline = time.monotonic() + self.request_timeout
        self.buf += data

    def settle_timeout(self, timeout: float) -> None:
        """Use ``timeout`` for the socket (writing answers)."""
        if self._timeout != timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    # -- heads -----------------------------------------------------------------------
    def read_head(self) -> Head | None:
        """The next request's head; None at a clean end of the connection."""
        buf = self.buf
        self.deadline = time.monotonic() + self.request_timeout if buf else None
        start = 0
        while True:
            while True:  # RFC 9112: ignore empty lines before a request
                if buf.startswith(b"\r\n", start):
                    start += 2
                elif buf.startswith(b"\n", start):
                    start += 1
                else:
                    break
            end = buf.find(b"\n\r\n", start)
            cut = 3
            bare = buf.find(b"\n\n", start)
            if bare >= 0 and (end < 0 or bare < end):
                end, cut = bare, 2
            if end >= 0:
                break
            if len(buf) - start > MAX_HEAD:
                if buf.find(b"\n", start) < 0:
                    raise Refused(414, f"request line is longer than {MAX_HEAD} bytes")
                raise Refused(431, f"request head is over {MAX_HEAD} bytes")
            try:
                self._fill()
            except Closed:
                if len(buf) == start:
                    return None
                raise
        if end - start > MAX_HEAD:
            raise Refused(431, f"request head is over {MAX_HEAD} bytes")
        head = bytes(buf[start:end])
        del buf[: end + cut]
        return _parse_head(head)

    # -- bodies ----------------------------------------------------------------------
    def read_body(self, head: Head, limit: int, setting: str, on_accept: object = None) -> Body:
        """The body of ``head``'s request; refused (413) over ``limit`` before it is read:
        from Content-Length, or as chunks arrive.  ``on_accept`` (a callable) runs
        once the body is accepted, before it is read (``100 Continue``)."""
        headers = head.headers
        te = headers.get("transfer-encoding")
        if te is not None:
            _accept(on_accept)
            return self._read_chunked(limit, setting)
        text = headers.get("content-length")
        if text is None:
            return EMPTY
        size = int(text)  # checked by _parse_head
        if size > limit:
            raise Refused(413, too_large(size, limit, setting))
        if size == 0:
            return EMPTY
        _accept(on_accept)
        buf = self.buf
        if size <= len(buf):  # already here (a small body arrives with its head): no sink
            data = bytes(buf[:size])
            del buf[:size]
            return Body(data, size)
        sink = BodySink(size)
        try:
            self._read_into(sink, size)
            return sink.finish()
        except BaseException:
            sink.discard()
            raise

    def _read_into(self, sink: BodySink, size: int) -> None:
        buf = self.buf
        while size > 0:
            if not buf:
                self._fill()
            take = min(size, len(buf))
            sink.add(bytes(buf[:take]))
            del buf[:take]
            size -= take

    def _line(self, limit: int) -> bytes:
        """One line (without its end) of at most ``limit`` bytes, for chunk sizes and trailers."""
        buf = self.buf
        while True:
            end = buf.find(b"\n")
            if end >= 0:
                line = bytes(buf[:end])
                del buf[: end + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(buf) > limit:
                raise Refused(400, "malformed chunked body")
            self._fill()

    def _read_chunked(self, limit: int, setting: str) -> Body:
        sink = BodySink(None)
        try:
            while True:
                size_text = self._line(1024).split(b";", 1)[0].strip()
                if not _HEX(size_text):  # int(x, 16) alone would also take "0x1f", "+1f" and "1_f"
                    raise Refused(400, "malformed chunk size in chunked body")
                size = int(size_text, 16)
                if size == 0:
                    break
                if sink.size + size > limit:
                    raise Refused(413, too_large(sink.size + size, limit, setting, at_least=True))
                self._read_into(sink, size)
                if self._line(2) != b"":
                    raise Refused(400, "malformed chunked body")
            for _ in range(MAX_FIELDS + 1):  # trailers, ignored
                if self._line(MAX_HEAD) == b"":
                    break
            else:
                raise Refused(431, f"more than {MAX_FIELDS} trailer lines")
            return sink.finish()
        except BaseException:
            sink.discard()
            raise

    def skip(self, size: int) -> bool:
        """Read and drop ``size`` body bytes; False when that fails."""
        try:
            while size > 0:
                if not self.buf:
                    self._fill()
                take = min(size, len(self.buf))
                del self.buf[:take]
                size -= take
        except (Closed, RequestTimeout, OSError):
            return False
        return True


def _accept(on_accept: object) -> None:
    if callable(on_accept):
        on_accept()


def _parse_head(head: bytes) -> Head:
    first, *lines = head.split(b"\n")
    try:
        method, target, version = parse_request_line(first)
        return Head(method, target, version, parse_fields(lines))
    except HeadError as exc:
        raise Refused(exc.status, exc.message) from None


def too_large(size: int, limit: int, setting: str, *, at_least: bool = False) -> str:
    amount = f"at least {size}" if at_least else str(size)
    return f"body of {amount} bytes is over the sidecar's {limit}-byte limit (raise {setting} in isolde.toml)"
