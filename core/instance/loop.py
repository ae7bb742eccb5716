"""The instance loop: runs one instance of a workflow from its start state to its end.

This is the hot path (PERFORMANCE.md: a transition must cost little more than
its compiled jq).  Everything here is precomputed at load time; per state the loop
only evaluates the state's log, calls its ``run``, applies its transform and, when
the state staged variable writes, commits them in one transaction.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from ..errors import InstanceFailure, IsoldeError, WorkflowError
from ..expr import catch_matches, to_log_text
from ..guards import InstanceGuard, needs_guard
from ..jqexpr import JqError
from ..jsontext import compact
from .context import _DEFAULT, InstanceContext
from .result import ErrorInfo, Result
from .transform import apply_transform

CANCEL_CODE = "direktiv.cancels.api"
"""The error of an instance cancelled by a user (``Engine.cancel``, the CLI, the API)."""

if TYPE_CHECKING:
    from ..observers import Observer
    from ..store import Put, VariableStore
    from ..workflow import StateSpec, Workflow
    from .services import LogSink, Services

StepHook = Callable[[InstanceContext, "StateSpec", "str | None", "dict[str, Any]", "Sequence[Put]"], "Sequence[Put]"]
"""Called after each state (its transform done, or its error caught) with (context, the
state, the next state id or None, the new data, the writes it staged).  It returns extra
writes committed in the same transaction as the state's own, which is how the daemon keeps
a record of where each instance stands; raising ``InstanceFailure`` stops the instance."""


class Recorder(Protocol):
    """Keeps an instance's history (``isolde.history.Recorder``)."""

    def begin(self, ctx: InstanceContext, on_step: StepHook | None, sink: LogSink | None) -> tuple[StepHook, LogSink]:
        """Bind to the context; returns the step hook and log sink the instance uses."""
        ...


_encode = compact()


