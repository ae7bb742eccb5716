"""The ``parallel`` state: several actions at once, in ``and`` or ``or`` mode.

Every action runs through ``isolde.plugins.action.perform`` (via the branch
runner shared with ``foreach``), each with its own ``retries``, and is sent
``Direktiv-Iterator: i`` (its position in ``actions``).

Decisions, following Direktiv's engine:

* ``mode: and`` (default): the state waits for every action; ``.return[i]`` is
  action *i*'s result.  The first action to fail (after its retries) fails the
  state with its own error code, so when every action fails the state fails
  with the error that arrived first.
* ``mode: or``: the first action to succeed decides; ``.return`` is a list as
  long as ``actions`` holding that action's result at its index and ``null``
  everywhere else (Direktiv kept the list shape).  Actions still under way are
  left to finish and their results and ``out/`` files are dropped.  When every
  action fails the state fails with the catchable ``direktiv.parallel.allFailed``
  (Direktiv's code), whose message lists each action's error.
* An uncatchable failure of any action fails the instance, in both modes.
* The ``out/`` files of the actions that count (all of them for ``and``, the
  winner for ``or``) commit with the state, atomically.
* ``timeout`` (the state's) bounds the whole state, as for ``foreach``.
"""

from __future__ import annotations

from typing import Any

from isolde.plugin import (
    ActionSpec,
    Branch,
    Report,
    StateContext,
    StateSpec,
    StateType,
    Workflow,
    WorkflowError,
    compile_action,
    hookimpl,
)

ALL_FAILED = "direktiv.parallel.allFailed"


class Parallel(StateType):
    name = "parallel"
    schema = """
    state parallel "Calls several functions at once; `and` waits for all (results at .return[i]), `or` takes the first success." {
        actions!: [action]        "The calls, each as in an action state; all start at once."
        mode: "and" | "or" = "and"  "and: every action must succeed; or: the first success wins (all failing raises direktiv.parallel.allFailed)."
    }
    """
    example = """
- id: solve-all
  type: parallel
  mode: and
  actions:
  - function: solve
    input:
      x: "10*2"
  - function: solve
    input:
      x: "10+2"
  transform: 'jq({sum: (.return | add)})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        actions = state.fields["actions"]
        if not actions:
            report.error(state.path + ("actions",), "a parallel state needs at least one action")
            return
        state.extra["specs"] = [
            compile_action(a, workflow, report, state.path + ("actions", i)) for i, a in enumerate(actions)
        ]

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        specs: list[ActionSpec] = state.extra["specs"]
        first_success = state.fields["mode"] == "or"
        timeout = state.fields.get("timeout")
        outcome = ctx.run_branches(
            [Branch(spec, data) for spec in specs],
            workers=len(specs),
            timeout=None if timeout is None else float(timeout),
            first_success=first_success,
        )
        if first_success:
            if outcome.winner is None:
                listed = "; ".join(f"action {i}: {e.code}: {e.msg}" for i, e in sorted(outcome.errors, key=lambda x: x[0]))
                raise WorkflowError(ALL_FAILED, f"all {len(specs)} actions failed ({listed})")
            ctx.log(f"parallel (or): action {outcome.winner} answered first")
            results: list[Any] = [None] * len(specs)
            results[outcome.winner] = outcome.results[outcome.winner]
            return {**data, "return": results}
        if outcome.errors:
            i, err = outcome.errors[0]
            ctx.log(f"parallel (and): action {i} failed with {err.code}")
            raise err
        return {**data, "return": outcome.results}


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Parallel]


__all__ = ["ALL_FAILED", "Parallel"]
