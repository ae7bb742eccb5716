"""Every route of the daemon's API, declared once: method, path, summary, parameters,
request body and responses.  The router (werkzeug's ``Map``) and the OpenAPI document
(``openapi.py``) are both made from this table, so they cannot drift apart.

``{path}`` is a workflow id and may contain ``/`` (werkzeug's ``path`` converter); a
``.yaml`` / ``.yml`` suffix is accepted and ignored, so Direktiv-style ``/sub/wf.yaml`` works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from werkzeug.routing import Map, Rule

__all__ = ["PARAMETERS", "ROUTES", "Route", "openapi_path", "url_map"]


@dataclass(frozen=True, slots=True)
class Route:
    """One operation: ``method`` on ``rule`` (werkzeug syntax) is handled by ``endpoint``
    (a function name in ``handlers``).  ``responses`` maps a status to a description and
    a schema (a component name, an inline schema, None for no body, or ``"raw"``)."""

    method: str
    rule: str
    endpoint: str
    summary: str
    responses: dict[int, tuple[str, Any]]
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    body_required: bool = False
    scope: str = ""  # for variable routes: "namespace", "workflow" or "instance"
    tags: tuple[str, ...] = field(default_factory=tuple)


PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    "ns": {"schema": {"type": "string"}, "description": "Namespace (a folder of DIR)."},
    "path": {"schema": {"type": "string"},
             "description": "Workflow id: its path in the namespace folder without .yaml (may contain '/')."},
    "key": {"schema": {"type": "string", "pattern": "^(([a-zA-Z][a-zA-Z0-9_\\-\\.]*[a-zA-Z0-9])|([a-zA-Z]))$"}},
    "id": {"schema": {"type": "string"}},
}

_ERR: Final = ("An error.", "Error")
_BYTES: Final = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_VAR_LIST: Final = {"type": "object", "properties": {
    "namespace": {"type": "string"}, "workflow": {"type": "string"}, "instance": {"type": "string"},
    "variables": {"type": "array", "items": {"$ref": "#/components/schemas/Variable"}}}}


def _var_routes(scope: str, prefix: str) -> list[Route]:
    rule = prefix + "/variables/<key>"
    a = "an" if scope[0] in "aeiou" else "a"
    return [
        Route("GET", rule, "get_variable", f"Read {a} {scope} variable",
              {200: ("The raw bytes; Content-Type is the variable's mime type.", "raw"), 404: _ERR}, scope=scope),
        Route("PUT", rule, "put_variable", f"Write {a} {scope} variable (body = bytes, Content-Type = mime type)",
              {200: ("Replaced.", "Variable"), 201: ("Created.", "Variable"), 400: _ERR, 404: _ERR, 413: _ERR},
              body=_BYTES, body_required=True, scope=scope),
        Route("DELETE", rule, "delete_variable", f"Delete {a} {scope} variable", {204: ("Deleted.", None), 404: _ERR}, scope=scope),
        Route("GET", prefix + "/variables", "list_variables", f"List {scope} variables",
              {200: ("Variables.", _VAR_LIST), 404: _ERR}, scope=scope),
    ]


_STATUSES: Final = ("pending", "running", "complete", "failed", "cancelled")
_NS: Final = "/api/namespaces/<ns>"
_WF: Final = _NS + "/workflows/<path:path>"

ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/api/openapi.json", "openapi", "This document", {200: ("OpenAPI 3 document", None)}),
    Route("GET", "/api/status", "status", "Daemon counters", {200: ("Counters.", {"type": "object"})}),
    Route("GET", "/metrics", "metrics", "Prometheus metrics (text format 0.0.4, or OpenMetrics when Accept asks for it); "
          "the same token rule as the API", {200: ("The metrics.", "metrics")}),
    Route("GET", "/api/namespaces", "namespaces", "Served namespaces", {200: ("Namespaces.", {
        "type": "object", "properties": {"namespaces": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "workflows": {"type": "integer"}}}}}})}),
    Route("GET", _NS + "/workflows", "workflows", "Workflows with their validation status", {200: ("Workflows.", {
        "type": "object", "properties": {"namespace": {"type": "string"},
                                         "workflows": {"type": "array", "items": {"$ref": "#/components/schemas/Workflow"}}}}),
        404: _ERR}),
    Route("POST", _WF + "/instances", "start", "Start an instance (body = input: JSON, or any bytes, passed base64-encoded)",
          {200: ("Ended (with wait).", "Result"), 202: ("Started or still running.", "Result"), 404: _ERR,
           409: ("Singular workflow already running (direktiv.mutex) or no valid version.", "Error"), 413: _ERR, 503: _ERR},
          query=({"name": "wait", "in": "query", "schema": {"type": "boolean"}, "description": "Wait for the instance to end."},
                 {"name": "timeout", "in": "query", "schema": {"type": "number"}, "description": "Seconds to wait at most."}),
          body={"*/*": {"schema": {}}}),
    Route("GET", _NS + "/instances", "instances", "Instances of the namespace (running, queued and kept), newest first, a page",
          {200: ("A page of instance summaries.", "InstancePage"), 400: _ERR, 404: _ERR},
          query=({"name": "status", "in": "query", "schema": {"type": "string", "enum": list(_STATUSES)},
                  "description": "Only instances of this status."},
                 {"name": "workflow", "in": "query", "schema": {"type": "string"}, "description": "Only instances of this workflow id."},
                 {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 50}},
                 {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}})),
    Route("GET", _NS + "/instances/<id>", "instance", "Instance record with its state-by-state timeline",
          {200: ("The instance.", "InstanceDetail"), 404: _ERR}),
    Route("GET", _NS + "/instances/<id>/logs", "logs", "Instance log lines (from number `after` on)", {200: ("Log lines.", {
        "type": "object", "properties": {
            "id": {"type": "string"},
            "logs": {"type": "array", "items": {"type": "object", "properties": {
                "time": {"type": "number"}, "state": {"type": "string"}, "message": {"type": "string"}}}},
            "next": {"type": "integer", "description": "The `after` to ask with next."},
            "ended": {"type": "boolean", "description": "The instance ended: no more lines will come."}}}),
        400: _ERR, 404: _ERR},
          query=({"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0},
                  "description": "Skip the first `after` lines."},)),
    Route("POST", _NS + "/instances/<id>/cancel", "cancel",
          "Cancel an instance (it ends `cancelled` with direktiv.cancels.api; isolate calls get their DELETE)",
          {202: ("Cancelled, or a cancel requested from the process that runs it.", {
              "type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}),
           404: _ERR, 409: ("The instance already ended.", "Error")}),
    *_var_routes("namespace", _NS),
    *_var_routes("workflow", _WF),
    *_var_routes("instance", _NS + "/instances/<id>"),
    Route("GET", _WF + "/graph", "graph", "The workflow drawn as a graph of its states and transitions (isolde graph)",
          {200: ("format=json (default): the graph with the file's validation status; svg, mermaid, dot: the drawing.", {
              "type": "object", "properties": {
                  "namespace": {"type": "string"}, "path": {"type": "string"}, "valid": {"type": "boolean"},
                  "serving": {"type": "boolean"}, "errors": {"type": "array", "items": {"type": "string"}},
                  "graph": {"type": "object", "nullable": True, "properties": {
                      "start": {"type": "string"}, "states": {"type": "array", "items": {"type": "object"}},
                      "edges": {"type": "array", "items": {"type": "object"}}}}}}),
           400: _ERR, 404: _ERR, 409: ("No valid version to draw (svg, mermaid, dot); the message holds the located errors.", "Error")},
          query=({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "svg", "mermaid", "dot"]}},)),
    Route("POST", _NS + "/events", "event", "Post a CloudEvent (structured JSON, or binary mode with ce-* headers)",
          {202: ("Accepted; instances it started.", {"type": "object", "properties": {
              "id": {"type": "string"}, "type": {"type": "string"}, "instances": {"type": "array", "items": {"type": "string"}}}}),
           400: _ERR, 404: _ERR, 413: _ERR},
          body={"application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/CloudEvent"}}}, body_required=True),
)

_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z]+)>")


def openapi_path(rule: str) -> str:
    """``/api/namespaces/<ns>/workflows/<path:path>`` -> ``/api/namespaces/{ns}/workflows/{path}``."""
    return _PARAM.sub(r"{\1}", rule)


def path_parameters(rule: str) -> list[str]:
    return _PARAM.findall(rule)


def url_map() -> Map:
    """The router: one werkzeug ``Rule`` per route (HEAD comes with GET); the endpoint is
    the route's index in ``ROUTES``."""
    return Map([Rule(r.rule, methods=[r.method], endpoint=i) for i, r in enumerate(ROUTES)],
               strict_slashes=False, merge_slashes=False, redirect_defaults=False)
