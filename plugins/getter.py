"""The ``getter`` state: read variables into ``.var``."""

from __future__ import annotations

from typing import Any

from isolde import StateContext, StateSpec, StateType, Workflow, hookimpl
from isolde.expr import Expr
from isolde.store import InvalidKey, check_key
from isolde.validate import Report
from isolde.variables import decode


class Getter(StateType):
    name = "getter"
    resumable = True
    schema = """
    state getter "Reads variables and places each at .var.<as or key>; a missing variable reads as null." {
        variables!: [getvar]  "The variables to read."
    }
    struct getvar {
        key!: varkey          "The variable's key; in structured documents it may be computed with jq(...)."
        scope!: scope         "instance, workflow or namespace."
        as: name              "Name under .var (default: the key)."
        lock: bool = false    "Lock the variable for this instance until its setter writes it (or the instance ends): makes read-modify-write race-free."
    }
    """

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        # (scope, key or Expr, name under .var, lock?)
        state.extra["items"] = [(v["scope"], v["key"], v.get("as"), v["lock"]) for v in state.fields["variables"]]
        state.extra["locks"] = any(v["lock"] for v in state.fields["variables"])

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        items = state.extra["items"]
        keys = [(scope, resolve_key(key, data)) for scope, key, _, _ in items]
        if state.extra["locks"]:
            ctx.lock([k for k, item in zip(keys, items) if item[3]])
        values = ctx.get_many(keys)
        current = data.get("var")
        var = dict(current) if isinstance(current, dict) else {}
        for (_, key, name, _), (_, resolved), value in zip(items, keys, values):
            var[name or resolved] = None if value is None else decode(value.data)
        return {**data, "var": var}


def resolve_key(key: str | Expr, data: dict[str, Any]) -> str:
    """A key as written, or computed by jq(...) and checked against the key rules then."""
    if isinstance(key, str):
        return key
    value = key.eval(data)
    if not isinstance(value, str):
        from isolde import WorkflowError

        raise WorkflowError("direktiv.var.invalidKey", f"computed key must be a string, got {value!r}")
    try:
        check_key(value)
    except InvalidKey as exc:
        from isolde import WorkflowError

        raise WorkflowError("direktiv.var.invalidKey", str(exc)) from None
    return value


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Getter]
