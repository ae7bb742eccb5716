"""Log lines as JSON (``--log-format json``, ``[log] format = "json"``): one object per line.

Every line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; then what is known of the instance it is about -- ``namespace``,
``workflow``, ``instance``, ``state`` -- and the record's other fields as they are.  The
daemon's fields ``ns`` and ``id`` (an instance id) are written as ``namespace`` and
``instance``.  A traceback, when there is one, is the ``error`` field.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from typing import Any, Final, Mapping

__all__ = ["FORMATS", "JsonFormatter", "json_line", "utc_time"]

FORMATS: Final = ("text", "json")
_RENAMED: Final = {"ns": "namespace", "id": "instance"}
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def utc_time(created: float) -> str:
    """``2026-12-05T05:18:14.123Z``."""
    stamp = _dt.datetime.fromtimestamp(created, _dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def json_line(created: float, level: str, logger: str, message: str, fields: Mapping[str, Any] | None = None) -> str:
    """One log line as a JSON object (no newline)."""
    out: dict[str, Any] = {"time": utc_time(created), "level": level, "logger": logger, "message": message}
    for key, value in (fields or {}).items():
        if value is not None:
            out[_RENAMED.get(key, key)] = value
    return _encode(out)


class JsonFormatter(logging.Formatter):
    """A ``logging`` formatter writing :func:`json_line` (fields from ``extra={"fields": {...}}``)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname.lower(), record.name, record.getMessage(), fields)
