"""The web UI's files: plain HTML, CSS and JavaScript shipped as package data (no build step,
nothing fetched from elsewhere), served by the daemon's HTTP server under ``/ui/``.

The pages hold no data: everything they show comes from the API (``/api/...``) with the same
loopback and token rules as any other client (see ``isolde.api.server`` and docs/operating.md).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

__all__ = ["PREFIX", "SECURITY_HEADERS", "asset"]

PREFIX: Final = "/ui/"

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

SECURITY_HEADERS: Final = {
    # only this server's own files; no inline script, no framing, no form posts elsewhere
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_cache: dict[str, tuple[bytes, str] | None] = {}


def asset(name: str) -> tuple[bytes, str] | None:
    """The file ``name`` (relative to ``/ui/``; ``""`` is ``index.html``) and its content
    type, or None when the UI has no such file.  Only plain names of shipped files are
    served (no folders, no ``..``)."""
    name = name or "index.html"
    if name in _cache:
        return _cache[name]
    found: tuple[bytes, str] | None = None
    dot = name.rfind(".")
    ctype = _TYPES.get(name[dot:]) if dot > 0 else None
    if ctype is not None and "/" not in name and "\\" not in name and not name.startswith("."):
        try:
            found = ((resources.files(__name__) / name).read_bytes(), ctype)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            found = None
    if found is not None or len(_cache) < 64:  # misses are cached too, but not without bound
        _cache[name] = found
    return found
