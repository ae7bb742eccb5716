"""The ``delay`` state: pause the instance for an ISO-8601 duration.

The wait goes through the engine's event bus (``ctx.events.sleep``), which
holds no lock while sleeping and is woken when the engine closes: the instance
then fails with ``isolde.cancelled`` (not catchable: a closing engine must not
run ``catch`` handlers).  The daemon can cancel one instance's delay with
``engine.events.interrupt(instance_id)``.  As in Direktiv, the state's own
``timeout`` does not shorten a delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from isolde.plugin import Cancelled, IsoldeError, StateContext, StateSpec, StateType, hookimpl

if TYPE_CHECKING:
    from isolde.plugin import EventBus


def bus_of(ctx: StateContext) -> EventBus:
    """The engine's bus; an engine that is already closed cancels the instance instead."""
    try:
        return ctx.events
    except IsoldeError:
        raise Cancelled("the engine is closing") from None


class Delay(StateType):
    name = "delay"
    resumable = True  # waiting again after a crash is harmless: the daemon resumes here
    schema = """
    state delay "Pauses the instance; closing the engine cancels the wait (`isolde.cancelled`)." {
        duration!: duration   "How long to wait, ISO-8601 (`PT30S`, `PT1.5S`, `PT5M`, `P1D`)."
    }
    """
    example = """
- id: pause
  type: delay
  duration: PT5S
  transition: next
"""

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        seconds = state.fields["duration"]
        if seconds > 0:
            bus_of(ctx).sleep(seconds, owner=ctx.instance_id, namespace=ctx.namespace)
        return data


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Delay]
