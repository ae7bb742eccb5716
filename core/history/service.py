"""``HistoryService``: the history of every instance an engine runs, and cancelling them.

One per engine (made on first use).  It makes each instance's ``Recorder``, writes in the
background what no state's commit carried (outcomes of instances that wrote nothing,
timelines of long-running instances), applies the retention (``[history] keep`` and
``max_age``), notices cancel requests other processes stored for instances running
here, and answers queries, merging what is still in memory with what is stored.
"""

from __future__ import annotations

import atexit
import builtins
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from ..errors import IsoldeError
from .codec import ENDED, assemble, capped, encode_json, summary, timeline_owner
from .recorder import Recorder

if TYPE_CHECKING:
    import logging

    from ..instance import Result
    from ..store import Put, VariableStore
    from .protocol import InstanceHistory
    from .settings import HistorySettings

__all__ = ["ENDING_BATCH", "HistoryService", "NotFound", "RETAIN_BATCH"]

RETAIN_BATCH = 128
"""Finished instances past ``keep`` that wake the background writer to delete them (besides
its rounds every ``flush_interval``).  Deleting a round's worth at a time (thousands at a
high rate) left LMDB with hundreds of free pages that every later commit carried in its
free list: instance commits cost twice as much, for good (the file does not shrink)."""


ENDING_BATCH = 256
"""Ended instances whose history waits to be encoded that the thread ending the last of
them encodes and writes at once, batched (besides the background writer's rounds every
``flush_interval``).  In that thread, not by waking the background writer: two threads
busy at once hand the GIL back and forth, and the instances' thread then waited for
the writer about as long again as the writer worked (docs/performance.md)."""


class NotFound(IsoldeError):
    """No instance of that id in that namespace."""


