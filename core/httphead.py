"""HTTP/1.1 request heads: the strict rules the API server and the sidecar share.

A request line is three words and HTTP/1.1 or HTTP/1.0; a header field's name is a
token (RFC 9110), so obsolete line folding (a line starting with a space) is refused;
``Content-Length``, ``Transfer-Encoding`` and ``Host`` may appear once, the first two
not together, a transfer coding other than ``chunked`` is refused and a length is
digits only.  Leniency in any of these is what request smuggling feeds on.  Other
repeated fields are joined with ", " (RFC 9110 §5.3).

Parsing a small head costs a few microseconds; ``http.client.parse_headers`` (the
e-mail parser, which the standard ``http.server`` uses) costs 60-70 µs per request in
the daemon, and each ``Message.get`` scans every field again.
"""

from __future__ import annotations

import re
from typing import Final, Sequence

__all__ = ["MAX_FIELDS", "Fields", "HeadError", "parse_fields", "parse_request_line"]

MAX_FIELDS: Final[int] = 100
"""Header lines a request may have."""

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch  # an RFC 9110 field name
_SINGLE: Final[frozenset[str]] = frozenset({"content-length", "transfer-encoding", "host"})
_VERSIONS: Final[frozenset[bytes]] = frozenset({b"HTTP/1.1", b"HTTP/1.0"})


class HeadError(Exception):
    """A malformed request head: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_request_line(line: bytes) -> tuple[str, str, bytes]:
    """``(method, target, version)`` of a request line (its line end stripped or not)."""
    parts = line.rstrip(b"\r\n").split()
    if len(parts) != 3:
        raise HeadError(400, "malformed request line (send METHOD TARGET HTTP/1.1)")
    method, target, version = parts
    if version not in _VERSIONS:
        raise HeadError(505, "only HTTP/1.1 and HTTP/1.0 are supported")
    return method.decode("latin-1"), target.decode("latin-1"), version


def parse_fields(lines: Sequence[bytes]) -> dict[str, str]:
    """The header fields of ``lines`` (each with or without its line end), by lower-case name."""
    if len(lines) > MAX_FIELDS:
        raise HeadError(431, f"more than {MAX_FIELDS} header lines")
    fields: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r\n")
        name_b, sep, value_b = line.partition(b":")
        if not sep or not _TOKEN(name_b):  # also refuses obsolete folding (a leading space)
            raise HeadError(400, f"malformed header line {number} (send NAME: value, the name a token, "
                                 "on one line: folded lines are refused)")
        name = name_b.decode("latin-1").lower()
        value = value_b.strip().decode("latin-1")
        if name in fields:
            if name in _SINGLE:
                raise HeadError(400, f"duplicate {name} header (send it once)")
            value = f"{fields[name]}, {value}"
        fields[name] = value
    te = fields.get("transfer-encoding")
    if te is not None:
        if te.lower() != "chunked" or "content-length" in fields:
            raise HeadError(400, f"unsupported Transfer-Encoding {te[:50]!r} (send Content-Length or chunked, not both)")
    else:
        text = fields.get("content-length")
        if text is not None and not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise HeadError(400, "invalid Content-Length header")
    return fields


class Fields(dict[str, str]):
    """Header fields by lower-case name, read with any case as ``email.message.Message``
    is (``get``, ``in``, ``[]``, ``get_all``): what ``http.server`` handlers expect of
    ``self.headers``."""

    __slots__ = ()

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())

    def __getitem__(self, name: str) -> str | None:  # type: ignore[override]  # None when missing, as Message
        return dict.get(self, name.lower())

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        value = dict.get(self, name.lower())
        return failobj if value is None else [value]
