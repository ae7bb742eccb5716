"""The ``foreach`` state: one action per item of an array, results at ``.return[i]``.

It also holds :func:`run_branches`, the machinery that runs several actions at
once and that ``parallel`` shares: each action goes through
``isolde.plugins.action.perform`` (retries, secrets, files, ``out/``, the
sidecar, timeouts), so an action inside a ``foreach`` or ``parallel`` behaves
exactly like an ``action`` state.

Decisions (Direktiv where it had a rule, written down where it did not):

* **The array** (``array``): a jq query gives *all* its results, so
  ``jq(.names[] | {name: .})`` loops over one object per name (Direktiv
  v0.1-v0.5); a query whose only result is an array loops over that array
  (``jq(.names)``, Direktiv v0.6+).  A query whose only result is ``null``, and
  a literal or template that is not an array, fail with the catchable
  ``direktiv.foreach.badArray``.  No results, or an empty array, give
  ``.return = []`` without calling anything.
* **Each item** is what the action's ``input`` is evaluated against (without
  ``input`` the item itself is sent); it is sent with ``Direktiv-Iterator: i``.
* **Concurrency**: at most ``[limits] foreach_concurrency`` calls run at once
  (default 10; Direktiv capped it too); items start in order.
* **Results** are at ``.return[i]`` in item order, whatever order the calls
  finish in.
* **Failure**: the first item to fail (after its own ``retries``) fails the
  state with that item's error (catchable if the error is); items not started
  yet are not started, calls under way are left to finish and their results and
  ``out/`` files are dropped.  An uncatchable failure of any item fails the
  instance.  The ``out/`` files of successful items commit with the state, all
  at once, so a failed ``foreach`` stores none of them.
* **``timeout``** (the state's) bounds the whole state: every call gets the time
  that is left; past it the state fails with ``direktiv.cancels.timeout.soft``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from isolde import StateContext, StateSpec, StateType, Workflow, hookimpl
from isolde.isolates import isolates_for
from isolde.errors import InstanceFailure, WorkflowError
from isolde.expr import Query
from isolde.plugins.action import ActionSpec, perform
from isolde.validate import Report

BAD_ARRAY = "direktiv.foreach.badArray"
SOFT_TIMEOUT = "direktiv.cancels.timeout.soft"


# --------------------------------------------------------------------------- running actions side by side


@dataclass(slots=True)
class Branch:
    """One action to run: what to call and the data its ``input`` is evaluated against."""

    spec: ActionSpec
    source: Any


@dataclass(slots=True)
class Outcome:
    """What :func:`run_branches` gives back.

    ``results[i]`` is branch *i*'s result (None for a branch without one);
    ``errors`` holds ``(i, error)`` in the order the failures arrived;
    ``winner`` is the branch that decided a first-success run.
    """

    results: list[Any]
    errors: list[tuple[int, WorkflowError]] = field(default_factory=list)
    winner: int | None = None


class _Run:
    """Shared state of one :func:`run_branches` call; every field is guarded by ``cond``."""

    def __init__(self, ctx: StateContext, branches: Sequence[Branch], deadline: float | None, first_success: bool) -> None:
        self.ctx = ctx
        self.branches = branches
        self.deadline = deadline
        self.first_success = first_success
        self.cond = threading.Condition()
        n = len(branches)
        self.results: list[Any] = [None] * n
        self.staged: list[list[tuple[str, str, Any, str]]] = [[] for _ in range(n)]
        self.errors: list[tuple[int, WorkflowError]] = []
        self.failure: BaseException | None = None  # uncatchable, or a bug
        self.winner: int | None = None
        self.next = 0
        self.finished = 0
        self.decided = False  # the state has its answer: start nothing more, drop late output

    # -- workers -------------------------------------------------------------------------
    def work(self) -> None:
        while True:
            with self.cond:
                if self.decided or self.next >= len(self.branches):
                    return
                i = self.next
                self.next += 1
            branch = self.branches[i]
            try:
                left = self._time_left()
                if left is not None and left <= 0:
                    raise WorkflowError(SOFT_TIMEOUT, "the state's timeout passed before this call could start")
                value = perform(
                    self.ctx, branch.spec, branch.source, timeout=left, iterator=i, deadline=self.deadline,
                    stage=lambda scope, key, data, mime, i=i: self._stage(i, scope, key, data, mime),
                    flush=lambda i=i: self._flush(i),
                )
            except WorkflowError as exc:
                self._done(i, error=exc)
            except BaseException as exc:  # a bug below perform: fail the instance, not the thread
                self._done(i, crash=exc)
            else:
                self._done(i, value=value)

    def _time_left(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def _stage(self, i: int, scope: str, key: str, data: Any, mime: str) -> None:
        with self.cond:
            if not self.decided:
                self.staged[i].append((scope, key, data, mime))

    def _flush(self, i: int) -> None:
        """A call failed with a catchable error: what it left in ``out/`` is stored at
        once (as for an action state), unless the state has already moved on."""
        with self.cond:
            items, self.staged[i] = self.staged[i], []
            if self.decided or not items:
                return
            for scope, key, data, mime in items:
                self.ctx.set(scope, key, data, mime)
            self.ctx.commit()

    def _done(self, i: int, *, value: Any = None, error: WorkflowError | None = None, crash: BaseException | None = None) -> None:
        with self.cond:
            self.finished += 1
            if self.decided:
                return
            if crash is not None or (error is not None and not error.catchable):
                self.failure = crash if crash is not None else error
                self.decided = True
            elif error is not None:
                self.errors.append((i, error))
                if not self.first_success or self.finished == len(self.branches):
                    self.decided = True
            else:
                self.results[i] = value
                if self.first_success:
                    self.winner = i
                    self.decided = True
                elif self.finished == len(self.branches):
                    self.decided = True
            if self.decided:
                self.cond.notify_all()


def run_branches(
    ctx: StateContext,
    branches: Sequence[Branch],
    *,
    workers: int,
    timeout: float | None = None,
    first_success: bool = False,
) -> Outcome:
    """Run ``branches`` with at most ``workers`` calls at a time and wait for the answer.

    All-mode (``first_success=False``): done when every branch succeeded, or at
    the first failure.  First-success mode: done at the first success, or when
    every branch failed.  An uncatchable failure (or a bug) of any branch is
    raised at once.  The ``out/`` values of the branches that count (all of
    them; the winner) are staged on ``ctx`` in branch order, so they commit
    with the state; everything a branch produces after the answer is dropped.
    Calls still under way are not waited for.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    run = _Run(ctx, branches, deadline, first_success)
    if not branches:
        return Outcome([])
    threads = []
    for n in range(min(max(1, workers), len(branches))):
        t = threading.Thread(target=run.work, name=f"isolde-branch-{ctx.instance_id[:8]}-{n}", daemon=True)
        t.start()
        threads.append(t)
    with run.cond:
        if deadline is None:
            run.cond.wait_for(lambda: run.decided)
        elif not run.cond.wait_for(lambda: run.decided, timeout=max(deadline - time.monotonic(), 0) + 1.0):
            # the calls overran the state's timeout (a runner that ignores its deadline)
            run.decided = True
            run.failure = WorkflowError(SOFT_TIMEOUT, "the state's timeout passed with calls still under way")
        if run.next < len(branches) or any(t.is_alive() for t in threads if t is not threading.current_thread()):
            # decided with calls still under way: first end their action ids (the sidecar
            # refuses what they still send), then tell their isolates to stop (DELETE)
            sidecar = ctx.engine.peek_resource("sidecar")
            if sidecar is not None:
                sidecar.revoke_instance(ctx.instance_id)
            isolates_for(ctx.engine).cancel_instance(ctx.instance_id)
        if run.failure is not None:
            failure = run.failure
            if isinstance(failure, WorkflowError):
                raise failure
            raise InstanceFailure(f"{type(failure).__name__}: {failure}", code="isolde.internal") from failure
        keep = [run.winner] if first_success else (range(len(branches)) if not run.errors else [])
        for i in keep:
            if i is None:
                continue
            for scope, key, data, mime in run.staged[i]:
                ctx.set(scope, key, data, mime)
        return Outcome(list(run.results), list(run.errors), run.winner)


