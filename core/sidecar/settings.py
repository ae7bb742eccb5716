"""The ``[sidecar]`` table of isolde.toml, and the sidecar's fixed limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError
from .addresses import DEFAULT_HOST, bind_address
from .errors import SidecarError

DEFAULT_PORT: Final[int] = 8889
"""Direktiv's sidecar port; kept so unmodified isolates that hard-code it work."""
DEFAULT_MAX_BODY: Final[int] = 64 << 20
DEFAULT_MAX_LOG: Final[int] = 4 << 20
"""Direktiv caps a log message at 4 MiB too."""
DEFAULT_REQUEST_TIMEOUT: Final[float] = 30.0
"""Seconds from a request's first byte until it must be received whole (head and body)."""
MAX_CONNECTIONS: Final[int] = 256
"""Open connections (one thread each).  When all are taken, a new one replaces the
oldest connection not serving a live action id; only when every one serves a live
action id is the new one answered 503 and closed."""
IDLE_TIMEOUT: Final[float] = 120.0
"""Seconds a kept-alive connection may wait for its next request (or a reader for our answer)."""
REVOKE_WAIT: Final[float] = 60.0
"""Longest ``revoke`` waits for a write of that action id that is under way."""
MAX_HEAD: Final[int] = 64 << 10
"""Bytes of a request line and header fields together; more is answered 431."""
SPOOL_THRESHOLD: Final[int] = 1 << 20
"""Bodies above this many bytes are spooled to a temporary file, not held in memory."""

_SETTINGS: Final[tuple[str, ...]] = ("host", "port", "pinned", "max_body", "max_log", "request_timeout")


@dataclass(frozen=True, slots=True)
class SidecarSettings:
    """``[sidecar]``, checked (see :func:`sidecar_settings`)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    pinned: bool = False
    max_body: int = DEFAULT_MAX_BODY
    max_log: int = DEFAULT_MAX_LOG
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT


def sidecar_settings(config: Any) -> SidecarSettings:
    """The ``[sidecar]`` table of ``config`` (an :class:`isolde.config.Config`),
    checked: unknown keys, types and a non-loopback host are configuration
    errors (ConfigError naming the setting)."""
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
        bind_address(host)
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
    sizes: dict[str, int] = {}
    for name, default in (("max_body", DEFAULT_MAX_BODY), ("max_log", DEFAULT_MAX_LOG)):
        value = table.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{where}: [sidecar] {name} must be a positive number of bytes, got {value!r}")
        sizes[name] = value
    timeout = table.get("request_timeout", DEFAULT_REQUEST_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not (0 < timeout < math.inf):
        raise ConfigError(
            f"{where}: [sidecar] request_timeout must be a positive number of seconds, got {timeout!r}"
        )
    return SidecarSettings(host, port, pinned, sizes["max_body"], sizes["max_log"], float(timeout))
