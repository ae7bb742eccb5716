"""The OpenAPI 3 document, generated from the route declarations (``routes.ROUTES``)."""

from __future__ import annotations

from typing import Any, Final

from .routes import PARAMETERS, ROUTES, openapi_path, path_parameters

__all__ = ["openapi_document"]

_JSON: Final = "application/json"


def _response(desc: str, schema: Any) -> dict[str, Any]:
    if schema is None:
        return {"description": desc}
    if schema == "Error":
        return {"$ref": "#/components/responses/Error"} if desc == "An error." else {
            "description": desc, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if schema == "metrics":
        return {"description": desc, "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}},
                                                 "application/openmetrics-text": {"schema": {"type": "string"}}}}
    if schema == "raw":
        return {"description": desc, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    s = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"description": desc, "content": {_JSON: {"schema": s}}}


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.0 description of every route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        item = paths.setdefault(openapi_path(route.rule), {})
        if "parameters" not in item:
            params = [{"name": n, "in": "path", "required": True, **PARAMETERS[n]} for n in path_parameters(route.rule)]
            if params:
                item["parameters"] = params
        op: dict[str, Any] = {"summary": route.summary, "operationId": f"{route.endpoint}{'_' + route.scope if route.scope else ''}"}
        if route.query:
            op["parameters"] = list(route.query)
        if route.body is not None:
            op["requestBody"] = {"content": route.body, **({"required": True} if route.body_required else {})}
        op["responses"] = {str(status): _response(desc, schema) for status, (desc, schema) in route.responses.items()}
        item[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "isolde daemon API", "version": "1", "description": "Start instances, read their status and logs, "
                 "read and write variables, post CloudEvents. Errors are {\"error\": {\"code\", \"message\"}}."},
        "servers": [{"url": server_url}],
        "security": [{}, {"bearer": []}],
        "paths": paths,
        "components": _COMPONENTS,
    }


_COMPONENTS: Final[dict[str, Any]] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "Needed when the daemon has a token."}},
    "responses": {"Error": {"description": "An error.", "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    "schemas": {
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}}}}},
        "InstanceError": {"type": "object", "nullable": True, "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "state": {"type": "string", "nullable": True}}},
        "Result": {"type": "object", "properties": {
            "id": {"type": "string"}, "status": {"type": "string", "enum": ["pending", "running", "complete", "failed", "cancelled"]},
            "output": {}, "error": {"$ref": "#/components/schemas/InstanceError"},
            "workflow": {"type": "string"}, "namespace": {"type": "string"}}},
        "Instance": {"type": "object", "properties": {
            "id": {"type": "string"}, "namespace": {"type": "string"}, "workflow": {"type": "string"},
            "status": {"type": "string"}, "state": {"type": "string", "nullable": True}, "trigger": {"type": "string"},
            "created": {"type": "number"}, "started": {"type": "number", "nullable": True},
            "ended": {"type": "number", "nullable": True}, "output": {}, "error": {"$ref": "#/components/schemas/InstanceError"},
            "resumed": {"type": "boolean"}, "input": {}}},
        "InstanceSummary": {"type": "object", "properties": {
            "id": {"type": "string"}, "workflow": {"type": "string"}, "status": {"type": "string"},
            "trigger": {"type": "string"}, "created": {"type": "number"}, "started": {"type": "number", "nullable": True},
            "ended": {"type": "number", "nullable": True}, "state": {"type": "string", "nullable": True},
            "error_code": {"type": "string", "nullable": True}}},
        "InstancePage": {"type": "object", "properties": {
            "namespace": {"type": "string"},
            "instances": {"type": "array", "items": {"$ref": "#/components/schemas/InstanceSummary"}},
            "total": {"type": "integer"}, "offset": {"type": "integer"}, "limit": {"type": "integer"}}},
        "TimelineEntry": {"type": "object", "properties": {
            "step": {"type": "integer"}, "state": {"type": "string"}, "type": {"type": "string"},
            "started": {"type": "number"}, "ended": {"type": "number"},
            "input": {"description": "Whole, or when listed in `truncated` its first bytes as text."}, "output": {},
            "error": {"type": "object", "nullable": True, "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
            "variables": {"type": "array", "items": {"type": "object", "properties": {
                "scope": {"type": "string"}, "key": {"type": "string"}}}},
            "logs": {"type": "array", "items": {"type": "object", "properties": {
                "time": {"type": "number"}, "message": {"type": "string"}}}},
            "truncated": {"type": "array", "items": {"type": "string", "enum": ["input", "output"]}}}},
        "InstanceDetail": {"allOf": [{"$ref": "#/components/schemas/Instance"}, {"type": "object", "properties": {
            "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineEntry"}}}}]},
        "Workflow": {"type": "object", "properties": {
            "path": {"type": "string"}, "file": {"type": "string"}, "valid": {"type": "boolean"},
            "serving": {"type": "boolean"}, "errors": {"type": "array", "items": {"type": "string"}},
            "start": {"type": "string", "nullable": True}, "cron": {"type": "string", "nullable": True},
            "singular": {"type": "boolean", "nullable": True}, "updated": {"type": "number"},
            "next_run": {"type": "number", "nullable": True}}},
        "Variable": {"type": "object", "properties": {
            "key": {"type": "string"}, "size": {"type": "integer"}, "mime": {"type": "string"},
            "created": {"type": "number"}, "updated": {"type": "number"}, "version": {"type": "integer"}}},
        "CloudEvent": {"type": "object", "required": ["type", "source"], "properties": {
            "specversion": {"type": "string"}, "id": {"type": "string"}, "type": {"type": "string"},
            "source": {"type": "string"}, "data": {}}, "additionalProperties": True},
    },
}
