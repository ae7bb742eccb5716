"""The ``error`` state: raise an error that fails the instance when it ends.

As in Direktiv, the error is not thrown at once: the state's transform and
transition still run (for clean-up states), and when the instance ends it fails
with this code, which a parent workflow's ``catch`` can match.  A second error
state in the same instance keeps the first error and raises the catchable
``direktiv.workflow.multipleErrors``.
"""

from __future__ import annotations

import re
from typing import Any

from isolde.plugin import Literal, Report, StateContext, StateSpec, StateType, Workflow, hookimpl, to_text

_VERB = re.compile(r"%[vsdqf%]")


class Error(StateType):
    name = "error"
    resumable = True
    waits = False
    schema = """
    state error "Fails the instance with an error code when it ends." {
        error!: string    "The error code, e.g. myapp.notFound (a catch glob can match it)."
        message!: jx      "The message; %s / %v are replaced by the args in order (in raw-jq documents a literal format, as in Direktiv <=0.5.10)."
        args: [jx]        "Values for the message's placeholders, evaluated against the state data."
    }
    """
    example = """
- id: no-names
  type: error
  error: greeter.nonames
  message: 'no name in %s'
  args:
  - 'jq(.)'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        if workflow.raw:  # Direktiv <=0.5.10: the message is a printf format, never jq (ERAS §4.8)
            state.fields["message"] = Literal(state.fields["message"].source)

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        # A second error state keeps the first error: fail_at_end raises the catchable
        # direktiv.workflow.multipleErrors then (Direktiv's InstanceRaise).
        message = to_text(state.fields["message"].eval(data))
        args = [to_text(a.eval(data)) for a in state.fields.get("args") or ()]
        if args:
            it = iter(args)
            message = _VERB.sub(lambda m: "%" if m.group() == "%%" else next(it, m.group()), message)
        ctx.fail_at_end(state.fields["error"], message)
        return data


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Error]
