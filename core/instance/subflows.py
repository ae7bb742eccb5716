"""Subflows: another workflow of the namespace run as a child instance (``type: subflow``).

The child gets the action input as its input; its output becomes ``.return``; its
failure fails the action with the child's code (catchable).  Children nest at most
``[limits] max_subflow_depth`` deep (``direktiv.limits.depth``).  The child runs in
the caller's thread; the action's timeout is the child's deadline: its waits are
woken and it ends there (uncatchable inside it, like ``timeouts.kill``), and the
call fails with the catchable ``direktiv.cancels.timeout.soft``.  A workflow that
starts on events cannot be called (``direktiv.workflow.invoke``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..ids import new_instance_id
from ..errors import ValidationError, WorkflowError
from ..guards import SOFT
from ..workflow import Workflow, inside_root
from .loop import run_instance

if TYPE_CHECKING:
    from .context import InstanceContext
    from .services import Services


INVOKE = "direktiv.workflow.invoke"
EVENT_STARTS = ("event", "eventsXor", "eventsAnd")


def manual_start_refused(workflow: Workflow) -> str | None:
    """Why ``workflow`` cannot be started by hand (the CLI, ``Engine.run``, the API) or as
    a subflow: its ``start`` waits for events (Direktiv v0.7+).  None when it can."""
    start = workflow.fields.get("start") or {}
    kind = start.get("type") if isinstance(start, dict) else None
    if kind not in EVENT_STARTS:
        return None
    return (f"cannot manually invoke event-based workflow '{workflow.id}' (start type {kind}): "
            "it starts when its event is published (isolde serve / POST the event)")


def resolve_subflow(name: str, parent: Workflow) -> Path:
    """Where ``workflow:`` of a subflow points: relative to the parent workflow file's
    directory, or with a leading ``/`` to the namespace root, never outside that root;
    ``.yaml`` / ``.yml`` may be left out."""
    first = inside_root(parent, name, what="subflow")
    for candidate in (first, first.with_name(first.name + ".yaml"), first.with_name(first.name + ".yml")):
        if candidate.is_file():
            return candidate
    return first


class Subflows:
    """Runs child instances with the engine's services (``ctx.run_subflow``)."""

    def __init__(self, services: Services, instance_input: Callable[[Any], dict[str, Any]]) -> None:
        self.services = services
        self.instance_input = instance_input

    def __call__(self, ctx: InstanceContext, name: str, input: Any, background: bool, timeout: float | None = None) -> Any:
        path = resolve_subflow(name, ctx.workflow)
        depth = ctx.depth + 1
        limit = self.services.limits.max_subflow_depth
        if depth > limit:
            raise WorkflowError(
                "direktiv.limits.depth",
                f"subflow '{name}' would nest {depth} deep, over the limit of {limit} "
                "(raise [limits] max_subflow_depth in isolde.toml)",
            )
        root = ctx.workflow.root
        try:
            if root is not None:  # daemon mode: the child is the workflow its path names
                wid = path.relative_to(root).with_suffix("").as_posix()
                workflow = self.services.load(path, workflow_id=wid)
                workflow.id, workflow.root = wid, root
            else:
                workflow = self.services.load(path)
        except FileNotFoundError:
            raise WorkflowError(
                "isolde.subflow.notFound",
                f"subflow '{name}' not found: looked for {path} (relative names start at the calling "
                "workflow's directory, a leading / at the namespace root)",
            ) from None
        except ValidationError as exc:
            first = exc.diagnostics[0] if exc.diagnostics else exc
            raise WorkflowError("isolde.subflow.invalid", f"subflow '{name}' is not a valid workflow: {first}") from None
        refused = manual_start_refused(workflow)
        if refused is not None:
            raise WorkflowError(INVOKE, f"subflow '{name}': {refused}")
        child = new_instance_id()
        data = self.instance_input(input)
        deadline = None if timeout is None else time.monotonic() + timeout
        result = run_instance(self.services, workflow, data, namespace=ctx.namespace, instance_id=child,
                              sink=self.services.sink, depth=depth, deadline=deadline, store=ctx.store)
        if deadline is not None and not result.ok and time.monotonic() >= deadline:
            raise WorkflowError(SOFT, f"subflow '{name}' did not finish within the action's timeout ({timeout:g}s)")
        if not result.ok:
            err = result.error
            code, message = (err.code, err.message) if err is not None else ("isolde.subflow.failed", "failed")
            raise WorkflowError(code, message)
        return result.output


__all__ = ["EVENT_STARTS", "INVOKE", "Subflows", "manual_start_refused", "resolve_subflow"]
