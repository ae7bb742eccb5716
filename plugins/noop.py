"""The ``noop`` state: nothing of its own; useful for its transform, log and transition."""

from __future__ import annotations

from typing import Any

from isolde.plugin import StateContext, StateSpec, StateType, hookimpl


class Noop(StateType):
    name = "noop"
    resumable = True
    waits = False
    schema = """
    state noop "Does nothing itself: a place for a transform, a log line or a transition." {
    }
    """
    example = """
- id: start
  type: noop
  log: 'jq(.)'
  transform:
    greeting: 'Hello jq(.name)'
  transition: next
"""

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        return data


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Noop]
