"""Calling a function, start to end (SPEC §4): what ``ctx.call_function`` does.

1. the input is evaluated against the state data (plus ``.secrets`` when the
   action names secrets; without ``input`` the whole data is sent, as Direktiv);
2. the function is resolved to an isolate runner (``isolde.isolates``);
3. for an isolate: a fresh action folder gets the ``files`` (function-level
   ones of the v0.3 era, then action-level ones), the sidecar grants an action
   id (starting the sidecar on first use), and the ``out/`` watcher starts if
   the call is still running after ``WATCH_AFTER`` (a fast call is only swept);
4. the isolate is called (SPEC §4.2); a matching catchable error is retried
   (``retries``: delay x multiplier^n, then ``direktiv.retries.exceeded``);
5. after a reply (a result, or an error the isolate answered with
   ``Direktiv-ErrorCode``) ``out/<scope>/`` is collected: after a result it is
   staged with the state, so it commits atomically with the state's other effects;
   after an error reply it is committed at once (one transaction) before the error
   goes to ``catch``.  After a timeout, an uncatchable failure, or an isolate that
   died without answering, nothing is committed;
6. the action id is revoked and the folder removed (by a background thread),
   whatever happened.
"""

from __future__ import annotations

import json
import secrets as _secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InstanceFailure, IsoldeError, WorkflowError
from ..isolates.protocol import TIMEOUT_CODE, ActionRequest, ErrorReply, interpret
from .branches import run_branches
from .folders import ActionFiles, Stage
from .secrets import with_secrets
from .spec import ActionSpec, Branch, Outcome

if TYPE_CHECKING:
    import threading

    from ..isolates.hub import Isolates
    from ..isolates.runner import Runner
    from ..observers import Observer
    from .caller import CallerContext