def state_timeout(state: StateSpec) -> float | None:
    """The state's ``timeout`` in seconds (None without one)."""
    value = state.fields.get("timeout")
    return None if value is None else float(value)


# --------------------------------------------------------------------------- the state


class Foreach(StateType):
    name = "foreach"
    schema = """
    state foreach "Calls a function once per item of an array, several at a time, and places the results at .return[i] in item order; the first failing item fails the state." {
        array!: jx        "The items: every result of the query (a single array result is that array); each item is what the action's input is evaluated against."
        action!: action   "The call made for each item (as in an action state)."
    }
    """
    example = """
- id: greet-all
  type: foreach
  array: 'jq(.names[] | {name: .})'
  action:
    function: greeter
    input:
      name: 'jq(.name)'
  transform: 'jq({greetings: [.return[].msg]})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["spec"] = ActionSpec.build(state.fields["action"], workflow, report, state.path + ("action",))

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        items = items_of(state.fields["array"], data)
        spec: ActionSpec = state.extra["spec"]
        if spec.secrets:
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise WorkflowError(
                        BAD_ARRAY,
                        f"item {i} is {_kind(item)}; with secrets every item must be an object (secrets go to .secrets)",
                    )
        if not items:
            return {**data, "return": []}
        ctx.log(f"foreach: {len(items)} item(s), at most {ctx.engine.config.limit('foreach_concurrency')} at a time")
        outcome = run_branches(
            ctx,
            [Branch(spec, item) for item in items],
            workers=int(ctx.engine.config.limit("foreach_concurrency")),
            timeout=state_timeout(state),
        )
        if outcome.errors:
            i, err = outcome.errors[0]
            ctx.log(f"foreach: item {i} failed with {err.code}")
            raise err
        return {**data, "return": outcome.results}


def items_of(expr: Any, data: dict[str, Any]) -> list[Any]:
    """The items of ``array`` (see the module docstring for the rule)."""
    values = expr.eval_all(data)
    if isinstance(expr, Query):
        if len(values) == 1:
            only = values[0]
            if isinstance(only, list):
                return only
            if only is None:
                raise WorkflowError(BAD_ARRAY, f"array query {expr.source!r} gave null, not an array")
        return values
    value = values[0] if values else None
    if not isinstance(value, list):
        raise WorkflowError(BAD_ARRAY, f"array must be an array, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Foreach]


__all__ = ["BAD_ARRAY", "Branch", "Foreach", "Outcome", "items_of", "run_branches", "state_timeout"]
