"""The run queue: instances of served workflows, their threads, records and outcomes.

An instance runs in its own thread (at most ``max_running`` at once, the rest wait in a
FIFO queue of at most ``max_queue``; idle threads are reused), or, when a ``?wait=true``
request starts it and none of its states waits (``StateType.waits``), in that request's
thread (it takes a slot of ``max_running`` all the same).  Where each instance
stands is kept in ``InstanceRecords``: written with a state's own writes (``on_step``),
and before and after every state whose type is not ``resumable``, so a record never
claims less progress than what was committed.  While an instance holds variable locks
(``lock: true``) its record keeps pointing at the state that took them, with that
state's input: a restart re-runs that state, which takes the locks and reads again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

from ..errors import InstanceFailure, IsoldeError
from ..ids import new_instance_id
from ..history import ENDED, capped_input
from ..instance import CANCEL_CODE, ErrorInfo, InstanceContext, Result, manual_start_refused
from ..store import Put, StoreError
from .catalog import Catalog
from .instance_info import InstanceInfo, error_dict
from .layout import workflow_id
from .records import InstanceRecords
from .settings import DaemonError, DaemonSettings

if TYPE_CHECKING:
    from ..engine import Engine
    from ..workflow import StateSpec
    from ..workflow import Workflow

__all__ = ["InstanceInfo", "Runs"]

LOG_LINE_MAX: Final = 4096
"""Characters of one instance log line kept in a record."""
WORKER_IDLE: Final = 30.0
"""Seconds an idle instance-runner thread waits for work before it ends."""

Job = tuple[InstanceInfo, "Workflow", "str | None"]


class _Worker:
    """An idle instance-runner thread, waiting to be handed a job."""

    __slots__ = ("wake", "job")

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.job: Job | None = None


class Runs:
    """Queue, threads and records of the daemon's instances."""

    def __init__(self, engine: Engine, records: InstanceRecords, catalog: Catalog, settings: DaemonSettings,
                 log: logging.Logger, *, end_instance: Callable[[str, str], None],
                 interrupt: Callable[[str, str], None]) -> None:
        self.engine = engine  # runs workflows (run_instance) and checks input
        self.records = records
        self.catalog = catalog
        self.settings = settings
        self.log = log
        self._end_instance = end_instance  # removes an instance's variables
        self._interrupt = interrupt  # wakes an instance that waits or sleeps
        self._lock = threading.RLock()
        self._idle_cond = threading.Condition(self._lock)
        self.instances: dict[str, InstanceInfo] = {}
        self._queue: deque[Job] = deque()
        self.running = 0
        self._idle: list[_Worker] = []
        self._never_waits_of: dict[Workflow, bool] = {}  # workflow -> none of its states waits
        self.stats = {"started": 0, "complete": 0, "failed": 0}
        self.stopping = False
        self.abandon = False

    # -- starting -----------------------------------------------------------------
    def start(self, ns: str, path: str, input: Any = None, *, trigger: str = "api", announce: bool = True,
              here: bool = False) -> InstanceInfo:
        """Queue an instance of a served workflow; raises DaemonError (404, 409, 503, 400).
        With ``here`` (the caller waits for the outcome anyway), an instance whose states
        never wait (``StateType.waits``) runs in the calling thread, when a slot is free,
        and has ended when this returns.

        With ``announce`` its record is durable before this returns, so an id handed out
        survives a crash.  A caller that waits for the outcome passes False and saves that
        commit: should the daemon die first, the caller gets no id, and the instance left
        no trace unless it committed something (which writes its record with it).  Such an
        instance writes no record before a state that may call out either, until it has
        committed something: a crash leaves nothing to resume or to mark."""
        if self.stopping:
            raise DaemonError(503, "isolde.daemon.stopping", "the daemon is stopping")
        wid = workflow_id(path)
        entry = self.catalog.entry(ns, wid)
        wf = entry.workflow
        if wf is None:
            raise DaemonError(409, "isolde.workflow.invalid",
                              f"workflow '{wid}' has no valid version to run: " + "; ".join(entry.errors[:3]))
        refused = None if trigger == "event" else manual_start_refused(wf)
        if refused is not None:  # Direktiv v0.7+: only its event starts it
            raise DaemonError(409, "direktiv.workflow.invoke", refused)
        try:
            data = self.engine.instance_input(input)
        except IsoldeError as exc:
            raise DaemonError(413 if "limit" in str(exc) else 400, "isolde.input", str(exc)) from None
        iid = new_instance_id()
        singular = bool(wf.fields.get("singular"))
        announce = announce or singular  # its record is how daemons sharing the records see it
        info = InstanceInfo(iid, ns, wid, data, trigger, time.time(), state=wf.start.id, recorded=announce,
                            input=capped_input(data, self.engine.history.settings.max_data_bytes))
        with self._lock:
            if singular:
                for other in self.instances.values():
                    if other.namespace == ns and other.workflow == wid and other.status in ("pending", "running"):
                        raise DaemonError(409, "direktiv.mutex",
                                          f"workflow '{wid}' is singular and instance {other.id} is still {other.status}")
            if self.running >= self.settings.max_running and len(self._queue) >= self.settings.max_queue:
                raise DaemonError(503, "isolde.daemon.busy",
                                  f"{self.running} instances running and {len(self._queue)} queued "
                                  "(raise [daemon] max_running / max_queue)")
            self.instances[iid] = info
        try:
            other_rec = self.records.create_alone(info.record()) if singular else None
            if announce and not singular:
                self.records.create(info.record())
        except StoreError as exc:
            with self._lock:
                self.instances.pop(iid, None)
            raise DaemonError(507, getattr(exc, "code", "isolde.store"), str(exc)) from None
        if other_rec is not None:  # running in another daemon (a worker on the same database)
            with self._lock:
                self.instances.pop(iid, None)
            raise DaemonError(409, "direktiv.mutex", f"workflow '{wid}' is singular and instance "
                              f"{other_rec.get('id')} is still {other_rec.get('status')}")
        if here and self._never_waits(wf) and self._run_here(info, wf):
            return info
        self.submit(info, wf, None)
        return info

    def _never_waits(self, wf: Workflow) -> bool:
        """Whether none of ``wf``'s states waits (looked up once per loaded workflow)."""
        known = self._never_waits_of.get(wf)
        if known is None:
            known = not any(spec.impl.waits for spec in wf.states.values())
            if len(self._never_waits_of) >= 1024:  # old versions of reloaded workflows
                self._never_waits_of.clear()
            self._never_waits_of[wf] = known
        return known

    def _run_here(self, info: InstanceInfo, wf: Workflow) -> bool:
        """Run a new instance in this thread if a slot is free (False: none is)."""
        with self._lock:
            if self.running >= self.settings.max_running:
                return False
            self.running += 1
        try:
            self._run_guarded(info, wf, None)
        finally:
            with self._lock:
                job = self._next_or_release()
            if job is not None:  # queued while this one held the slot: it takes the slot over
                self._hand(job)
        return True

    def _run_guarded(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        """``_run_one``; a bug in it is logged and ends the wait for the instance, and the
        thread (a worker's or a request's) and the daemon go on."""
        try:
            self._run_one(info, wf, start)
        except Exception as exc:
            self.log.error("instance runner failed", exc_info=exc, extra={"fields": {"id": info.id}})
            info.done.set()

    def _next_or_release(self) -> Job | None:
        """With ``_lock`` held, by a thread whose instance ended: the next queued job, which
        takes over its slot, or None once the slot is given back."""
        if self._queue and not self.stopping:
            return self._queue.popleft()
        self.running -= 1
        self._idle_cond.notify_all()
        return None

    def adopt(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        """Run an instance taken over from a previous daemon (``start``: its state)."""
        with self._lock:
            self.instances[info.id] = info
        self.submit(info, wf, start)

    def submit(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        """Run now on an idle worker thread or a new one, or queue when ``max_running`` run."""
        job = (info, wf, start)
        with self._lock:
            if self.running >= self.settings.max_running:
                self._queue.append(job)
                return
            self.running += 1
        self._hand(job)

    def _hand(self, job: Job) -> None:
        """Run ``job`` on an idle worker thread or a new one (its slot is counted already)."""
        with self._lock:
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.set()
                return
        threading.Thread(target=self._work, args=(job,), name="isolde-instance", daemon=True).start()

    def _work(self, job: Job) -> None:
        """A worker thread: runs its job, then queued ones, then waits idle for the next
        (``WORKER_IDLE`` seconds) -- reusing threads saves a thread start per instance."""
        me = _Worker()
        current: Job | None = job
        while current is not None:
            self._run_guarded(*current)
            with self._lock:
                current = self._next_or_release()
                if current is not None:
                    continue
                if self.stopping:
                    return
                me.job = None
                me.wake.clear()
                self._idle.append(me)
            me.wake.wait(WORKER_IDLE)
            with self._lock:
                current = me.job
                if current is None:
                    if me in self._idle:
                        self._idle.remove(me)
                    return

    def _run_one(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        ns, iid = info.namespace, info.id
        info.status = "running"
        info.started = time.time()
        first = wf.states[start] if start is not None else wf.start
        info.state = first.id
        keep = self.settings.keep_log_lines
        log = self.log
        records = self.records
        data_in = [info.data]  # the input of the state running now
        ended_with: list[dict[str, Any] | None] = [None]  # the outcome committed with the last state

        def sink(_iid: str, state: str, message: str) -> None:
            info.log.append([time.time(), state, message[:LOG_LINE_MAX]])
            if len(info.log) > keep:
                info.log.popleft()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(message, extra={"fields": {"ns": ns, "workflow": info.workflow, "id": iid, "state": state}})

        def on_step(ctx: InstanceContext, state: StateSpec, nxt: str | None, data: dict[str, Any], pending: Sequence[Put]) -> Sequence[Put]:
            info.ctx = ctx
            if info.cancel is not None and not info.cancel_api:
                raise InstanceFailure(info.cancel, code="isolde.daemon.cancelled")
            if self.abandon:
                ctx.detach()  # keep its instance variables for the next start
                raise InstanceFailure("the daemon is stopping", code="interrupted")
            if not info.ivars and (not state.impl.resumable or any(p.ref.scope == "instance" for p in pending)):
                info.ivars = True  # an action may have written some through the sidecar
            locked = nxt is not None and ctx.holds_locks_after(pending)
            write = bool(pending) or not state.impl.resumable
            if locked and info.lock_at is None:
                # This state took locks: until they are handed on, a restart re-runs it (the
                # record written last points at this state or an earlier one already).
                info.lock_at, info.lock_data, info.lock_safe = state.id, data_in[0], state.impl.resumable
            elif not locked and info.lock_at is not None:
                info.lock_at, info.lock_data, info.lock_safe = None, None, True
                write = True
            data_in[0] = data
            if nxt is None:
                info.state = None
                if not pending:
                    return ()
                # The last state's writes carry the record too (a backend that fences its
                # records refuses them once another worker holds the claim), and when the
                # instance completes here, its outcome: no commit of its own for it.
                if ctx.error_at_end is not None:
                    return records.with_step(info.record())
                outcome = info.ended_record("complete", data, None, time.time())
                ended_with[0] = outcome
                return records.finish_with_step(outcome)
            info.state = nxt
            if not wf.states[nxt].impl.resumable:
                write = True
                if info.lock_at is not None:
                    info.lock_safe = False  # it may call out holding the locks: never run again
            if write and (pending or info.recorded):  # no record yet, nothing to commit: none is needed
                info.data = data
                info.recorded = True
                return records.with_step(info.record())
            return ()

        if log.isEnabledFor(logging.DEBUG):
            log.debug("instance started", extra={"fields": {"ns": ns, "workflow": info.workflow, "id": iid, "trigger": info.trigger}})
        history = self.engine.history
        recorder = info.recorder = history.recorder(ns, iid, info.workflow, info.data, trigger=info.trigger,
                                                    owns_record=False, resume=start is not None, created=info.created,
                                                    enabled=history.settings.enabled)
        try:
            if not first.impl.resumable and start is None and info.recorded:
                records.update(info.record())  # it may call out at once: a crash must not run it twice
            if info.cancel_api and info.cancel is not None:
                result = Result(iid, "cancelled", error=ErrorInfo(CANCEL_CODE, info.cancel, info.state))
                history.ended(recorder, result)
            else:
                if info.cancel is not None:
                    raise InstanceFailure(info.cancel, code="isolde.daemon.cancelled")
                result = self.engine.run_loaded(wf, info.data, namespace=ns, instance_id=iid, sink=sink, start=start,
                                                on_step=on_step, started_at=info.created if start is not None else None,
                                                recorder=recorder, store=records.instance_store(self.engine.store, ns, iid))
        except Exception as exc:  # the store closed under us (stopping), or a bug
            if self.abandon or self.stopping:
                info.done.set()
                return
            result = Result(iid, "failed", error=ErrorInfo("isolde.internal", f"{type(exc).__name__}: {exc}", info.state))
            log.error("instance crashed", exc_info=exc, extra={"fields": {"ns": ns, "id": iid}})
        if self.abandon and result.status == "failed":
            info.done.set()  # stopped by the shutdown: its record stays, the next start resumes it
            return
        outcome = ended_with[0] if result.status == "complete" else None
        # the outcome is shown (API, waiters) only once it is stored: until then the
        # instance reads as it last committed
        final = info.ended_record(result.status, result.output, error_dict(result.error),
                                  time.time() if outcome is None else outcome["ended"])
        with self._lock:
            self.stats[result.status] = self.stats.get(result.status, 0) + 1
            self.stats["started"] += 1
        gone = info.cancel is not None and not info.cancel_api and "namespace" in info.cancel
        try:
            if not gone and outcome is None:
                records.finish(final, also=recorder.leftover)
            elif recorder.leftover:  # the outcome went with the last state: the rest of its timeline
                self.engine.store.write(recorder.leftover)
            if info.resumed:
                self._end_instance(ns, iid)
        except StoreError as exc:
            if getattr(exc, "instance_lost", False):
                log.warning("instance taken over by another worker; nothing more of it is committed here",
                            extra={"fields": {"ns": ns, "id": iid, "error": str(exc)}})
            else:
                log.error("could not store the instance's outcome", extra={"fields": {"ns": ns, "id": iid, "error": str(exc)}})
        with self._lock:
            info.status, info.output, info.error, info.ended = final["status"], final["output"], final["error"], final["ended"]
            info.data, info.ctx, info.lock_at, info.lock_data = {}, None, None, None
        history.release(recorder)
        if result.status == "failed":
            err = result.error
            log.info("instance failed", extra={"fields": {
                "ns": ns, "workflow": info.workflow, "id": iid,
                "code": err.code if err else None, "error": err.message if err else None, "state": err.state if err else None}})
        elif log.isEnabledFor(logging.DEBUG):
            ended = final["ended"] or time.time()
            log.debug("instance complete", extra={"fields": {"ns": ns, "workflow": info.workflow, "id": iid,
                                                            "ms": round((ended - (info.started or ended)) * 1000, 1)}})
        with self._lock:
            self.instances.pop(iid, None)
        info.done.set()

    # -- stopping and cancelling --------------------------------------------------
    def cancel_by_user(self, info: InstanceInfo, reason: str) -> str:
        """A user's cancel (API, CLI): the instance ends ``cancelled`` with
        ``direktiv.cancels.api``; its waits are woken and its isolate calls get their
        ``DELETE``.  Returns its status (409 when it already ended)."""
        with self._lock:
            if info.status in ENDED:
                raise DaemonError(409, "isolde.instance.ended", f"instance {info.id} already ended ({info.status})")
            info.cancel_api = True
            info.cancel = reason
            recorder = info.recorder
        if recorder is not None:
            self.engine.history.cancel_live(recorder, reason)
        return info.status

    def cancel(self, info: InstanceInfo, reason: str) -> None:
        """Stop an instance at its next state, and wake it now if it waits or sleeps."""
        info.cancel = reason
        try:
            self._interrupt(info.id, reason)
        except IsoldeError:
            pass  # the engine is closing anyway

    def cancel_where(self, ns: str, wid: str | None, reason: str) -> None:
        """Cancel the live instances of a namespace (of one workflow of it)."""
        with self._lock:
            doomed = [i for i in self.instances.values() if i.namespace == ns and (wid is None or i.workflow == wid)
                      and i.status in ("pending", "running")]
        for info in doomed:
            self.cancel(info, reason)

    def stop(self, grace: float, drain: float) -> None:
        """No new starts; queued instances stay pending (their records run them at the next
        start); running ones get ``grace`` seconds, then are stopped at their next state."""
        with self._lock:
            self.stopping = True
            queued = list(self._queue)
            self._queue.clear()
            for worker in self._idle:
                worker.wake.set()  # no job: the idle worker ends
            self._idle.clear()
        for info, _, _ in queued:
            info.done.set()
        if self._wait_idle(grace):
            return
        # Stop the rest where they are: their records stay, the next start resumes them
        # (or marks them interrupted), so their instance variables must stay too.
        self.abandon = True
        with self._lock:
            live = [i for i in self.instances.values() if i.status == "running"]
        self.log.warning("instances still running at stop; they resume or fail as interrupted at the next start",
                         extra={"fields": {"running": len(live)}})
        for info in live:
            if info.ctx is not None:
                info.ctx.detach()
            try:
                self._interrupt(info.id, "the daemon is stopping")  # wakes delays and waits
            except IsoldeError:
                pass
        self._wait_idle(drain)

    def _wait_idle(self, timeout: float) -> bool:
        with self._idle_cond:
            return self._idle_cond.wait_for(lambda: self.running == 0, timeout=timeout)

    # -- queries ------------------------------------------------------------------
    def live(self, ns: str, iid: str) -> InstanceInfo | None:
        with self._lock:
            info = self.instances.get(iid)
        return info if info is not None and info.namespace == ns else None

    def live_views(self, ns: str) -> list[dict[str, Any]]:
        with self._lock:
            return [i.view() for i in self.instances.values() if i.namespace == ns]

    def queued(self) -> int:
        with self._lock:
            return len(self._queue)
