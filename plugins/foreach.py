"""The ``foreach`` state: one action per item of an array, results at ``.return[i]``.

Its items run through ``ctx.run_branches``, the engine's machinery for several
actions at once (``parallel`` uses it too): each goes the way of an ``action``
state (retries, secrets, files, ``out/``, the sidecar, timeouts).

Decisions (Direktiv where it had a rule, written down where it did not):

* **The array** (``array``): a jq query gives *all* its results, so
  ``jq(.names[] | {name: .})`` loops over one object per name (Direktiv
  v0.1-v0.5); a query whose only result is an array loops over that array
  (``jq(.names)``, Direktiv v0.6+).  A query whose only result is ``null`` or
  another scalar (a string, number or boolean), and a literal or template that
  is not an array, fail with the catchable ``direktiv.foreach.badArray``
  (no Direktiv version looped over a lone scalar).  Direktiv v0.1 documents
  name the field ``input``; it is accepted as ``array`` in raw-jq documents.  No results, or an empty array, give
  ``.return = []`` without calling anything.
* **Each item** is what the action's ``input`` is evaluated against (without
  ``input`` the item itself is sent); it is sent with ``Direktiv-Iterator: i``.
  In structured documents an item that is not an object is evaluated as ``{}``
  (Direktiv 0.8.5+ coerced the input of every evaluation to an object); raw-jq
  documents evaluate ``input`` against the item as it is.
* **Concurrency**: at most ``[limits] foreach_concurrency`` calls run at once
  (default 10; Direktiv capped it too); items start in order.
* **Results** are at ``.return[i]`` in item order, whatever order the calls
  finish in.
* **Failure**: the first item to fail (after its own ``retries``) fails the
  state with that item's error (catchable if the error is); items not started
  yet are not started, calls under way are left to finish and their results and
  ``out/`` files are dropped.  An uncatchable failure of any item fails the
  instance.  The ``out/`` files of successful items commit with the state, all
  at once, so a failed ``foreach`` stores none of them.
* **``timeout``** (the state's) bounds the whole state: every call gets the time
  that is left; past it the state fails with ``direktiv.cancels.timeout.soft``.
"""

from __future__ import annotations

from typing import Any

from isolde.plugin import (
    ActionSpec,
    Branch,
    Expr,
    Query,
    Report,
    StateContext,
    StateSpec,
    StateType,
    Workflow,
    WorkflowError,
    compile_action,
    hookimpl,
)

BAD_ARRAY = "direktiv.foreach.badArray"


def state_timeout(state: StateSpec) -> float | None:
    """The state's ``timeout`` in seconds (None without one)."""
    value = state.fields.get("timeout")
    return None if value is None else float(value)


# --------------------------------------------------------------------------- the state


class Foreach(StateType):
    name = "foreach"
    schema = """
    state foreach "Calls a function once per item of an array, several at a time, and places the results at .return[i] in item order; the first failing item fails the state." {
        array: jx         "Required (or `input` in Direktiv v0.1 raw-jq documents). The items: every result of the query (a single array result is that array); each item is what the action's input is evaluated against."
        action!: action   "The call made for each item (as in an action state)."
        input: jx         "Direktiv v0.1 spelling of `array` (raw-jq documents only)."
    }
    """
    example = """
- id: greet-all
  type: foreach
  array: 'jq(.names[] | {name: .})'
  action:
    function: greeter
    input:
      name: 'jq(.name)'
  transform: 'jq({greetings: [.return[].msg]})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["spec"] = compile_action(state.fields["action"], workflow, report, state.path + ("action",))
        given = [k for k in ("array", "input") if k in state.fields]
        if not given:
            report.error(state.path, "missing required field 'array' in state type 'foreach'")
        elif len(given) == 2:
            report.error(state.path + ("input",), "give the items in 'array' only ('input' is its Direktiv v0.1 spelling)")
        elif given == ["input"] and not workflow.raw:
            report.error(state.path + ("input",), "'input' is the Direktiv v0.1 spelling of 'array' (raw-jq documents); write 'array'")
        else:
            state.extra["array"] = state.fields[given[0]]

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        items = items_of(state.extra["array"], data)
        spec: ActionSpec = state.extra["spec"]
        if spec.input is not None and not ctx.workflow.raw:  # Direktiv 0.8.5+: a non-object is evaluated as {}
            items = [item if isinstance(item, dict) else {} for item in items]
        if spec.secrets:
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise WorkflowError(
                        BAD_ARRAY,
                        f"item {i} is {_kind(item)}; with secrets every item must be an object (secrets go to .secrets)",
                    )
        if not items:
            return {**data, "return": []}
        workers = int(ctx.limit("foreach_concurrency"))
        ctx.log(f"foreach: {len(items)} item(s), at most {workers} at a time")
        outcome = ctx.run_branches([Branch(spec, item) for item in items], workers=workers, timeout=state_timeout(state))
        if outcome.errors:
            i, err = outcome.errors[0]
            ctx.log(f"foreach: item {i} failed with {err.code}")
            raise err
        return {**data, "return": outcome.results}


def items_of(expr: Expr, data: dict[str, Any]) -> list[Any]:
    """The items of ``array`` (see the module docstring for the rule)."""
    values = expr.eval_all(data)
    if isinstance(expr, Query):
        if len(values) == 1:
            only = values[0]
            if isinstance(only, list):
                return list(only)
            if not isinstance(only, dict):
                raise WorkflowError(BAD_ARRAY, f"array query {expr.source!r} gave {_kind(only)}, not an array")
        return values
    value = values[0] if values else None
    if not isinstance(value, list):
        raise WorkflowError(BAD_ARRAY, f"array must be an array, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Foreach]


__all__ = ["BAD_ARRAY", "Foreach", "items_of"]
