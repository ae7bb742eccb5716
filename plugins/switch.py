"""The ``switch`` state: the first true condition picks the next state."""

from __future__ import annotations

from typing import Any

from isolde.plugin import Expr, InstanceFailure, StateContext, StateSpec, StateType, WorkflowError, hookimpl, truthy

CRASH = "direktiv.switch.condition"
"""The code of the uncatchable failure a condition that cannot be decided gives."""


class Switch(StateType):
    name = "switch"
    resumable = True
    waits = False
    schema = """
    state switch "Goes to the transition of the first condition that is true (null, false, 0, \\"\\", [] and {} are false)." {
        conditions!: [condition]  "Tried in order."
        defaultTransition: stateid  "Where to go when no condition is true; without it the instance ends."
        defaultTransform: jx      "Transform applied when no condition is true."
        default: string           "Direktiv 0.1-0.2.2: parsed and never used; ignored (use defaultTransition)."
    }
    struct condition {
        condition!: jx            "Evaluated against the state data; its first result decides; an evaluation error fails the instance (not catchable, as in Direktiv)."
        transition: stateid       "Where to go when true; without it the instance ends."
        transform: jx             "Transform applied when this condition is taken."
    }
    """
    example = """
- id: decide
  type: switch
  conditions:
  - condition: 'jq(.age >= 18)'
    transition: adult
  - condition: 'jq(.age >= 13)'
    transition: teen
    transform: 'jq(.note = "teenager")'
  defaultTransition: child
"""

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        for i, cond in enumerate(state.fields["conditions"]):
            if decide(cond["condition"], data, i):
                transform = cond.get("transform")
                ctx.transition(cond.get("transition"))
                return ctx.transform(transform, data) if transform is not None else data
        transform = state.fields.get("defaultTransform")
        ctx.transition(state.fields.get("defaultTransition"))
        return ctx.transform(transform, data) if transform is not None else data


def decide(expr: Expr, data: dict[str, Any], index: int) -> bool:
    """A condition's truth: its first result (none is false).  As in every Direktiv
    version, a condition that fails to evaluate is not an error a ``catch`` can
    handle: the instance fails.  Unlike Direktiv (docs/differences.md), null and
    several results do not crash the instance: null is false, the first result decides."""
    where = f"switch condition {index} ({expr.source!r})"
    try:
        results = expr.eval_all(data)
    except WorkflowError as exc:
        raise InstanceFailure(f"{where} failed: {exc.msg}", CRASH) from None
    except Exception as exc:  # a JqError: the expression layer's own error type
        code, msg = getattr(exc, "code", None), getattr(exc, "msg", None)
        if code is None or msg is None:
            raise
        raise InstanceFailure(f"{where} failed: {msg}", CRASH) from None
    return bool(results) and truthy(results[0])


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Switch]
