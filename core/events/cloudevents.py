"""CloudEvents as isolde handles them: a plain dict in CloudEvents' JSON format
(``specversion``, ``id``, ``source``, ``type``, optional ``time``, ``subject``,
``datacontenttype``, extension attributes, and ``data`` or ``data_base64``),
checked and completed by :func:`normalize`."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from .errors import EventError

SPECVERSION = "1.0"

RESERVED = frozenset(("data", "data_base64"))
"""The attributes that carry the payload: never matched by a filter."""
_SCALARS = (str, int, float, bool)
_STRINGS = frozenset(("time", "subject", "dataschema", "datacontenttype"))


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalize(event: Any, *, max_bytes: int | None = None) -> dict[str, Any]:
    """A checked copy of ``event`` with ``specversion``, ``id`` and ``time`` filled in.

    ``type`` and ``source`` are required (non-empty strings).  Attribute names
    follow CloudEvents (lower-case letters and digits); attribute values are
    strings, numbers or booleans; ``data`` and ``data_base64`` exclude each other.
    Raises :class:`EventError`.
    """
    if not isinstance(event, dict):
        raise EventError(f"an event must be a JSON object, got {kind(event)}")
    for key in ("type", "source"):
        value = event.get(key)
        if not isinstance(value, str) or not value:
            raise EventError(f"event attribute '{key}' is required (a non-empty string)")
    spec = event.get("specversion", SPECVERSION)
    if spec != SPECVERSION:
        raise EventError(f"event specversion {spec!r} is not supported (only {SPECVERSION!r})")
    eid = event.get("id")
    if eid is None:
        eid = str(uuid.uuid4())
    elif not isinstance(eid, str) or not eid:
        raise EventError("event attribute 'id' must be a non-empty string")
    out: dict[str, Any] = {"specversion": SPECVERSION, "id": eid, "source": event["source"], "type": event["type"]}
    if "time" not in event:
        out["time"] = now_rfc3339()
    for key, value in event.items():
        if key in out or key in RESERVED:
            continue
        if not isinstance(key, str) or not key.isascii() or not key.isalnum() or key != key.lower():
            raise EventError(
                f"event attribute name {key!r} is invalid: CloudEvents attribute names use only "
                "lower-case letters a-z and digits"
            )
        if value is not None and not isinstance(value, _SCALARS):
            raise EventError(f"event attribute '{key}' must be a string, number or boolean, got {kind(value)}")
        if key in _STRINGS and not isinstance(value, str):
            raise EventError(f"event attribute '{key}' must be a string, got {kind(value)}")
        out[key] = value
    if "data" in event and "data_base64" in event:
        raise EventError("an event has either 'data' or 'data_base64', not both")
    if "data_base64" in event:
        b64 = event["data_base64"]
        try:
            if not isinstance(b64, str):
                raise ValueError
            base64.b64decode(b64, validate=True)
        except ValueError:
            raise EventError("event 'data_base64' must be a base64 string") from None
        out["data_base64"] = b64
    elif "data" in event:
        out["data"] = event["data"]
    if max_bytes is not None:
        try:
            size = len(json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            raise EventError(f"event is not valid JSON: {exc}") from None
        if size > max_bytes:
            raise EventError(
                f"event of type '{out['type']}' is {size} bytes, over the {max_bytes}-byte limit "
                "(raise [limits] max_event_bytes in isolde.toml)"
            )
    return out


def copy_value(value: Any) -> Any:
    """A deep copy of a JSON value, so no two instances ever share a mutable event."""
    if isinstance(value, dict):
        return {k: copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_value(v) for v in value]
    return value


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def as_text(value: Any) -> str:
    """An attribute value as a filter compares it: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
