"""How workflow values become variable bytes and back (SPEC §3), in one place.

Used by the setter and getter states, the CLI and the Python API, so every path
encodes and decodes the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import WorkflowError
from .expr import Expr
from .jsontext import compact
from .store import InvalidKey, check_key

JSON = "application/json"
TEXT = "text/plain"
OCTETS = "application/octet-stream"


dumps = compact()
"""Compact JSON, as Direktiv stores it (the C encoder built once: ``JSONEncoder.encode``
builds one per call, and this is on the hot path).  It has no cycle check: a cyclic value
(only a Python caller can pass one) ends in ``RecursionError``, reported as not JSON."""


def encode(value: Any, mime: str | None) -> tuple[bytes, str]:
    """Bytes and mime type for a value a workflow sets.

    ``application/json`` (default) stores JSON; ``text/plain`` stores a string
    without quotes; ``application/octet-stream`` base64-decodes a string.  Any
    other type stores a string as its UTF-8 text and anything else as JSON.
    """
    mime = mime or JSON
    if mime == JSON:
        try:
            return dumps(value).encode(), mime
        except (TypeError, ValueError) as exc:  # only reachable from Python callers' non-JSON data
            raise WorkflowError("direktiv.var.invalidValue", f"value is not JSON: {exc}") from None
        except RecursionError:
            raise WorkflowError("direktiv.var.invalidValue", "value is not JSON: it refers to itself or nests "
                                "too deeply (pass plain dicts, lists, strings, numbers, booleans and None)") from None
    if mime == OCTETS:
        if not isinstance(value, str):
            raise WorkflowError(
                "direktiv.var.invalidValue",
                f"mimeType {OCTETS} needs a base64 string value, got {type(value).__name__}",
            )
        try:
            return base64.b64decode(value, validate=True), mime
        except (binascii.Error, ValueError):
            raise WorkflowError("direktiv.var.invalidValue", f"mimeType {OCTETS}: value is not valid base64") from None
    if isinstance(value, str):
        return value.encode(), mime
    return dumps(value).encode(), mime


def decode(data: bytes, *, text: bool = False) -> Any:
    """The getter's rule (SPEC §3): JSON when the bytes parse as JSON, else a base64
    string of the bytes, whatever the mime type, as every Direktiv version did.  With
    ``text`` (a getter's opt-in ``as_text``), UTF-8 text comes back as the string."""
    if not data:
        return ""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii")
    try:
        return _loads(decoded)
    except ValueError:
        return decoded if text else base64.b64encode(data).decode("ascii")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_decode_strict = json.JSONDecoder(parse_constant=_no_constant).decode


def parse_json(text: str | bytes) -> Any:
    """Parse untrusted JSON strictly: NaN / Infinity are not JSON, and nesting too deep
    for the interpreter is a ValueError like any other malformed input, not a crash."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    try:
        return _decode_strict(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_loads = parse_json


def sniff_mime(data: bytes) -> str:
    """A mime type for bytes that came without one (CLI, drop folders): JSON when they
    parse, UTF-8 text, else octet-stream.  A getter decodes by content either way."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return OCTETS
    try:
        _loads(text)
        return JSON
    except ValueError:
        return TEXT


def resolve_key(key: str | Expr, data: dict[str, Any]) -> str:
    """A variable key as written, or computed by ``jq(...)`` from the state data and then
    checked against the key rules (``direktiv.var.invalidKey``)."""
    if isinstance(key, str):
        return key
    value = key.eval(data)
    if not isinstance(value, str):
        raise WorkflowError("direktiv.var.invalidKey", f"computed key must be a string, got {value!r}")
    try:
        check_key(value)
    except InvalidKey as exc:
        raise WorkflowError("direktiv.var.invalidKey", str(exc)) from None
    return value
