"""Loopback addresses: what the sidecar and the API bind to and accept as ``Host``."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=256)  # checked on every API request: the same few values
def is_loopback_host(value: str) -> bool:
    """True for a ``Host`` header naming this machine's loopback: ``localhost``,
    ``127.0.0.0/8`` or ``[::1]``, each with or without ``:port``.

    A DNS-rebinding page reaches 127.0.0.1 under the attacker's own domain name,
    so the browser sends that name as ``Host``; refusing every other name is
    what makes the attack fail.
    """
    import ipaddress  # only where a Host header or a configured host is checked

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


def loopback_address(host: str) -> str | None:
    """The literal loopback address to bind for a configured host (``localhost`` is
    127.0.0.1, not resolved), or None when ``host`` is not a loopback address."""
    import ipaddress

    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return None
    return str(addr) if addr.is_loopback else None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


__all__ = ["is_loopback_host", "loopback_address"]
