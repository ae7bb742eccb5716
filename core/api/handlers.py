"""What each route does, given the request (``Exchange``) and the daemon (``Served``).

The API never imports the daemon: ``Served`` is the part of it the handlers use.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any, Callable, Final, Mapping, Protocol

from ..errors import IsoldeError
from ..graph import FORMATS, render
from ..store import VariableStore, Put, Ref, check_key
from ..variables import parse_json

if TYPE_CHECKING:
    import logging

    from ..graph import Graph

__all__ = ["ApiError", "Exchange", "HANDLERS", "Served"]

_JSON: Final = "application/json"
_OCTETS: Final = "application/octet-stream"


class ApiError(IsoldeError):
    """An answer other than success: HTTP status, a dotted code and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Served(Protocol):
    """The daemon as the API sees it."""

    store: VariableStore
    log: logging.Logger
    max_variable_bytes: int
    max_input_bytes: int
    max_event_bytes: int

    @property
    def max_wait(self) -> float: ...
    def status(self) -> dict[str, Any]: ...
    def metrics(self, accept: str | None) -> tuple[bytes, str]: ...
    def namespaces(self) -> list[dict[str, Any]]: ...
    def workflows(self, ns: str) -> list[dict[str, Any]]: ...
    def check_namespace(self, ns: str) -> None: ...
    def workflow_owner(self, ns: str, path: str) -> str: ...
    def start_and_view(self, ns: str, path: str, body: bytes | None, *, wait: bool, timeout: float | None) -> dict[str, Any]: ...
    def instance(self, ns: str, iid: str) -> dict[str, Any]: ...
    def instance_detail(self, ns: str, iid: str) -> dict[str, Any]: ...
    def instance_log(self, ns: str, iid: str, after: int = 0) -> dict[str, Any]: ...
    def instances(self, ns: str, *, status: str | None = None, workflow: str | None = None,
                  offset: int = 0, limit: int = 50) -> dict[str, Any]: ...
    def cancel(self, ns: str, iid: str) -> dict[str, Any]: ...
    def publish_event(self, ns: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]: ...
    def workflow_graph(self, ns: str, path: str) -> tuple[dict[str, Any], Graph | None]: ...


class Exchange(Protocol):
    """One request and its answer, as the server gives it to a handler."""

    headers: Any  # email.message.Message-like: get, get_all, items
    query: dict[str, str]

    def openapi(self) -> bytes: ...
    def read_body(self, limit: int, setting: str) -> bytes: ...
    def send(self, status: int, body: bytes, ctype: str | None, headers: dict[str, str] | None = None) -> None: ...
    def json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None: ...


Handler = Callable[[Exchange, Served, Mapping[str, str], str], None]
"""``(request, daemon, path arguments, scope)``; scope names the variable routes' scope."""


