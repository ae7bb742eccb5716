"""Which addresses the sidecar binds and which ``Host`` headers it accepts: loopback only."""

from __future__ import annotations

import socket
from typing import Final

from ..loopback import is_loopback_host, loopback_address
from .errors import SidecarError

DEFAULT_HOST: Final[str] = "127.0.0.1"


def bind_address(host: str) -> tuple[str, socket.AddressFamily]:
    """The literal address to bind for a configured loopback host.

    ``localhost`` is bound as 127.0.0.1 rather than resolved: resolution may
    give ::1 first or, on a misconfigured machine, something that is not
    loopback at all.
    """
    addr = loopback_address(host)
    if addr is None:
        raise SidecarError(
            f"sidecar host {host!r} is not a loopback address (use 127.x.x.x, ::1 or localhost): "
            "the sidecar hands out variables to whoever can reach it"
        )
    return addr, socket.AF_INET6 if ":" in addr else socket.AF_INET


__all__ = ["DEFAULT_HOST", "bind_address", "is_loopback_host"]