class Functions:
    """The engine's action machinery: runners (``isolates``) plus the action folders,
    the sidecar and the ``out/`` collection (``files``)."""

    def __init__(self, isolates: Isolates, files: ActionFiles, secrets: dict[str, Any],
                 observer: Callable[[], Observer | None] = lambda: None) -> None:
        self.isolates = isolates
        self.files = files
        self._secrets = secrets
        self._observer = observer  # the engine's current observer (metrics), read per call

    def cancel_all(self) -> None:
        """The engine is stopping: isolate calls under way get their ``DELETE``."""
        self.isolates.cancel_all()

    def close(self) -> None:
        self.isolates.close()  # waits for background calls, which still use the folders
        self.files.close()

    # ------------------------------------------------------------------ one action
    def perform(
        self,
        ctx: CallerContext,
        spec: ActionSpec,
        data: dict[str, Any],
        *,
        timeout: float | None = None,
        iterator: int | None = None,
        stage: Stage | None = None,
        flush: Callable[[], None] | None = None,
        background: bool = False,
        deadline: float | None = None,
        stop: threading.Event | None = None,
    ) -> Any:
        """Run one action (with its retries) and return its result (``.return``).

        ``deadline`` (``time.monotonic()``), when given, bounds the whole action, retries
        and their pauses included (foreach / parallel pass their state's): no attempt
        runs past it, and a retry that could not start before it is a timeout.
        ``timeout`` is the state's (seconds); without it ``[actions] timeout``; never
        beyond the workflow's next timeout (``ctx.time_left()``).  ``iterator`` is sent
        as ``Direktiv-Iterator``.  Collected ``out/`` values go to ``stage`` (default
        ``ctx.set``: they commit with the state); after an error reply they are staged
        and then ``flush`` is called (default ``ctx.commit``), because a failing state
        commits nothing itself.  ``stop`` (foreach / parallel) is set when the state no
        longer needs the call: an attempt not yet made then is not made (see
        ``ActionRequest.stop``).  Raises ``WorkflowError`` / ``InstanceFailure``.
        """
        obs = self._observer()
        if obs is None:
            return self._perform(ctx, spec, data, timeout, iterator, stage, flush, background, deadline, stop)
        began = time.perf_counter()
        try:
            value = self._perform(ctx, spec, data, timeout, iterator, stage, flush, background, deadline, stop)
        except WorkflowError as exc:
            obs.action_done(ctx, spec.function_id, time.perf_counter() - began, exc.code)
            raise
        obs.action_done(ctx, spec.function_id, time.perf_counter() - began, None)
        return value

    def _perform(self, ctx: CallerContext, spec: ActionSpec, data: dict[str, Any], timeout: float | None,
                 iterator: int | None, stage: Stage | None, flush: Callable[[], None] | None, background: bool,
                 deadline: float | None, stop: threading.Event | None = None) -> Any:
        settings = self.isolates.settings
        source = with_secrets(self._secrets, spec, data) if spec.secrets else data
        value = source if spec.input is None else spec.input.eval(source)
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        runner = self.isolates.runner(spec.function, spec.base_dir or Path.cwd())
        attempt = 0
        while True:
            limit = timeout if timeout else settings.timeout
            left = None if background else ctx.time_left()  # the workflow's timeouts cut a call short
            if left is not None and left < limit:
                limit = max(left, 0.001)
            if deadline is not None:
                limit = min(limit, max(deadline - time.monotonic(), 0.001))
            try:
                return self._call_once(
                    ctx, spec, runner, value, body, limit, iterator, stage or ctx.set, flush or ctx.commit, source,
                    background, stop,
                )
            except WorkflowError as exc:
                if not (spec.retry_codes and exc.catchable and any(p.search(exc.code) for p in spec.retry_codes)):
                    raise
                if left is not None and (ctx.time_left() or 0.0) <= 0:  # the workflow's timeout is due
                    raise
                if attempt >= spec.retry_max:
                    raise WorkflowError(
                        "direktiv.retries.exceeded",
                        f"maximum retries exceeded ({spec.retry_max}) calling function '{spec.function_id}'; "
                        f"last error {exc.code}: {exc.msg}",
                    ) from None
                pause = spec.retry_delay * spec.retry_multiplier**attempt
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise WorkflowError(
                        TIMEOUT_CODE,
                        f"the state's timeout leaves no time to retry function '{spec.function_id}' "
                        f"(last error {exc.code}: {exc.msg})",
                    ) from None
                attempt += 1
                ctx.log(f"action '{spec.function_id}' failed with {exc.code}; retry {attempt} of {spec.retry_max} in {pause:g}s")
                time.sleep(pause)

    def _call_once(
        self, ctx: CallerContext, spec: ActionSpec, runner: Runner, value: Any, body: bytes, timeout: float,
        iterator: int | None, stage: Stage, flush: Callable[[], None], source: dict[str, Any], background: bool,
        stop: threading.Event | None = None,
    ) -> Any:
        wf = ctx.workflow
        if not runner.uses_folder:
            request = ActionRequest(
                body=body, input=value, action_id=_secrets.token_urlsafe(16), namespace=ctx.namespace,
                workflow=wf.id, instance_id=ctx.instance_id, step=ctx.step, timeout=timeout, function=spec.function,
                iterator=iterator, ctx=ctx, background=background, stop=stop,
            )
            return interpret(runner.call(request), runner.describe())
        with self.files.prepare(ctx, spec, source) as call:
            request = ActionRequest(
                body=body, input=value, action_id=call.action_id, namespace=ctx.namespace, workflow=wf.id,
                instance_id=ctx.instance_id, step=ctx.step, timeout=timeout, function=spec.function,
                temp_dir=call.path, sidecar=call.sidecar, iterator=iterator, ctx=ctx, background=background,
                stop=stop,
            )
            try:
                try:
                    response = runner.call(request)
                finally:
                    call.call_ended()
                result = interpret(response, runner.describe())
            except ErrorReply as exc:
                call.flush_outputs(exc, stage, flush)
                raise
            except WorkflowError:  # a timeout, an isolate that died or broke off: nothing of out/ is kept
                raise
            except IsoldeError as exc:  # e.g. the engine closed under a background action
                raise InstanceFailure(str(exc), code="isolde.isolate.failed") from None
            call.stage_outputs(stage)
            return result

    def run_branches(self, ctx: CallerContext, branches: Sequence[Branch], *, workers: int,
                     timeout: float | None = None, first_success: bool = False) -> Outcome:
        """Several actions at once (``foreach``, ``parallel``); see :func:`run_branches`."""
        return run_branches(self.perform, self.stop_calls, ctx, branches, workers=workers, timeout=timeout,
                            first_success=first_success)

    def stop_calls(self, instance_id: str) -> None:
        """Calls of an instance still under way lose their action ids (the sidecar refuses
        what they still send) and their isolates are told to stop (``DELETE``)."""
        self.files.revoke_instance(instance_id)
        self.isolates.cancel_instance(instance_id)

    def start_async(self, ctx: CallerContext, spec: ActionSpec, data: dict[str, Any], *, timeout: float | None) -> None:
        """``async: true``: start the call in the background and go on.  Its result and
        ``out/`` files are dropped; errors go to the instance log.  The engine waits
        for background actions when it closes."""
        source = with_secrets(self._secrets, spec, data) if spec.secrets else data
        snapshot = json.loads(json.dumps(source))  # the state goes on with its data; the call keeps its own

        def drop(scope: str, key: str, blob: Any, mime: str) -> None:
            pass

        def nothing() -> None:
            pass

        def background() -> None:
            try:
                self.perform(ctx, spec, snapshot, timeout=timeout, stage=drop, flush=nothing, background=True)
            except WorkflowError as exc:
                ctx.log(f"async action '{spec.function_id}' failed: {exc.code}: {exc.msg}")
            except Exception as exc:  # never lose a background failure silently
                ctx.log(f"async action '{spec.function_id}' failed: {type(exc).__name__}: {exc}")

        self.isolates.submit(background)
        ctx.log(f"action '{spec.function_id}' started in the background (async)")


__all__ = ["Functions"]
