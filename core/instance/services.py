"""The collaborators of running instances, built by the ``Engine`` (STYLE.md practice 11).

Each service is made on first use (``validate`` never opens the store, a workflow
without actions never starts the sidecar) and registered with the engine's
``ExitStack`` when it is made, so the engine closes them in reverse order of creation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..lazy import Lazy

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


@dataclass(frozen=True, slots=True)
class Limits:
    """The ``[limits]`` an instance consults on every state, read once."""

    max_steps: int
    max_variable_bytes: int
    max_data_bytes: int
    lock_wait: float
    max_subflow_depth: int

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            max_steps=int(config.limit("max_steps")),
            max_variable_bytes=int(config.limit("max_variable_bytes")),
            max_data_bytes=int(config.limit("max_data_bytes")),
            lock_wait=float(config.limit("lock_wait")),
            max_subflow_depth=int(config.limit("max_subflow_depth")),
        )


@dataclass(slots=True)
class Services:
    """What instances run with: one set per engine."""

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
    subflows: Callable[[Any, str, Any, bool, "float | None"], Any] = lambda ctx, ref, input, background, timeout: None
    """``(calling context, reference, input, background)``: run a child instance (set by the engine)."""
    sink: LogSink | None = None
    report_internal: Callable[[BaseException], None] = lambda exc: None
    """Where a bug in a state type or a callback is reported (``ISOLDE_DEBUG``)."""
    observer: Observer | None = None
    """Listens to instances, states, actions, commits and progress (``isolde.observers``):
    metrics, terminal progress.  Read once per instance."""


__all__ = ["Lazy", "Limits", "LogSink", "Services"]
