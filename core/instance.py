"""The instance loop: runs one instance of a workflow from its start state to its end.

This is the hot path (PERFORMANCE.md: a transition must cost little more than
its compiled jq).  Everything here is precomputed at load time; per state the loop
only evaluates the state's log, calls its ``run``, applies its transform and, when
the state staged variable writes, commits them in one transaction.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import InstanceFailure, IsoldeError, WorkflowError
from .expr import Expr, to_text
from .guards import InstanceGuard, needs_guard
from .jqexpr import JqError
from .store import Put, Ref, StoreError, Variable

if TYPE_CHECKING:
    from .engine import Engine
    from .states import StateSpec
    from .workflow import Workflow

NOT_OBJECT = "direktiv.jq.notObject"
_DEFAULT: Any = object()

LogSink = Callable[[str, str, str], None]
"""Receives (instance id, state id, message) for each instance log line."""

StepHook = Callable[["StateContext", "StateSpec", "str | None", "dict[str, Any]", "Sequence[Put]"], "Sequence[Put]"]
"""Called after each state (its transform done, or its error caught) with (context, the
state, the next state id or None, the new data, the writes it staged).  It returns extra
writes committed in the same transaction as the state's own, which is how the daemon keeps
a record of where each instance stands; raising ``InstanceFailure`` stops the instance."""


@dataclass(slots=True)
class ErrorInfo:
    code: str
    message: str
    state: str | None = None

    def __str__(self) -> str:
        where = f" (state '{self.state}')" if self.state else ""
        return f"{self.code}: {self.message}{where}"


@dataclass(slots=True)
class Result:
    """What ``Engine.run`` returns."""

    instance_id: str
    status: str  # "complete" or "failed"
    output: Any = None  # the final state data (None when failed)
    error: ErrorInfo | None = None
    log: list[str] = field(default_factory=list)
    workflow: str = ""
    namespace: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "complete"


def apply_transform(expr: Expr, data: Any) -> dict[str, Any]:
    """Evaluate a transform; it must give exactly one object (``direktiv.jq.notObject``
    otherwise, also when a query yields no value or several, as in Direktiv)."""
    outs = expr.eval_all(data)
    if len(outs) != 1:
        raise WorkflowError(NOT_OBJECT, f"transform must produce exactly one object, got {len(outs)} results")
    out = outs[0]
    if type(out) is not dict:
        raise WorkflowError(NOT_OBJECT, f"transform must produce an object, got {_kind(out)}")
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


class StateContext:
    """What a state's ``run`` may use: variables of its instance's scopes, logging, transitions."""

    __slots__ = (
        "engine", "store", "namespace", "workflow", "instance_id", "state", "_pending",
        "_registered", "_next", "log_lines", "_sink", "error_at_end", "max_variable_bytes",
        "_locked", "lock_owner", "step", "guard",
    )

    def __init__(self, engine: Engine, workflow: Workflow, namespace: str, instance_id: str, sink: LogSink | None):
        self.engine = engine
        self.store = engine.store
        self.namespace = namespace
        self.workflow = workflow
        self.instance_id = instance_id
        self.state: StateSpec | None = None
        self._pending: list[Put] = []
        self._registered = False
        self._next: Any = _DEFAULT
        self.log_lines: list[str] = []
        self._sink = sink
        self.error_at_end: tuple[str, str, str | None] | None = None
        self.max_variable_bytes = engine.max_variable_bytes
        self._locked: set[bytes] = set()
        self.step = 0  # how many states this instance has entered (Direktiv-Step)
        self.lock_owner = instance_id  # whose locks these are (a subflow may run under its parent's)
        self.guard: InstanceGuard | None = None  # the workflow's timeouts / singular (isolde.guards)

    # -- variables ---------------------------------------------------------
    def ref(self, scope: str, key: str) -> Ref:
        if scope == "workflow":
            owner = self.workflow.id
        elif scope == "instance":
            owner = self.instance_id
        else:
            owner = ""
        return Ref(self.namespace, scope, owner, key)

    def get_many(self, items: list[tuple[str, str]]) -> list[Variable | None]:
        """Read several variables of this instance's scopes in one read transaction."""
        try:
            return self.store.get_many([self.ref(s, k) for s, k in items])
        except StoreError as exc:
            raise _store_error(exc) from None

    def set(self, scope: str, key: str, data: bytes | None, mime: str = "application/json") -> None:
        """Stage a write (``None`` deletes); the engine commits all of a state's writes at once."""
        if data is not None and len(data) > self.max_variable_bytes:
            raise WorkflowError(
                "direktiv.limits.variable",
                f"variable '{key}' would be {len(data)} bytes, over the {self.max_variable_bytes}-byte limit "
                "(raise [limits] max_variable_bytes in isolde.toml)",
            )
        self._pending.append(Put(self.ref(scope, key), data, mime))

    def owns_instance_variables(self) -> None:
        """Declare that instance variables of this instance were written outside
        ``set`` (e.g. by an isolate through the sidecar), so they are deleted when
        the instance ends."""
        self._registered = True

    def lock(self, items: list[tuple[str, str]]) -> None:
        """Lock variables for this instance (``lock: true`` on a getter); see ``isolde.locks``.

        Held until this instance's setter has durably written the variable, or until
        the instance ends, whatever the outcome."""
        names = {_lock_key(self.ref(s, k)): f"'{k}' ({s} scope)" for s, k in items}
        keys = list(names)
        self.engine.locks.acquire(self.lock_owner, keys, self.engine.lock_wait, names)
        self._locked.update(keys)

    def release_locks(self) -> None:
        if self._locked:
            self.engine.locks.release(self.lock_owner, list(self._locked))
            self._locked.clear()

    def commit(self, extra: Sequence[Put] = ()) -> None:
        pending = self._pending
        register = None
        if not self._registered and any(p.ref.scope == "instance" for p in pending):
            register = (self.namespace, self.instance_id)
        # Locked variables this write sets go to the next holder as soon as the write is
        # queued (its values visible to this process); other processes wait until it is durable.
        done = [k for k in (_lock_key(p.ref) for p in pending) if k in self._locked] if self._locked else []
        durable: list[Callable[[], None]] = []

        def hand_over() -> None:
            durable.append(self.engine.locks.hand_over(self.lock_owner, done))
            self._locked.difference_update(done)

        try:
            self.store.write([*pending, *extra] if extra else pending, register_instance=register,
                             handover=hand_over if done else None)
        except StoreError as exc:
            raise _store_error(exc) from None
        finally:
            self._pending = []
            for finish in durable:
                finish()
        if register:
            self._registered = True

    def time_left(self) -> float | None:
        """Seconds until the workflow's next timeout (``timeouts``), None without one:
        a state that calls out (an action) bounds its call by it."""
        return None if self.guard is None else self.guard.time_left()

    # -- flow --------------------------------------------------------------
    def transition(self, state_id: str | None) -> None:
        """Go to ``state_id`` next (None ends the instance), instead of the declared transition."""
        self._next = state_id

    def detach(self) -> None:
        """Leave this instance's variables in place when it ends: the daemon, stopping
        mid-instance, hands it to its next start, which resumes it or ends it."""
        self._registered = False

    def fail_at_end(self, code: str, message: str) -> None:
        """Record an error that fails the instance when it ends (the ``error`` state's rule).

        The error is reported against the state that raised it, not the clean-up
        state the instance happened to end in.
        """
        self.error_at_end = (code, message, self.state.id if self.state is not None else None)

    def log(self, message: str) -> None:
        self.log_lines.append(message)
        if self._sink is not None:
            self._sink(self.instance_id, self.state.id if self.state else "", message)

    transform = staticmethod(apply_transform)


