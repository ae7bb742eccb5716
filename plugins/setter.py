"""The ``setter`` state: write variables; all of one setter commit together."""

from __future__ import annotations

from typing import Any

from isolde.plugin import JSON, Report, StateContext, StateSpec, StateType, Workflow, encode, hookimpl, resolve_key


class Setter(StateType):
    name = "setter"
    resumable = True
    waits = False
    schema = """
    state setter "Writes variables; null deletes one. Every variable of one setter commits atomically." {
        variables!: [setvar]  "The variables to write."
    }
    struct setvar {
        key!: varkey          "The variable's key; in structured documents it may be computed with jq(...)."
        scope!: scope         "instance, workflow or namespace."
        value: jx             "The value, evaluated against the state data; null (or absent) deletes the variable."
        mimeType: mime        "application/json (default), text/plain (a string without quotes) or application/octet-stream (base64-decoded)."
    }
    """
    example = """
- id: save
  type: setter
  variables:
  - key: counter
    scope: workflow
    value: 'jq(.count)'
  - key: note
    scope: namespace
    mimeType: text/plain
    value: 'last run by jq(.user)'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["items"] = [
            (v["scope"], v["key"], v.get("value"), v.get("mimeType") or JSON) for v in state.fields["variables"]
        ]

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        for scope, key, expr, mime in state.extra["items"]:
            value = None if expr is None else expr.eval(data)
            name = resolve_key(key, data)
            if value is None:
                ctx.set(scope, name, None)
            else:
                raw, mime_out = encode(value, mime)
                ctx.set(scope, name, raw, mime_out)
        return data


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Setter]
