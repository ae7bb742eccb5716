"""The collaborators of running instances, built by the ``Engine`` (STYLE.md practice 11).

Each service is made on first use (``validate`` never opens the store, a workflow
without actions never starts the sidecar) and registered with the engine's
``ExitStack`` when it is made, so the engine closes them in reverse order of creation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..lazy import Lazy
from ..records import Frozen, Record, typed_as_dataclass

if TYPE_CHECKING:
    from ..actions.call import Functions
    from ..config import Config
    from ..events import EventBus
    from ..guards import Deadlines
    from ..jqexpr import JqRuntime
    from ..locks import VariableLocks
    from ..observers import Observer
    from ..store import VariableStore
    from ..workflow import Workflow

LogSink = Callable[[str, str, str], None]
"""Receives (instance id, state id, message) for each instance log line."""


@typed_as_dataclass(frozen=True)
class Limits(Frozen):
    """The ``[limits]`` an instance consults on every state, read once."""

    __slots__ = ("max_steps", "max_variable_bytes", "max_data_bytes", "lock_wait", "max_subflow_depth")
    __match_args__ = ("max_steps", "max_variable_bytes", "max_data_bytes", "lock_wait", "max_subflow_depth")
    max_steps: int
    max_variable_bytes: int
    max_data_bytes: int
    lock_wait: float
    max_subflow_depth: int

    def __init__(self, max_steps: int, max_variable_bytes: int, max_data_bytes: int, lock_wait: float,
                 max_subflow_depth: int) -> None:
        _set = object.__setattr__
        _set(self, "max_steps", max_steps)
        _set(self, "max_variable_bytes", max_variable_bytes)
        _set(self, "max_data_bytes", max_data_bytes)
        _set(self, "lock_wait", lock_wait)
        _set(self, "max_subflow_depth", max_subflow_depth)

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            max_steps=int(config.limit("max_steps")),
            max_variable_bytes=int(config.limit("max_variable_bytes")),
            max_data_bytes=int(config.limit("max_data_bytes")),
            lock_wait=float(config.limit("lock_wait")),
            max_subflow_depth=int(config.limit("max_subflow_depth")),
        )


def _no_subflows(ctx: Any, ref: str, input: Any, background: bool, timeout: float | None) -> Any:
    return None


def _ignore(exc: BaseException) -> None:
    pass


@typed_as_dataclass()
class Services(Record):
    """What instances run with: one set per engine."""

    __slots__ = ("config", "limits", "jq", "store", "locks", "events", "functions", "deadlines", "resource", "load",
                 "subflows", "sink", "report_internal", "observer")
    __match_args__ = ("config", "limits", "jq", "store", "locks", "events", "functions", "deadlines", "resource",
                      "load", "subflows", "sink", "report_internal", "observer")
    config: Config
    limits: Limits
    jq: JqRuntime
    store: Lazy[VariableStore]
    locks: Lazy[VariableLocks]
    events: Lazy[EventBus]
    functions: Lazy[Functions]
    deadlines: Lazy[Deadlines]
    resource: Callable[[str, Callable[[], Any]], Any]
    """A per-engine object made on first use under a key, closed with the engine."""
    load: Callable[..., Workflow]
    """``load(path, workflow_id=None)``: a workflow file, validated (for subflows)."""
    subflows: Callable[[Any, str, Any, bool, "float | None"], Any]
    """``(calling context, reference, input, background, timeout)``: run a child instance (set by the engine)."""
    sink: LogSink | None
    report_internal: Callable[[BaseException], None]
    """Where a bug in a state type or a callback is reported (``ISOLDE_DEBUG``)."""
    observer: Observer | None
    """Listens to instances, states, actions, commits and progress (``isolde.observers``):
    metrics, terminal progress.  Read once per instance."""

    def __init__(self, config: Config, limits: Limits, jq: JqRuntime, store: Lazy[VariableStore],
                 locks: Lazy[VariableLocks], events: Lazy[EventBus], functions: Lazy[Functions],
                 deadlines: Lazy[Deadlines], resource: Callable[[str, Callable[[], Any]], Any],
                 load: Callable[..., Workflow],
                 subflows: Callable[[Any, str, Any, bool, "float | None"], Any] = _no_subflows,
                 sink: LogSink | None = None, report_internal: Callable[[BaseException], None] = _ignore,
                 observer: Observer | None = None) -> None:
        self.config = config
        self.limits = limits
        self.jq = jq
        self.store = store
        self.locks = locks
        self.events = events
        self.functions = functions
        self.deadlines = deadlines
        self.resource = resource
        self.load = load
        self.subflows = subflows
        self.sink = sink
        self.report_internal = report_internal
        self.observer = observer


__all__ = ["Lazy", "Limits", "LogSink", "Services"]
