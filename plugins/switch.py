"""The ``switch`` state: the first true condition picks the next state."""

from __future__ import annotations

from typing import Any

from isolde.plugin import StateContext, StateSpec, StateType, hookimpl, truthy


class Switch(StateType):
    name = "switch"
    resumable = True
    schema = """
    state switch "Goes to the transition of the first condition that is true (null, false, 0, \\"\\", [] and {} are false)." {
        conditions!: [condition]  "Tried in order."
        defaultTransition: stateid  "Where to go when no condition is true; without it the instance ends."
        defaultTransform: jx      "Transform applied when no condition is true."
    }
    struct condition {
        condition!: jx            "Evaluated against the state data; its first result decides."
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
        for cond in state.fields["conditions"]:
            results = cond["condition"].eval_all(data)
            if results and truthy(results[0]):
                transform = cond.get("transform")
                ctx.transition(cond.get("transition"))
                return ctx.transform(transform, data) if transform is not None else data
        transform = state.fields.get("defaultTransform")
        ctx.transition(state.fields.get("defaultTransition"))
        return ctx.transform(transform, data) if transform is not None else data


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Switch]
