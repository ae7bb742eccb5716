"""What a state-type plugin implements, and what it gets to work with.

The engine owns everything common to all states (``log``, ``transform``,
``transition``, ``catch``, committing variable writes atomically); a state type
writes only its own step (STYLE.md practice 3)::

    from isolde import StateType, hookimpl

    class Hello(StateType):
        name = "hello"
        schema = '''
        state hello "Greets someone." {
            who!: jx "Whom to greet."
        }
        '''

        def run(self, state, data, ctx):
            return {**data, "greeting": f"Hello {state.fields['who'].eval(data)}"}

    @hookimpl
    def isolde_state_types():
        return [Hello]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .expr import Expr
    from .instance import StateContext
    from .validate import Report
    from .workflow import Workflow


class StateType:
    """Base class of every state type, built-in or third-party."""

    name: ClassVar[str]
    """The value of ``type:`` in YAML."""

    schema: ClassVar[str]
    """Declarations in the schema language: one ``state <name> {...}`` plus any helper ``struct``."""

    example: ClassVar[str] = ""
    """A short YAML example of the state, shown in the generated language reference."""

    resumable: ClassVar[bool] = False
    """True when running this state again from the same input is harmless: its only
    effects are the writes it stages with ``ctx.set`` (committed atomically, or not at
    all) and reads.  The daemon resumes an instance interrupted by a crash at such a
    state; at any other state (an action already called an isolate) it marks the
    instance failed with code ``interrupted`` instead of repeating the effect."""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        """Extra validation beyond the declared fields; report problems with ``report.error``."""

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        """Do the state's own work and return the new state data (before ``transform``).

        Raise ``WorkflowError`` for a catchable failure; call ``ctx.transition(id)``
        to choose the next state instead of the declared ``transition``.  Never
        mutate ``data`` in place: return a new dict.
        """
        raise NotImplementedError


@dataclass(slots=True, eq=False)
class StateSpec:
    """One validated state of a workflow, with its ``jx`` fields compiled."""

    id: str
    type: str
    impl: StateType
    fields: dict[str, Any]
    path: tuple[Any, ...]
    transform: Expr | None = None
    transition: str | None = None
    log: Expr | None = None
    catch: tuple[tuple[str, str | None], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # per-plugin precomputed data (set in check)
