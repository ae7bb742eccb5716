"""The ``getter`` state: read variables into ``.var``.

``scope: file`` (Direktiv's Knative era) reads a *file of the namespace*
instead of a variable: in isolde the namespace root is the directory of the
running workflow file (a leading ``/`` means that root; no path may leave it,
links included).  The file's bytes are placed at ``.var.<as>`` as a base64
string (Direktiv's rule: a file is bytes, not JSON), a missing file as null.
``as`` is required there, since the key is a path.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from isolde.plugin import (
    Expr,
    InvalidKey,
    Report,
    StateContext,
    StateSpec,
    StateType,
    Workflow,
    WorkflowError,
    check_key,
    decode,
    hookimpl,
    resolve_key,
)


class Getter(StateType):
    name = "getter"
    resumable = True
    waits = False
    schema = """
    state getter "Reads variables and places each at .var.<as or key>: JSON as its value, other bytes as a base64 string (whatever the mime type); a missing variable reads as null; scope system reads instance, uuid or epoch." {
        variables!: [getvar]  "The variables to read."
    }
    struct getvar {
        key!: filekey         "The variable's key; in structured documents it may be computed with jq(...); for scope file, the path of a file of the namespace (/e.yaml)."
        scope!: filescope     "instance, workflow or namespace; file reads the bytes of a file of the namespace (the running workflow's directory) as base64; system reads the key instance (this instance's id), uuid (a new one) or epoch (Unix seconds)."
        as: name              "Name under .var (default: the key; required for scope file)."
        as_text: bool = false "isolde's opt-in: bytes that are UTF-8 text but not JSON come back as that text, not as base64 (the Direktiv rule, the default)."
        lock: bool = false    "Lock the variable for this instance until its setter writes it (or the instance ends): makes read-modify-write race-free."
    }
    """
    example = """
- id: read
  type: getter
  variables:
  - key: counter
    scope: workflow
  - key: settings
    scope: namespace
    as: config
  transform: 'jq(.count = (.var.counter // 0) + 1)'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        items = []
        for i, v in enumerate(state.fields["variables"]):
            where = state.path + ("variables", i)
            key, scope = v["key"], v["scope"]
            if scope == "file":
                if v.get("as") is None:
                    report.error(where, "scope file needs 'as': the key is a path, so say where under .var the file goes")
                if v["lock"]:
                    report.error(where + ("lock",), "lock applies to variables, not to files (scope file)")
            elif isinstance(key, str) and "/" in key:
                try:
                    check_key(key)
                except InvalidKey as exc:
                    report.error(where + ("key",), f"{exc} (a path is a key only with scope: file)")
            if scope == "system":
                if key not in SYSTEM_KEYS:
                    report.error(where + ("key",), f"scope system has the keys {', '.join(SYSTEM_KEYS)}, not {key!r}")
                if v["lock"]:
                    report.error(where + ("lock",), "lock applies to variables, not to scope system")
            # (scope, key or Expr, name under .var, lock?, as_text?)
            items.append((scope, key, v.get("as"), v["lock"], v["as_text"]))
        state.extra["items"] = items
        state.extra["locks"] = any(v["lock"] for v in state.fields["variables"])
        state.extra["files"] = any(v["scope"] in ("file", "system") for v in state.fields["variables"])

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        items = state.extra["items"]
        if state.extra["files"]:
            return _with_files(items, data, ctx)
        keys = [(scope, resolve_key(key, data)) for scope, key, _, _, _ in items]
        if state.extra["locks"]:
            ctx.lock([k for k, item in zip(keys, items) if item[3]])
        values = ctx.get_many(keys)
        current = data.get("var")
        var = dict(current) if isinstance(current, dict) else {}
        for (_, key, name, _, text), (_, resolved), value in zip(items, keys, values):
            var[name or resolved] = None if value is None else decode(value.data, text=text)
        return {**data, "var": var}


SYSTEM_KEYS = ("instance", "uuid", "epoch")
"""The keys of Direktiv's getter ``scope: system`` (0.6.1+)."""


def _system(key: str, ctx: StateContext) -> Any:
    """``scope: system``: the instance id, a fresh UUID, or the Unix time in seconds."""
    if key == "instance":
        return ctx.instance_id
    if key == "uuid":
        return str(uuid.uuid4())
    return int(time.time())


Item = tuple[str, Any, "str | None", bool, bool]


def _with_files(items: list[Item], data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
    """A getter that reads files of the namespace or system values as well as variables
    (rare: the Knative era)."""
    current = data.get("var")
    var = dict(current) if isinstance(current, dict) else {}
    keys = {i: resolve_key(key, data) for i, (scope, key, _, _, _) in enumerate(items) if scope not in ("file", "system")}
    if any(item[3] for item in items):
        ctx.lock([(items[i][0], k) for i, k in keys.items() if items[i][3]])
    values = dict(zip(keys, ctx.get_many([(items[i][0], k) for i, k in keys.items()]))) if keys else {}
    for i, (scope, key, name, _, text) in enumerate(items):
        if scope == "system":
            var[name or key] = _system(key, ctx)
            continue
        if scope != "file":
            value = values[i]
            var[name or keys[i]] = None if value is None else decode(value.data, text=text)
            continue
        path = key.eval(data) if isinstance(key, Expr) else key
        if not isinstance(path, str) or not path.strip("/"):
            raise WorkflowError("direktiv.var.invalidKey", f"computed file path must be a non-empty string, got {path!r}")
        found = ctx.read_file(path)
        var[name or path] = None if found is None else base64.b64encode(found).decode("ascii")
    return {**data, "var": var}


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Getter]
