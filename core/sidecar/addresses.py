"""Which addresses the sidecar binds and which ``Host`` headers it accepts: loopback only."""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

from .errors import SidecarError

DEFAULT_HOST: Final[str] = "127.0.0.1"


def is_loopback_host(value: str) -> bool:
    """True for a ``Host`` header naming this machine's loopback: ``localhost``,
    ``127.0.0.0/8`` or ``[::1]``, each with or without ``:port``.

    A DNS-rebinding page reaches 127.0.0.1 under the attacker's own domain name,
    so the browser sends that name as ``Host``; refusing every other name is
    what makes the attack fail.
    """
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return False
        host, rest = v[1:end], v[end + 1 :]
        if rest and not (rest[0] == ":" and _is_port(rest[1:])):
            return False
        try:
            return ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    host, sep, port = v.partition(":")
    if sep and not _is_port(port):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def bind_address(host: str) -> tuple[str, socket.AddressFamily]:
    """The literal address to bind for a configured loopback host.

    ``localhost`` is bound as 127.0.0.1 rather than resolved: resolution may
    give ::1 first or, on a misconfigured machine, something that is not
    loopback at all.
    """
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return DEFAULT_HOST, socket.AF_INET
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        addr = None
    if addr is None or not addr.is_loopback:
        raise SidecarError(
            f"sidecar host {host!r} is not a loopback address (use 127.x.x.x, ::1 or localhost): "
            "the sidecar hands out variables to whoever can reach it"
        )
    return str(addr), socket.AF_INET6 if addr.version == 6 else socket.AF_INET
