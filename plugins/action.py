"""The ``action`` state: calls a function (an isolate, a subflow, ...) and places its
result at ``.return``.

Everything about the call itself (input, secrets, files, retries, the sidecar,
``out/``, timeouts) is the engine's action machinery, reached through
``ctx.call_function``; ``foreach``, ``parallel`` and third-party states use the same.
The function types the calls can reach are declared by the plugins that provide
their runners (``isolde.plugins.runners`` for the built-in ones).
"""

from __future__ import annotations

from typing import Any

from isolde.plugin import Report, StateContext, StateSpec, StateType, Workflow, compile_action, hookimpl


class Action(StateType):
    name = "action"
    schema = """
    state action "Calls a function (an isolate, a subflow, ...) and places its result at .return." {
        action!: action        "What to call, with which input."
        async: bool = false    "Start the call and go on at once, without its result (fire and forget; meant for subflows)."
    }
    """
    example = """
- id: greet
  type: action
  action:
    function: greeter
    input:
      name: 'jq(.name)'
    retries:
      max_attempts: 3
      delay: PT1S
      codes: ['greeter.busy']
  timeout: PT30S
  catch:
  - error: 'greeter.*'
    transition: report
  transform: 'jq({greeting: .return.greeting})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["spec"] = compile_action(state.fields["action"], workflow, report, state.path + ("action",))

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        spec = state.extra["spec"]
        timeout = state.fields.get("timeout")
        if state.fields.get("async"):
            ctx.start_function(spec, data, timeout=timeout)
            return data
        return {**data, "return": ctx.call_function(spec, data, timeout=timeout)}


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Action]


__all__ = ["Action"]
