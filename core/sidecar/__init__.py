"""The sidecar: a loopback HTTP server through which a running isolate reads and
writes variables and writes to its instance log (SPEC §4.4).

The protocol is Direktiv's, so isolates written for Direktiv work unchanged:

``GET /var?aid=&scope=&key=``
    200 with the variable's bytes and ``Content-Type`` = its mime type; a
    missing variable answers 200 with an empty body (no ``Content-Type``).
``POST /var?aid=&scope=&key=``
    Stores the body with the request's ``Content-Type`` as its mime type, or
    ``application/octet-stream`` when the request has none (most Direktiv
    isolates send none; the bytes are stored unchanged either way, and a
    getter decodes by content, not by mime type).  An empty body deletes the
    variable.  The write is committed durably before the 200 goes out, so a
    later state sees it.  A missing or empty ``scope`` means ``instance``, as
    in Direktiv.
Race-free updates (an isolde addition, SPEC §3's opt-in)
    A ``GET`` of an existing variable carries ``ETag: "<version>"``, a strong
    validator.  A ``POST`` with ``If-Match`` set to exactly that ETag writes only
    if the variable is still at that version, and ``If-None-Match: *`` only if
    it does not exist; otherwise nothing is written and the answer is 412 with
    the current ``ETag``.  A read-modify-write loop (GET, change, POST with
    If-Match, retry on 412) therefore never loses an update, across instances
    and processes.  A successful conditional POST answers the new ``ETag``.
``POST /log?aid=`` (the body) or ``GET /log?aid=&log=``
    One entry in the instance log (a trailing newline is dropped; an empty
    message is accepted and ignored, as in Direktiv).

Errors answer ``{"error": "..."}`` (JSON): 404 for an unknown or revoked
``aid`` or an unknown path, 400 for a bad scope, key (also one too long with its
namespace and owner) or precondition header and for malformed requests, 408 for
a request not received whole within ``[sidecar] request_timeout``, 412 for a
failed precondition, 413 for a body over the limit, 431 for a request head over
64 KiB, 403 for a ``Host`` that is not loopback or any ``Origin`` /
``Sec-Fetch-Site`` header (only browsers send those: this shuts out DNS
rebinding and cross-site requests), 405 for other methods, 503 when every
connection slot serves a live action.  Errors found after the action id was
recognised are also written to the instance log, because isolates often ignore
the sidecar's answers.

Modules: ``server`` (sockets, connection slots, lifecycle: :class:`Sidecar`),
``connection`` (the request loop and answers), ``framing`` (HTTP/1.1
request heads and bodies within size and time limits), ``routes`` (what /var
and /log mean), ``body`` (bodies in memory or spooled to a file), ``grants``
(action ids and revocation), ``settings`` (``[sidecar]``), ``addresses``
(loopback checks), ``errors`` and ``refused``.
"""

from __future__ import annotations

from .addresses import DEFAULT_HOST, is_loopback_host
from .errors import SidecarError
from .server import Sidecar
from .settings import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LOG,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_CONNECTIONS,
    SidecarSettings,
    sidecar_settings,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_LOG",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_TIMEOUT",
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "Sidecar",
    "SidecarError",
    "SidecarSettings",
    "is_loopback_host",
    "sidecar_settings",
]