def _lock_key(ref: Ref) -> bytes:
    return f"{ref.namespace}\x00{ref.scope}\x00{ref.owner}\x00{ref.key}".encode()


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def _store_error(exc: StoreError) -> WorkflowError:
    code = getattr(exc, "code", None) or "isolde.store"
    return WorkflowError(code, str(exc))


def run_instance(
    engine: Engine,
    wf: Workflow,
    data: dict[str, Any],
    *,
    namespace: str,
    instance_id: str,
    sink: LogSink | None = None,
    start: str | None = None,
    on_step: StepHook | None = None,
    started_at: float | None = None,
) -> Result:
    """Run ``wf`` from its start state (or from state ``start``, to resume) to its end.

    ``started_at`` (``time.time()``) is when a resumed instance first started: its
    workflow ``timeouts`` count from then."""
    ctx = StateContext(engine, wf, namespace, instance_id, sink)
    states = wf.states
    max_steps = engine.max_steps
    max_data = engine.max_data_bytes
    state = wf.start if start is None else states[start]
    steps = 0
    result = Result(instance_id, "complete", log=ctx.log_lines, workflow=wf.id, namespace=namespace)
    guard = ctx.guard = InstanceGuard(engine, wf, namespace, instance_id, started_at) if needs_guard(wf) else None
    try:
        if guard is not None:
            guard.start()
        while True:
            steps += 1
            if steps > max_steps:
                raise InstanceFailure(
                    f"more than {max_steps} state transitions (raise [limits] max_steps in isolde.toml)",
                    code="direktiv.limits.steps",
                )
            ctx.state = state
            ctx.step = steps
            ctx._next = _DEFAULT
            try:
                if guard is not None:
                    guard.at_boundary()
                if state.log is not None:
                    ctx.log(to_text(state.log.eval(data)))
                out = state.impl.run(state, data, ctx)
                if state.transform is not None:
                    out = apply_transform(state.transform, out)
                if out is not data and len(_encode(out)) > max_data:
                    raise WorkflowError(
                        "direktiv.limits.data",
                        f"state data would be over the {max_data}-byte limit "
                        "(raise [limits] max_data_bytes in isolde.toml)",
                    )
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
                if not exc.catchable:
                    raise exc from None
                for pattern, target in state.catch:
                    if fnmatch.fnmatchcase(exc.code, pattern):
                        data = {**data, "error": {"code": exc.code, "msg": exc.msg}}
                        nxt = target
                        break
                else:
                    raise exc from None
                if on_step is not None:
                    extra = on_step(ctx, state, nxt, data, ())
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
        engine._report_internal(exc)
    finally:
        if guard is not None:
            guard.finish()
        sidecar = engine.peek_resource("sidecar")
        if sidecar is not None:  # calls still running for this instance can no longer write
            sidecar.revoke_instance(instance_id)
        if ctx._locked:
            ctx.release_locks()
        if ctx._registered:
            engine.store.end_instance(namespace, instance_id)
    return result