class HistoryService:
    """Records, timelines, retention and cancel for one engine's instances."""

    def __init__(self, history: InstanceHistory, store: VariableStore, settings: HistorySettings, *,
                 interrupt: Callable[[str, str], None], report: Callable[[BaseException], None] = lambda exc: None,
                 log: logging.Logger | None = None) -> None:
        self.history = history
        self.store = store
        self.settings = settings
        self._interrupt = interrupt  # wakes waits and DELETEs the isolate calls of an instance
        self._report = report
        self._log = log  # (logging is imported only if something is to be logged: start-up time)
        self._lock = threading.Lock()
        self._live: dict[str, Recorder] = {}
        self._queue: list[Put] = []
        self._ending: list[tuple[Recorder, Result, float]] = []  # ended, their history not yet encoded
        self.batch = ENDING_BATCH  # ended instances written together (benchmarks compare sizes)
        self._finished: dict[str, deque[tuple[float, str, int | None]]] = {}  # per namespace: (ended, id, chunks), oldest first
        self._since_scan: dict[str, int] = {}
        self._scanned: set[str] = set()  # namespaces whose stored records were read (the first rescan)
        self._retain: set[str] = set()  # namespaces to apply the retention to
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()  # one background round at a time (the thread, flush())
        self._at_exit: Callable[[], None] | None = None

    # -- instances starting and ending -----------------------------------------------
    def recorder(self, namespace: str, instance_id: str, workflow: str, data: dict[str, Any], *,
                 trigger: str = "run", owns_record: bool = True, resume: bool = False,
                 created: float | None = None, enabled: bool = True) -> Recorder:
        """The recorder of an instance about to run (registered as live until ``ended``).
        A recorder not ``enabled`` keeps nothing: it only lets the instance be cancelled."""
        now = time.time()
        if not enabled:
            off = Recorder(self.history, namespace, instance_id, {}, owns_record=False, cap=0, max_logs=0, enabled=False)
            with self._lock:
                self._live[instance_id] = off
            return off
        text = encode_json(data)
        kept, cut = capped(text, self.settings.max_data_bytes)
        record: dict[str, Any] = {
            "v": 1, "id": instance_id, "workflow": workflow, "status": "running", "state": None, "trigger": trigger,
            "created": created or now, "started": now, "ended": None, "input": _decoded(kept) if cut else data,
            "input_truncated": cut, "output": None, "error": None,
        }
        seq = 0
        if resume:
            got = self.history.chunks(namespace, instance_id)
            seq = got[-1][0] + 1 if got else 0
        rec = Recorder(self.history, namespace, instance_id, record, owns_record=owns_record,
                       cap=self.settings.max_data_bytes, max_logs=self.settings.max_log_lines, seq=seq,
                       first_input=text if resume else None, with_state=self.settings.with_state_commit,
                       data=data, text=text, input_text=kept)
        with self._lock:
            self._live[instance_id] = rec
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(target=self._run, name="isolde-history", daemon=True)
                self._thread.start()
                # a program that exits without closing its engine still writes what waits
                self._at_exit = _at_exit(weakref.ref(self))
                atexit.register(self._at_exit)
        return rec

    def ended(self, rec: Recorder, result: Result) -> None:
        """An instance ended: its last writes go out with the next background round (the
        daemon commits them with its outcome instead: ``rec.leftover``).  Unless its states
        write the history with them (``with_state_commit``), the record and the rest of the
        timeline are encoded later too, with other ended instances': by the thread that ends
        the batch's last (``batch``), by the background writer's round or by a query.  The
        recorder then drops its context, so that a waiting instance keeps little alive (the
        cyclic GC traverses what survives; docs/performance.md)."""
        if rec.enabled and rec.owns_record and not rec.with_state and rec.deferrable(result):
            ended = time.time()
            rec.ctx = rec.inner = rec.outer_sink = None  # (nothing kept alive longer than the history needs)
            with self._lock:
                self._live.pop(rec.instance_id, None)
                self._ending.append((rec, result, ended))
                full = len(self._ending) >= self.batch
            if full and self._io.acquire(blocking=False):  # (else another thread is writing them)
                try:
                    self._write_queued()
                finally:
                    self._io.release()
            return
        puts = rec.end(result) if rec.enabled else []
        with self._lock:
            if rec.owns_record or not rec.enabled:
                self._live.pop(rec.instance_id, None)
            if not rec.enabled:
                return
            if rec.owns_record:
                self._queue.extend(puts)
                self._note_finished(rec.namespace, rec.instance_id, float(rec.record.get("ended") or time.time()), rec.seq)
            else:
                rec.leftover = puts  # shown from here until the daemon wrote them (release)

    def release(self, rec: Recorder) -> None:
        """The daemon wrote a recorder's ``leftover`` with the instance's outcome."""
        with self._lock:
            if self._live.get(rec.instance_id) is rec:
                del self._live[rec.instance_id]

    def _note_finished(self, namespace: str, instance_id: str, ended: float, chunks: int | None = None, *,
                       wake: bool = True) -> None:
        """(``wake``: whether the background writer is to apply the retention early; not
        when the caller applies it next itself.)"""
        done = self._finished.get(namespace)
        since = self._since_scan[namespace] = self._since_scan.get(namespace, 0) + 1
        if done is None:
            done = self._finished[namespace] = deque()
        done.append((ended, instance_id, chunks))
        if wake and len(done) == self.settings.keep + RETAIN_BATCH:
            self._wake.set()  # delete a batch now, not a round's worth (see RETAIN_BATCH)
        elif wake and since == RETAIN_BATCH and namespace not in self._scanned:
            self._wake.set()  # the first scan of the namespace, not a round later
        self._retain.add(namespace)

    # -- cancel ------------------------------------------------------------------------
    def cancel(self, namespace: str, instance_id: str, reason: str = "cancelled by a user") -> str:
        """Cancel an instance: at once when it runs here (``"cancelled"``), else by a request
        its process notices (``"requested"``).  Raises ``NotFound``, or ``IsoldeError`` when
        it already ended."""
        with self._lock:
            rec = self._live.get(instance_id)
        if rec is not None and rec.namespace == namespace:
            self.cancel_live(rec, reason)
            return "cancelled"
        record = self.history.get(namespace, instance_id)
        if record is None:
            raise NotFound(f"no instance '{instance_id[:100]}' in namespace '{namespace}'")
        if record.get("status") in ENDED:
            raise IsoldeError(f"instance {instance_id} already ended ({record.get('status')}): nothing to cancel")
        self.history.request_cancel(namespace, instance_id, reason)
        return "requested"

    def cancel_live(self, rec: Recorder, reason: str) -> None:
        rec.cancel(reason)
        try:
            self._interrupt(rec.instance_id, reason)
        except IsoldeError:
            pass  # the engine is closing anyway

    def live(self, instance_id: str) -> Recorder | None:
        with self._lock:
            return self._live.get(instance_id)

    # -- queries -----------------------------------------------------------------------
    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        """The record, fresher from memory when the instance runs here."""
        self.flush()
        rec = self.live(instance_id)
        if rec is not None and rec.namespace == namespace and rec.owns_record:
            with rec.lock:
                return {**rec.record, "namespace": namespace}
        return self.history.get(namespace, instance_id)

    def show(self, namespace: str, instance_id: str) -> dict[str, Any]:
        """The record with its ``timeline`` (raises ``NotFound``)."""
        record = self.get(namespace, instance_id)
        if record is None:
            raise NotFound(f"no instance '{instance_id[:100]}' in namespace '{namespace}'")
        entries, _ = self._timeline(namespace, instance_id, record)
        shown = {k: v for k, v in record.items() if k not in ("tl", "chunks")}
        return {**shown, "timeline": entries}

    def logs(self, namespace: str, instance_id: str, after: int = 0) -> tuple[list[dict[str, Any]], int, bool]:
        """Log lines from number ``after`` on, the number to ask from next, and whether the instance ended."""
        record = self.get(namespace, instance_id)
        if record is None:
            raise NotFound(f"no instance '{instance_id[:100]}' in namespace '{namespace}'")
        _, lines = self._timeline(namespace, instance_id, record)
        after = max(0, after)
        out = [{"time": x["time"], "state": x["state"], "message": x["message"]} for x in lines[after:]]
        return out, after + len(out), record.get("status") in ENDED

    def _timeline(self, namespace: str, instance_id: str, record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:

        rec = self.live(instance_id)
        if rec is not None and rec.namespace != namespace:
            rec = None
        leftover = {} if rec is None else {int(p.ref.key[1:]): p.data for p in rec.leftover
                                           if p.ref.owner == timeline_owner(instance_id) and p.data is not None}
        unwritten = None if rec is None else rec.unwritten()
        chunks = dict(self.history.chunks(namespace, instance_id))
        chunks.update(leftover)  # written or not yet: the same chunk
        raws: list[bytes | dict[str, Any]] = [chunks[seq] for seq in sorted(chunks)]
        if unwritten is not None:
            raws.append(unwritten)
        return assemble(record, raws)

    def list(self, namespace: str, *, status: str | None = None, workflow: str | None = None,
             offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Summaries of a namespace's instances, newest first, filtered; and how many matched."""
        self.flush()
        rows = {r["id"]: r for r in self.history.elsewhere(namespace) if isinstance(r.get("id"), str)}
        rows.update((r["id"], r) for r in self.history.records(namespace) if isinstance(r.get("id"), str))
        with self._lock:
            live = [r for r in self._live.values() if r.namespace == namespace and r.owns_record and r.enabled]
        for rec in live:
            with rec.lock:
                rows[rec.instance_id] = dict(rec.record)
        picked = [summary(r) for r in rows.values()
                  if (status is None or r.get("status") == status) and (workflow is None or r.get("workflow") == workflow)]
        picked.sort(key=lambda r: (r.get("created") or 0, r.get("id") or ""), reverse=True)
        total = len(picked)
        offset = max(0, offset)
        return (picked[offset:] if limit is None else picked[offset:offset + max(0, limit)]), total

    def history_only(self, namespace: str) -> bool:
        """Whether a namespace without namespace or workflow variables holds instance history
        (then it holds nothing else worth listing, but for running instances' variables)."""
        self.flush()
        return bool(self.history.records(namespace))

    def stored_entries(self, namespace: str) -> int:
        """How many store entries the history of a namespace holds (records, timeline
        chunks, cancel requests)."""
        self.flush()
        records = self.history.records(namespace)
        chunks = sum(len(self.history.chunks(namespace, str(r["id"]))) for r in records if isinstance(r.get("id"), str))
        return len(records) + chunks + len(self.history.cancel_requests(namespace))

    # -- the background writer ---------------------------------------------------------
    def flush(self) -> None:
        """Write now the outcomes waiting for the background writer, and apply the retention
        (the queries of this process call it, so they see every instance that ended here)."""
        with self._io:  # also waits for a background round under way (it may hold the queue)
            self._write_queued()

    def _write_queued(self) -> None:
        with self._lock:
            ending, self._ending = self._ending, []
        for rec, result, ended in ending:
            puts = rec.end(result, ended)
            with self._lock:
                self._queue.extend(puts)
                self._note_finished(rec.namespace, rec.instance_id, ended, rec.seq, wake=False)  # applied below
        with self._lock:
            queued, self._queue = self._queue, []
            retain, self._retain = self._retain, set()
        doomed = [(ns, d) for ns in retain if (d := self._doomed(ns))]
        combined = getattr(self.history, "write_and_remove", None)  # (StoreHistory: one commit for both)
        if queued and doomed and combined is not None:
            ns, d = doomed.pop()
            combined(queued, ns, [x[1] for x in d], [x[2] for x in d])
        elif queued:
            self.store.write(queued)
        for ns, d in doomed:
            self.history.remove(ns, [x[1] for x in d], [x[2] for x in d])
        self._expire()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.settings.flush_interval)
            self._wake.clear()
            if self._stop:
                return
            try:
                self._round(poll=True)
            except Exception as exc:  # the store closed under us, or a bug: keep going
                if self._stop:
                    return
                self._report(exc)
                from .store import _logger

                _logger(self._log).warning("instance history: %s", exc)

    def _round(self, *, poll: bool) -> None:
        with self._io:
            with self._lock:
                live = [r for r in self._live.values() if r.enabled]
            self._write_queued()
            now = time.monotonic()
            for rec in live:
                if now - rec.since < self.settings.flush_interval and poll:
                    continue
                with rec.lock:
                    puts = rec.pending_writes()
                    if puts:
                        self.store.write(puts)
            if poll and live:
                self._poll_cancels(live)

    def _poll_cancels(self, live: builtins.list[Recorder]) -> None:
        by_ns: dict[str, dict[str, Recorder]] = {}
        for rec in live:
            by_ns.setdefault(rec.namespace, {})[rec.instance_id] = rec
        for ns, recs in by_ns.items():
            for iid, reason in self.history.cancel_requests(ns).items():
                found = recs.get(iid)
                if found is not None and found.cancelled is None:
                    self.cancel_live(found, reason)

    def _doomed(self, ns: str) -> builtins.list[tuple[float, str, int | None]]:
        """The finished instances of a namespace past the retention, taken off its list
        (the caller removes them)."""
        keep = self.settings.keep
        with self._lock:
            done = self._finished.get(ns)
            # a rescan catches what other processes added (amortised: one per 4 x keep outcomes)
            rescan = ns not in self._scanned or self._since_scan.get(ns, 0) >= 4 * max(keep, 250)
        if rescan:
            with self._lock:
                known = {} if done is None else {d[1]: d for d in done}
                self._scanned.add(ns)
            stored = self.history.finished(ns, known)
            with self._lock:
                if done is not None:
                    # noted here but not in the listing: its record is written with this round's
                    # retention (after the listing), or ended while the store was read; either
                    # way it would stay until the next rescan if dropped from the list
                    listed = {d[1] for d in stored}
                    stored.extend(d for d in done if d[1] not in listed)
                self._finished[ns] = done = deque(sorted(stored))
                self._since_scan[ns] = 0
        assert done is not None
        doomed = []
        with self._lock:
            while len(done) > keep:
                doomed.append(done.popleft())
        return doomed

    def _expire(self) -> None:
        age = self.settings.max_age
        if age is None:
            return
        cutoff = time.time() - age
        for ns, done in list(self._finished.items()):
            doomed = []
            with self._lock:
                while done and done[0][0] < cutoff:
                    doomed.append(done.popleft())
            if doomed:
                self.history.remove(ns, [d[1] for d in doomed], [d[2] for d in doomed])

    def close(self) -> None:
        """Write what is left and stop the background writer (before the store closes)."""
        with self._lock:
            self._stop = True
            thread = self._thread
            at_exit, self._at_exit = self._at_exit, None
        if at_exit is not None:
            atexit.unregister(at_exit)
        self._wake.set()
        if thread is not None:
            thread.join(10)
        try:
            self._round(poll=False)
        except Exception as exc:  # a closed or full store: the history is what was written
            self._report(exc)


def _at_exit(ref: weakref.ReferenceType[HistoryService]) -> Callable[[], None]:
    """What ``atexit`` calls for a service its program did not close: write what waits
    (a weak reference: a closed or collected service is not kept alive for it)."""
    def flush() -> None:
        service = ref()
        if service is not None and not service._stop:
            try:
                service.flush()
            except Exception:  # the store went first: the history is what was written
                pass
    return flush


def _decoded(text: str) -> Any:
    import json

    return json.loads(text)