def openapi(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    x.send(200, x.openapi(), _JSON)


def status(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    x.json(200, d.status())


def metrics(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    body, content_type = d.metrics(x.headers.get("Accept"))
    x.send(200, body, content_type)


def namespaces(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    x.json(200, {"namespaces": d.namespaces()})


def workflows(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    x.json(200, {"namespace": a["ns"], "workflows": d.workflows(a["ns"])})


def start(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    ns, path = a["ns"], a["path"]
    d.workflow_owner(ns, path)  # 404 before reading a body
    body = x.read_body(d.max_input_bytes, "[limits] max_input_bytes")
    wait = x.query.get("wait", "").lower() in ("1", "true", "yes")
    timeout: float | None = None
    if "timeout" in x.query:
        try:
            timeout = max(0.0, min(float(x.query["timeout"]), d.max_wait))
        except ValueError:
            raise ApiError(400, "isolde.api.badRequest", f"timeout must be a number of seconds, got {x.query['timeout'][:50]!r}") from None
    view = d.start_and_view(ns, path, body or None, wait=wait, timeout=timeout)
    loc = {"Location": f"/api/namespaces/{ns}/instances/{view['id']}"}
    code = 200 if wait and view["status"] in ("complete", "failed", "cancelled") else 202
    x.json(code, {"id": view["id"], "status": view["status"], "output": view.get("output"), "error": view.get("error"),
                  "workflow": view.get("workflow"), "namespace": view.get("namespace")}, loc)


STATUSES: Final = ("pending", "running", "complete", "failed", "cancelled")
MAX_PAGE: Final = 1000


def _count(x: Exchange, name: str, default: int, top: int | None = None) -> int:
    raw = x.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0 or (top is not None and value > top):
        limit = f" up to {top}" if top is not None else ""
        raise ApiError(400, "isolde.api.badRequest", f"{name} must be a whole number of 0 or more{limit}, got {raw[:50]!r}")
    return value


def instances(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    status = x.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, "isolde.api.badRequest", f"status must be one of {', '.join(STATUSES)}, got {status[:50]!r}")
    x.json(200, d.instances(a["ns"], status=status, workflow=x.query.get("workflow") or None,
                            offset=_count(x, "offset", 0), limit=_count(x, "limit", 50, MAX_PAGE)))


def instance(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    d.check_namespace(a["ns"])
    x.json(200, d.instance_detail(a["ns"], a["id"]))


def logs(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    d.check_namespace(a["ns"])
    x.json(200, d.instance_log(a["ns"], a["id"], _count(x, "after", 0)))


def cancel(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    d.check_namespace(a["ns"])
    x.json(202, d.cancel(a["ns"], a["id"]))


def graph(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    fmt = x.query.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(400, "isolde.api.badRequest", f"unknown graph format {fmt[:50]!r} (use one of {', '.join(FORMATS)})")
    summary, drawn = d.workflow_graph(a["ns"], a["path"])
    if fmt == "json":
        x.json(200, {"namespace": a["ns"], "path": summary["path"], "valid": summary["valid"], "serving": summary["serving"],
                     "errors": summary["errors"], "graph": drawn.as_json() if drawn is not None else None})
        return
    if drawn is None:
        raise ApiError(409, "isolde.workflow.invalid", f"workflow '{summary['path']}' has no valid version to draw: "
                       + "; ".join(summary["errors"]))
    ctype = "image/svg+xml" if fmt == "svg" else "text/plain; charset=utf-8"
    x.send(200, render(drawn, fmt).encode(), ctype)


def _owner(d: Served, a: Mapping[str, str], scope: str, *, writing: bool = False) -> str:
    if scope == "workflow":
        return d.workflow_owner(a["ns"], a["path"])
    d.check_namespace(a["ns"])
    if scope == "instance":
        view = d.instance(a["ns"], a["id"])  # 404 when unknown
        if writing and view.get("status") not in ("pending", "running"):
            raise ApiError(409, "isolde.instance.ended", f"instance '{a['id']}' has ended ({view.get('status')}): "
                           "its instance variables are gone with it")
        return str(view["id"])
    return ""


def _ref(d: Served, a: Mapping[str, str], scope: str, *, writing: bool = False) -> tuple[Ref, str]:
    owner = _owner(d, a, scope, writing=writing)
    key = a["key"]
    check_key(key)
    where = (f"variable '{key}' of workflow '{owner}'" if scope == "workflow" else
             f"variable '{key}' of instance '{owner}'" if scope == "instance" else f"namespace variable '{key}'")
    return Ref(a["ns"], scope, owner, key), where


def list_variables(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    owner = _owner(d, a, scope)
    rows = d.store.list(a["ns"], scope, owner)
    x.json(200, {"namespace": a["ns"], **({scope: owner} if scope != "namespace" else {}),
                 "variables": [_var_meta(k, v) for k, v in rows]})


def get_variable(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    ref, where = _ref(d, a, scope)
    var = d.store.get(ref)
    if var is None:
        raise ApiError(404, "isolde.variable.notFound", f"no {where} in namespace '{ref.namespace}'")
    x.send(200, var.data, var.mime or _OCTETS, {"Last-Modified": _http_date(var.updated), "ETag": f'"{var.version}"'})


def delete_variable(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    ref, where = _ref(d, a, scope)
    if d.store.get(ref) is None:
        raise ApiError(404, "isolde.variable.notFound", f"no {where} in namespace '{ref.namespace}'")
    d.store.write([Put(ref, None)])
    x.send(204, b"", None)


def put_variable(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    ref, _ = _ref(d, a, scope, writing=True)
    data = x.read_body(d.max_variable_bytes, "[limits] max_variable_bytes")
    mime = (x.headers.get("Content-Type") or _OCTETS).strip()
    if len(mime) > 255 or not mime.isprintable():
        raise ApiError(400, "isolde.api.badRequest", "invalid Content-Type")
    store = d.store
    existed = store.get(ref) is not None
    store.write([Put(ref, data, mime)])
    var = store.get(ref)
    x.json(200 if existed else 201, _var_meta(ref.key, var) if var is not None else {"key": ref.key})


def event(x: Exchange, d: Served, a: Mapping[str, str], scope: str) -> None:
    d.check_namespace(a["ns"])
    body = x.read_body(d.max_event_bytes, "[limits] max_event_bytes")
    ev, started = d.publish_event(a["ns"], cloudevent(x.headers, body))
    x.json(202, {"id": ev["id"], "type": ev["type"], "instances": started})


HANDLERS: Final[dict[str, Handler]] = {
    f.__name__: f for f in (openapi, status, metrics, namespaces, workflows, start, instances, instance, logs, cancel,
                            list_variables, get_variable, put_variable, delete_variable, event, graph)
}


def _var_meta(key: str, var: Any) -> dict[str, Any]:
    return {"key": key, "size": var.size, "mime": var.mime, "created": var.created, "updated": var.updated, "version": var.version}


def _http_date(t: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def cloudevent(headers: Any, body: bytes) -> dict[str, Any]:
    """A CloudEvent from a request, structured (JSON body) or binary (``ce-*`` headers) mode.
    The bus checks it (``type`` and ``source`` required; ``id``, ``specversion`` and
    ``time`` filled in)."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if headers.get("ce-type") or headers.get("ce-specversion"):
        event: dict[str, Any] = {}
        for name, value in headers.items():
            if name.lower().startswith("ce-") and len(name) > 3:
                event[name[3:].lower()] = value
        if body:
            if ctype in ("", _JSON) or ctype.endswith("+json"):
                try:
                    event["data"] = parse_json(body)
                except ValueError:
                    raise ApiError(400, "isolde.event.invalid", "the body is not JSON but Content-Type says it is") from None
            else:
                try:
                    event["data"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    event["data_base64"] = base64.b64encode(body).decode("ascii")
            if ctype:
                event["datacontenttype"] = ctype
    else:
        try:
            event = parse_json(body)
        except ValueError:
            raise ApiError(400, "isolde.event.invalid", "the body is not a JSON CloudEvent (or send binary mode with ce-* headers)") from None
        if not isinstance(event, dict):
            raise ApiError(400, "isolde.event.invalid", "a CloudEvent is a JSON object")
    return event
