"""The daemon's HTTP API: JSON over loopback HTTP/1.1, described by ``GET /api/openapi.json``.

- ``routes``: every route declared once (method, path, summary, parameters, responses),
  and the werkzeug ``Map`` made from them;
- ``openapi``: the OpenAPI 3 document generated from the same declarations;
- ``handlers``: what each route does, against the daemon's ``Served`` interface;
- ``server``: the threaded HTTP server, access rules, body limits, dispatch.
"""

from __future__ import annotations

from .handlers import ApiError, Served
from .openapi import openapi_document
from .routes import ROUTES, Route, url_map
from .server import ApiServer, parse_address

__all__ = ["ApiError", "ApiServer", "ROUTES", "Route", "Served", "openapi_document", "parse_address", "url_map"]
