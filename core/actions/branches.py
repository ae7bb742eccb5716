"""Several actions at once: the machinery behind ``foreach`` and ``parallel``
(``ctx.run_branches``).  Each branch goes through the same path as an ``action`` state
(:meth:`Functions.perform`: retries, secrets, files, ``out/``, the sidecar, timeouts)."""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InstanceFailure, WorkflowError
from .spec import Branch, Outcome

if TYPE_CHECKING:
    from .caller import CallerContext

Perform = Callable[..., Any]
"""``Functions.perform``: runs one action with its retries."""

SOFT_TIMEOUT = "direktiv.cancels.timeout.soft"


class _Run:
    """Shared state of one :func:`run_branches` call; every field is guarded by ``cond``."""

    def __init__(self, perform: Perform, ctx: CallerContext, branches: Sequence[Branch], deadline: float | None,
                 first_success: bool) -> None:
        self.perform = perform
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
        # set with ``decided``: a call whose branch was taken before the answer but that
        # registers for cancelling after it is then not made (ActionRequest.stop)
        self.stop = threading.Event()

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
                value = self.perform(
                    self.ctx, branch.spec, branch.source, timeout=left, iterator=i, deadline=self.deadline,
                    stage=functools.partial(self._stage, i), flush=functools.partial(self._flush, i), stop=self.stop,
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
            # reported under the lock, so no report can come after the state's answer
            self.ctx.progress(self.finished, len(self.branches), len(self.errors))
            if self.decided:
                self.stop.set()
                self.cond.notify_all()


def run_branches(
    perform: Perform,
    stop_calls: Callable[[str], None],
    ctx: CallerContext,
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
    run = _Run(perform, ctx, branches, deadline, first_success)
    if not branches:
        return Outcome([])
    ctx.progress(0, len(branches), 0)
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
            run.stop.set()
            run.failure = WorkflowError(SOFT_TIMEOUT, "the state's timeout passed with calls still under way")
        if run.next < len(branches) or any(t.is_alive() for t in threads if t is not threading.current_thread()):
            # decided with calls still under way: first end their action ids (the sidecar
            # refuses what they still send), then tell their isolates to stop (DELETE)
            stop_calls(ctx.instance_id)
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


__all__ = ["run_branches"]
