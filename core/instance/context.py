"""The engine's :class:`isolde.workflow.StateContext`: one per running instance.

It holds the instance's staged writes, its locks and its log, and hands a state
the services it may use (``ctx.events``, ``ctx.call_function``, ...).  The instance
loop (``isolde.instance.loop``) commits what a state staged after the state.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from ..errors import InstanceFailure, WorkflowError
from ..namespace_files import read_file_scope
from ..store import Put, Ref, StoreError, Variable
from ..store.types import make_put, make_ref
from .transform import apply_transform

if TYPE_CHECKING:
    from ..actions.spec import ActionSpec, Branch, Outcome
    from ..config import Config
    from ..events import EventBus
    from ..files import ValueStream
    from ..guards import InstanceGuard
    from ..store import VariableStore
    from ..workflow import StateSpec, Workflow
    from .services import LogSink, Services

T = TypeVar("T")
_DEFAULT: Any = object()
MULTIPLE_ERRORS = "direktiv.workflow.multipleErrors"


class InstanceContext:
    """What a state's ``run`` may use: variables of its instance's scopes, logging, transitions."""

    __slots__ = (
        "services", "store", "namespace", "workflow", "instance_id", "state", "_pending", "_registered", "_next",
        "log_lines", "_sink", "error_at_end", "max_variable_bytes", "_locked", "lock_owner", "step", "guard",
        "depth", "cancelled", "caught", "text",
    )

    def __init__(self, services: Services, workflow: Workflow, namespace: str, instance_id: str,
                 sink: LogSink | None, *, depth: int = 0, store: VariableStore | None = None) -> None:
        self.services = services
        self.store = services.store.get() if store is None else store
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
        self.max_variable_bytes = services.limits.max_variable_bytes
        self._locked: set[bytes] = set()
        self.step = 0
        self.lock_owner = instance_id  # whose locks these are
        self.guard: InstanceGuard | None = None  # the workflow's timeouts / singular (isolde.guards)
        self.depth = depth  # how deep this instance is nested in subflows (0: top level)
        self.cancelled: str | None = None  # why the instance is being cancelled (checked between states)
        self.caught: WorkflowError | None = None  # the error the current state's catch took
        self.text: str | None = None  # the current state's output as JSON text (None: its input, unchanged)

    # -- services ----------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.services.config

    @property
    def events(self) -> EventBus:
        return self.services.events.get()

    def limit(self, name: str) -> Any:
        return self.services.config.limit(name)

    def resource(self, key: str, factory: Callable[[], T]) -> T:
        value: T = self.services.resource(key, factory)
        return value

    # -- variables ---------------------------------------------------------------------
    def ref(self, scope: str, key: str) -> Ref:
        if scope == "workflow":
            owner = self.workflow.id
        elif scope == "instance":
            owner = self.instance_id
        else:
            owner = ""
        return make_ref(self.namespace, scope, owner, key)

    def get_many(self, items: Sequence[tuple[str, str]]) -> list[Variable | None]:
        """Read several variables of this instance's scopes in one read transaction."""
        try:
            if len(items) == 1:  # one variable: the store's single-read fast path
                return [self.store.get(self.ref(*items[0]))]
            return self.store.get_many([self.ref(s, k) for s, k in items])
        except StoreError as exc:
            raise _store_error(exc) from None

    def open_value(self, scope: str, key: str) -> ValueStream | None:
        try:
            return self.store.open(self.ref(scope, key))
        except StoreError as exc:
            raise _store_error(exc) from None

    def read_file(self, key: str) -> bytes | None:
        return read_file_scope(self.workflow, key, self.max_variable_bytes)

    def set(self, scope: str, key: str, data: Any, mime: str = "application/json") -> None:
        """Stage a write (``None`` deletes); the engine commits all of a state's writes at once."""
        if data is not None and len(data) > self.max_variable_bytes:
            raise WorkflowError(
                "direktiv.limits.variable",
                f"variable '{key}' would be {len(data)} bytes, over the {self.max_variable_bytes}-byte limit "
                "(raise [limits] max_variable_bytes in isolde.toml)",
            )
        self._pending.append(make_put(self.ref(scope, key), data, mime))

    def owns_instance_variables(self) -> None:
        """Instance variables of this instance were written outside ``set`` (by an isolate
        through the sidecar), so they are deleted when the instance ends."""
        self._registered = True

    def lock(self, items: Sequence[tuple[str, str]]) -> None:
        """Lock variables for this instance (``lock: true`` on a getter); see ``isolde.locks``.

        Held until this instance's setter has durably written the variable, or until
        the instance ends, whatever the outcome."""
        names = {_lock_key(self.ref(s, k)): f"'{k}' ({s} scope)" for s, k in items}
        keys = list(names)
        self.services.locks.get().acquire(self.lock_owner, keys, self.services.limits.lock_wait, names)
        self._locked.update(keys)

    def holds_locks_after(self, pending: Sequence[Put]) -> bool:
        """Whether this instance still holds variable locks once ``pending`` commits (a
        commit hands on the locks of the variables it writes)."""
        if not self._locked:
            return False
        return bool(self._locked - {_lock_key(p.ref) for p in pending})

    def release_locks(self) -> None:
        if self._locked:
            self.services.locks.get().release(self.lock_owner, list(self._locked))
            self._locked.clear()

    def commit(self, extra: Sequence[Put] = ()) -> None:
        pending = self._pending
        register = None
        if not self._registered:
            for p in pending:
                if p.ref.scope == "instance":
                    register = (self.namespace, self.instance_id)
                    break
        obs = self.services.observer
        if not self._locked:  # the common case: no hand-over to arrange
            began = perf_counter() if obs is not None else 0.0
            try:
                self.store.write([*pending, *extra] if extra else pending, register_instance=register)
                if obs is not None:
                    obs.committed(perf_counter() - began)
            except StoreError as exc:
                raise self._commit_failed(exc) from None
            finally:
                self._pending = []
            if register:
                self._registered = True
            return
        # Locked variables this write sets go to the next holder as soon as the write is
        # queued (its values visible to this process); other processes wait until it is durable.
        done = [k for k in (_lock_key(p.ref) for p in pending) if k in self._locked] if self._locked else []
        durable: list[Callable[[], None]] = []

        def hand_over() -> None:
            durable.append(self.services.locks.get().hand_over(self.lock_owner, done))
            self._locked.difference_update(done)

        began = perf_counter() if obs is not None else 0.0
        try:
            self.store.write([*pending, *extra] if extra else pending, register_instance=register,
                             handover=hand_over if done else None)
            if obs is not None:
                obs.committed(perf_counter() - began)
        except StoreError as exc:
            raise self._commit_failed(exc) from None
        finally:
            self._pending = []
            for finish in durable:
                finish()
        if register:
            self._registered = True

    def _commit_failed(self, exc: StoreError) -> Exception:
        if getattr(exc, "instance_lost", False):
            # Another process holds the instance now (a claim fenced this commit): end it
            # here, uncatchably, and leave its variables to the process that runs it.
            self.detach()
            return InstanceFailure(str(exc), code=getattr(exc, "code", "isolde.store"))
        return _store_error(exc)

    # -- flow --------------------------------------------------------------------------
    def time_left(self) -> float | None:
        """Seconds until the workflow's next timeout (``timeouts``), None without one."""
        return None if self.guard is None else self.guard.time_left()

    def transition(self, state_id: str | None) -> None:
        self._next = state_id

    def detach(self) -> None:
        """Leave this instance's variables in place when it ends: the daemon, stopping
        mid-instance, hands it to its next start, which resumes it or ends it."""
        self._registered = False

    def fail_at_end(self, code: str, message: str) -> None:
        here = self.state.id if self.state is not None else None
        if self.error_at_end is not None:
            raise WorkflowError(MULTIPLE_ERRORS, f"error {code} (state '{here}') raised after the earlier error "
                                f"{self.error_at_end[0]}; the instance keeps the first error")
        self.error_at_end = (code, message, here)

    def progress(self, done: int, total: int, failed: int = 0) -> None:
        obs = self.services.observer
        if obs is not None:
            obs.progress(self, done, total, failed)

    def log(self, message: str) -> None:
        self.log_lines.append(message)
        if self._sink is not None:
            self._sink(self.instance_id, self.state.id if self.state else "", message)

    transform = staticmethod(apply_transform)

    # -- functions ---------------------------------------------------------------------
    def call_function(self, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None = None) -> Any:
        return self.services.functions.get().perform(self, spec, data, timeout=timeout)

    def start_function(self, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None = None) -> None:
        self.services.functions.get().start_async(self, spec, data, timeout=timeout)

    def run_branches(self, branches: Sequence[Branch], *, workers: int, timeout: float | None = None,
                     first_success: bool = False) -> Outcome:
        return self.services.functions.get().run_branches(self, branches, workers=workers, timeout=timeout,
                                                          first_success=first_success)

    def run_subflow(self, reference: str, input: Any, *, background: bool = False, timeout: float | None = None) -> Any:
        return self.services.subflows(self, reference, input, background, timeout)


def _lock_key(ref: Ref) -> bytes:
    return f"{ref.namespace}\x00{ref.scope}\x00{ref.owner}\x00{ref.key}".encode()


def _store_error(exc: StoreError) -> WorkflowError:
    code = getattr(exc, "code", None) or "isolde.store"
    return WorkflowError(code, str(exc))


__all__ = ["InstanceContext"]