def run_instance(
    services: Services,
    wf: Workflow,
    data: dict[str, Any],
    *,
    namespace: str,
    instance_id: str,
    sink: LogSink | None = None,
    start: str | None = None,
    on_step: StepHook | None = None,
    started_at: float | None = None,
    depth: int = 0,
    deadline: float | None = None,
    recorder: Recorder | None = None,
    store: VariableStore | None = None,
) -> Result:
    """Run ``wf`` from its start state (or from state ``start``, to resume) to its end.

    ``started_at`` (``time.time()``) is when a resumed instance first started: its
    workflow ``timeouts`` count from then.  ``depth`` is how deep a subflow nests;
    ``deadline`` (``time.monotonic()``) ends a subflow called with a timeout there
    (uncatchable inside it, as the workflow's ``timeouts.kill``).  ``recorder`` keeps the
    instance's history (it wraps ``on_step`` and the log sink) and carries a cancel.  ``store``
    replaces the services' store for this instance's reads and writes (and its subflows')."""
    ctx = InstanceContext(services, wf, namespace, instance_id, sink, depth=depth, store=store)
    if recorder is not None:
        on_step, ctx._sink = recorder.begin(ctx, on_step, sink)
    states = wf.states
    limits = services.limits
    max_steps = limits.max_steps
    max_data = limits.max_data_bytes
    state = wf.start if start is None else states[start]
    steps = 0
    result = Result(instance_id, "complete", log=ctx.log_lines, workflow=wf.id, namespace=namespace)
    visited = result.states
    guard = ctx.guard = (
        InstanceGuard(services.locks, services.deadlines, services.events, wf, namespace, instance_id, started_at,
                      deadline)
        if deadline is not None or needs_guard(wf) else None
    )
    obs = services.observer
    if obs is not None:
        obs.instance_started(ctx)
        began = mark = perf_counter()
    try:
        if guard is not None:
            guard.start()
        while True:
            if obs is not None:
                mark = _state_done(obs, ctx, mark)
            steps += 1
            if steps > max_steps:
                raise InstanceFailure(
                    f"more than {max_steps} state transitions (raise [limits] max_steps in isolde.toml)",
                    code="direktiv.limits.steps",
                )
            ctx.state = state
            ctx.step = steps
            visited.append(state.id)
            ctx._next = _DEFAULT
            try:
                if ctx.cancelled is not None:
                    raise InstanceFailure(ctx.cancelled, code=CANCEL_CODE)
                if guard is not None:
                    guard.at_boundary()
                if state.log is not None:
                    ctx.log(to_log_text(state.log.eval(data)))
                out = state.impl.run(state, data, ctx)
                if state.transform is not None:
                    out = apply_transform(state.transform, out)
                if out is not data:
                    text = ctx.text = _encode(out)
                    if len(text) > max_data:
                        raise WorkflowError(
                            "direktiv.limits.data",
                            f"state data would be over the {max_data}-byte limit "
                            "(raise [limits] max_data_bytes in isolde.toml)",
                        )
                else:
                    ctx.text = None
                if ctx.cancelled is not None:  # cancelled while it ran: its writes are not kept
                    raise InstanceFailure(ctx.cancelled, code=CANCEL_CODE)
                nxt = state.transition if ctx._next is _DEFAULT else ctx._next
                extra = () if on_step is None else on_step(ctx, state, nxt, out, ctx._pending)
                if ctx._pending or extra:
                    ctx.commit(extra)
                data = out
            except (WorkflowError, JqError) as exc:
                ctx._pending = []
                if isinstance(exc, JqError):
                    exc = WorkflowError(exc.code, exc.msg)
                if guard is not None:
                    exc = guard.translate(exc)
                if not exc.catchable or ctx.cancelled is not None:
                    raise exc from None
                for pattern, target in state.catch:
                    if catch_matches(pattern, exc.code):
                        data = {**data, "error": {"code": exc.code, "msg": exc.msg}}
                        nxt = target
                        break
                else:
                    raise exc from None
                if on_step is not None:
                    ctx.caught = exc
                    extra = on_step(ctx, state, nxt, data, ())
                    ctx.caught = None
                    if extra:
                        ctx.commit(extra)
            if nxt is None:
                break
            state = states[nxt]
        if ctx.error_at_end is not None:
            code, message, raised_in = ctx.error_at_end
            result.status = "failed"
            result.error = ErrorInfo(code, message, raised_in or state.id)
        else:
            result.output = data
    except WorkflowError as exc:
        result.status = "failed"
        result.error = ErrorInfo(exc.code, exc.msg, state.id)
    except IsoldeError as exc:  # e.g. a configuration problem met at run time: the user's to fix
        result.status = "failed"
        result.error = ErrorInfo(getattr(exc, "code", None) or "isolde.error", str(exc), state.id)
    except Exception as exc:  # a bug in a state type: fail this instance, keep the engine alive
        result.status = "failed"
        result.error = ErrorInfo("isolde.internal", f"{type(exc).__name__}: {exc} (a bug in state type '{state.type}')", state.id)
        services.report_internal(exc)
    finally:
        if ctx.cancelled is not None and result.status == "failed":
            result.status = "cancelled"
            result.error = ErrorInfo(CANCEL_CODE, ctx.cancelled, result.error.state if result.error else state.id)
        if guard is not None:
            guard.finish()
        functions = services.functions.peek()
        if functions is not None:  # calls still running for this instance can no longer write
            functions.files.revoke_instance(instance_id)
        if ctx._locked:
            ctx.release_locks()
        if ctx._registered:
            ctx.store.end_instance(namespace, instance_id)
        if obs is not None:
            _state_done(obs, ctx, mark)
            obs.instance_ended(ctx, result.status, result.error.code if result.error else None, perf_counter() - began)
    return result


def _state_done(obs: Observer, ctx: InstanceContext, mark: float) -> float:
    """Tell ``obs`` the state ``ctx`` was in is done (it began at ``mark``); returns now."""
    now = perf_counter()
    if ctx.state is not None:
        obs.state_done(ctx, ctx.state.type, now - mark)
    return now


__all__ = ["CANCEL_CODE", "Recorder", "StepHook", "run_instance"]
