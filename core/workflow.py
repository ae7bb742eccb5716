"""The workflow model: a validated workflow, its states, and the contract of a state type.

* :class:`Workflow` and :class:`StateSpec` are what validation builds (``isolde.validate``).
* :class:`StateType` is the base class of every state type, built-in or third-party.
* :class:`StateContext` is everything a state's ``run`` may use while an instance runs:
  its variables, logging, the flow, the event bus and the action machinery.  The engine
  provides it (``isolde.instance``); a plugin sees only this protocol.

The engine owns everything common to all states (``log``, ``transform``,
``transition``, ``catch``, committing variable writes atomically); a state type
writes only its own step (STYLE.md practice 3)::

    from isolde.plugin import StateType, hookimpl

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

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence, TypeVar

from .errors import WorkflowError
from .expr import Expr
from .records import NEW, Record, typed_as_dataclass

if TYPE_CHECKING:
    from .actions.spec import ActionSpec, Branch, Outcome
    from .config import Config
    from .events import EventBus
    from .loader import Document
    from .report import Report
    from .store import Variable

T = TypeVar("T")


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

    waits: ClassVar[bool] = True
    """False when running this state never waits on anything outside the engine: no
    isolate call, timer, event or subflow; only expressions and variable reads and writes
    (a ``lock: true`` write may still wait its turn for a lock).  ``isolde serve`` runs an
    instance whose states all say False in the thread of the ``?wait=true`` request that
    started it, without the hand-off to an instance thread and back."""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        """Extra validation beyond the declared fields; report problems with ``report.error``
        and precompute what ``run`` needs into ``state.extra``."""

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        """Do the state's own work and return the new state data (before ``transform``).

        Raise ``WorkflowError`` for a catchable failure; call ``ctx.transition(id)``
        to choose the next state instead of the declared ``transition``.  Never
        mutate ``data`` in place: return a new dict.
        """
        raise NotImplementedError


@typed_as_dataclass(eq=False)
class StateSpec(Record):
    """One validated state of a workflow, with its ``jx`` fields compiled."""

    __slots__ = ("id", "type", "impl", "fields", "path", "transform", "transition", "log", "catch", "extra")
    __match_args__ = ("id", "type", "impl", "fields", "path", "transform", "transition", "log", "catch", "extra")
    _fresh = {"extra": dict}
    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]
    id: str
    type: str
    impl: StateType
    fields: dict[str, Any]
    path: tuple[Any, ...]
    transform: Expr | None
    transition: str | None
    log: Expr | None
    catch: tuple[tuple[str, str | None], ...]
    extra: dict[str, Any]
    """Per-plugin precomputed data (set in ``check``)."""

    def __init__(self, id: str, type: str, impl: StateType, fields: dict[str, Any], path: tuple[Any, ...],
                 transform: Expr | None = None, transition: str | None = None, log: Expr | None = None,
                 catch: tuple[tuple[str, str | None], ...] = (), extra: dict[str, Any] = NEW) -> None:
        self.id = id
        self.type = type
        self.impl = impl
        self.fields = fields
        self.path = path
        self.transform = transform
        self.transition = transition
        self.log = log
        self.catch = catch
        self.extra = {} if extra is NEW else extra


@typed_as_dataclass(eq=False)
class Workflow(Record):
    """A workflow ready to run: states by id with their expressions compiled."""

    __slots__ = ("id", "document", "raw", "fields", "states", "functions", "start", "root")
    __match_args__ = ("id", "document", "raw", "fields", "states", "functions", "root")
    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]
    id: str
    document: Document
    raw: bool
    """A raw-jq era document (strings in jq fields are programs)."""
    fields: dict[str, Any]
    states: dict[str, StateSpec]
    functions: dict[str, dict[str, Any]]
    start: StateSpec
    """The first state (set by validation)."""
    root: Path | None
    """The namespace root (the daemon sets its namespace folder); see ``namespace_root``."""

    def __init__(self, id: str, document: Document, raw: bool, fields: dict[str, Any], states: dict[str, StateSpec],
                 functions: dict[str, dict[str, Any]], root: Path | None = None) -> None:
        self.id = id
        self.document = document
        self.raw = raw
        self.fields = fields
        self.states = states
        self.functions = functions
        self.root = root

    @property
    def filename(self) -> str:
        return self.document.filename


class StateContext(Protocol):
    """What a state's ``run`` may use (the engine's instance context implements it)."""

    namespace: str
    instance_id: str
    workflow: Workflow
    state: StateSpec | None
    step: int
    """How many states this instance has entered (sent to isolates as ``Direktiv-Step``)."""

    @property
    def config(self) -> Config:
        """The engine's configuration (a plugin's own table: ``config.section(name)``)."""

    @property
    def events(self) -> EventBus:
        """The engine's CloudEvents bus (waiting in it is cancelled when the engine closes)."""

    def limit(self, name: str) -> Any:
        """A ``[limits]`` value of the configuration."""

    def log(self, message: str) -> None:
        """Append a line to the instance log."""

    def progress(self, done: int, total: int, failed: int = 0) -> None:
        """Report how far this state is: ``done`` of ``total`` units (``failed`` of them
        failed).  ``isolde run`` shows it on a terminal (``foreach 'each': 37/100 done, 2
        failed``) and erases it when the state is done; without a listener it costs nothing.  ``foreach``
        and ``parallel`` report their calls through ``run_branches`` this way."""

    # -- variables -----------------------------------------------------------------
    def get_many(self, items: Sequence[tuple[str, str]]) -> list[Variable | None]:
        """Read ``(scope, key)`` variables of this instance's scopes from one snapshot."""

    def set(self, scope: str, key: str, data: bytes | memoryview | None, mime: str = "application/json") -> None:
        """Stage a write (``None`` deletes); all of a state's writes commit together after it."""

    def lock(self, items: Sequence[tuple[str, str]]) -> None:
        """Lock ``(scope, key)`` variables for this instance until it writes them or ends."""

    def read_file(self, key: str) -> bytes | None:
        """The bytes of a file of the namespace (``scope: file``), None when there is none."""

    # -- flow ------------------------------------------------------------------------
    def transition(self, state_id: str | None) -> None:
        """Go to ``state_id`` next (None ends the instance), instead of the declared transition."""

    def fail_at_end(self, code: str, message: str) -> None:
        """Fail the instance with this error when it ends (the ``error`` state's rule); a
        second one raises the catchable ``direktiv.workflow.multipleErrors`` and the first
        is kept."""

    def transform(self, expr: Expr, data: Any) -> dict[str, Any]:
        """Apply a transform (``direktiv.jq.notObject`` unless it yields exactly one object)."""

    def time_left(self) -> float | None:
        """Seconds until the workflow's next timeout (``timeouts``), None without one."""

    # -- functions -----------------------------------------------------------------------
    def call_function(self, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Run one action as an ``action`` state does (input, secrets, files, retries, the
        sidecar, ``out/`` staged with this state) and return its result (``.return``)."""

    def start_function(self, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None = None) -> None:
        """Start an action in the background (``async: true``): its result is dropped."""

    def run_branches(self, branches: Sequence[Branch], *, workers: int, timeout: float | None = None,
                     first_success: bool = False) -> Outcome:
        """Run several actions at once (``foreach``, ``parallel``): at most ``workers`` at a
        time, bounded by ``timeout``; all must succeed, or the first success wins."""

    def run_subflow(self, reference: str, input: Any, *, background: bool = False, timeout: float | None = None) -> Any:
        """Run another workflow of the namespace (``reference``: its path, relative to this
        workflow's directory, or from the namespace root with a leading ``/``) as a child
        instance on ``input``, and return its output; its error is raised as this state's.
        With ``timeout`` (seconds) the child is stopped when it passes and this raises
        ``direktiv.cancels.timeout.soft``."""

    def resource(self, key: str, factory: Callable[[], T]) -> T:
        """A per-engine object made on first use and closed (``close()``) with the engine."""


def namespace_root(workflow: Workflow) -> Path:
    """The folder a leading ``/`` means in a subflow's ``workflow:`` or a ``scope: file`` key,
    and the folder neither may leave.

    In daemon mode it is the namespace folder; with ``isolde run --root DIR`` it is DIR
    (``workflow.root``); otherwise the workflow file's own directory (the current
    directory for a workflow given as text).  It is never widened implicitly: a
    workflow reads no file above the folder it was given.
    """
    if workflow.root is not None:
        return workflow.root
    name = workflow.filename
    if not name or name.startswith("<"):
        return Path.cwd().resolve()
    return Path(os.path.abspath(name)).parent.resolve()


def workflow_dir(workflow: Workflow) -> Path | None:
    """The workflow file's directory (None for a workflow given as text)."""
    name = workflow.filename
    if not name or name.startswith("<"):
        return None
    return Path(os.path.abspath(name)).parent


def inside_root(workflow: Workflow, name: str, *, what: str) -> Path:
    """``name`` resolved against the namespace root (a leading ``/``) or the workflow
    file's directory (relative), refused with ``isolde.files.unsafePath`` if it leaves
    the root (links included)."""
    root = namespace_root(workflow).resolve()
    if name.startswith("/"):
        base = root
    else:
        base = workflow_dir(workflow) or root
    target = (base / name.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise WorkflowError(
            "isolde.files.unsafePath",
            f"{what} {name!r} leaves the namespace root {root} (run with --root to choose another root)",
        )
    return target


__all__ = ["StateContext", "StateSpec", "StateType", "Workflow", "inside_root", "namespace_root", "workflow_dir"]
