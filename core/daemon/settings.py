"""The ``[daemon]`` settings, the daemon's refusals (``DaemonError``) and its log format."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError, IsoldeError

__all__ = ["DEFAULT_API", "DaemonError", "DaemonSettings", "LogfmtFormatter", "configure_logging"]

DEFAULT_API: Final = "127.0.0.1:8890"
"""The API's default address: loopback, next to the sidecar's 8889 (Direktiv's), not on it."""

_SETTINGS: Final[dict[str, type | tuple[type, ...]]] = {
    "api": str,
    "token": str,
    "delete_vars_with_files": bool,
    "settle": (int, float),
    "delete_grace": (int, float),
    "max_running": int,
    "max_queue": int,
    "keep_instances": int,
    "keep_log_lines": int,
    "stop_grace": (int, float),
    "status_interval": (int, float),
    "max_wait": (int, float),
}


class DaemonError(IsoldeError):
    """A request the daemon refuses; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The ``[daemon]`` table, checked (unknown keys and wrong types are refused)."""

    api: str = DEFAULT_API
    token: str | None = None
    delete_vars_with_files: bool = False
    settle: float = 0.05
    """Seconds a file must stay unchanged when the platform gives no close-after-write event;
    also how long a variable directory must be quiet before it is packed."""
    delete_grace: float = 0.25
    """Seconds a path must stay gone before its workflow or variable is deleted."""
    max_running: int = 256
    max_queue: int = 10_000
    keep_instances: int = 1000
    keep_log_lines: int = 1000
    stop_grace: float = 10.0
    status_interval: float = 60.0
    max_wait: float = 3600.0
    """Longest ``?wait=true`` holds a request (seconds); then the answer is the status so far."""

    @classmethod
    def from_config(cls, config: Any, *, api: str | None = None, token: str | None = None) -> DaemonSettings:
        table = config.data.get("daemon", {})
        where = f"{config.path}: [daemon]" if getattr(config, "path", None) else "[daemon]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            want = _SETTINGS.get(key)
            if want is None:
                raise ConfigError(f"{where}: unknown setting '{key}' (known: {', '.join(sorted(_SETTINGS))})")
            if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
                raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{where}: {key} must not be negative")
            values[key] = value
        if api is not None:
            values["api"] = api
        if token is not None:
            values["token"] = token
        if not values.get("token"):
            values["token"] = None
        for key in ("max_running", "max_queue", "keep_instances"):
            if key in values and values[key] < 1:
                raise ConfigError(f"{where}: {key} must be at least 1")
        return cls(**values)


class LogfmtFormatter(logging.Formatter):
    """One line per record, ``key=value`` pairs (logfmt), so logs are greppable and parseable.

    Fields come from ``extra={"fields": {...}}``; values with spaces or quotes are quoted.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"msg={_quote(record.getMessage())}"]
        for key, value in (getattr(record, "fields", None) or {}).items():
            if value is not None:
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if text and not any(c in text for c in ' "=\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def configure_logging(verbose: bool, log_format: str = "text") -> logging.Logger:
    """The daemon's logger, writing logfmt lines (``text``) or JSON objects (``json``,
    ``isolde.logs``) to stderr, at debug level with ``--verbose``."""
    from ..logs import JsonFormatter

    logger = logging.getLogger("isolde")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logging.getLogger("isolde.daemon")
