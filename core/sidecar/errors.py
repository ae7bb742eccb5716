"""The sidecar's errors: one for its owner (cannot start, closed), one for a request too slow."""

from __future__ import annotations

from ..errors import IsoldeError


class SidecarError(IsoldeError):
    """The sidecar could not start (port taken and pinned, bad address) or is closed."""


class RequestTimeout(Exception):
    """A request was not received whole within ``[sidecar] request_timeout``."""
