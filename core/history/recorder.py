"""``Recorder``: the history of one running instance, kept as it runs.

The instance loop calls ``step`` after each state (it is the loop's step hook, wrapping
the daemon's).  A step only notes a tuple.  By default the entries wait for the instance's
end: ``HistoryService.ended`` keeps the ended recorder with others, and ``end`` encodes its
record and timeline when they are written in a batch (by the thread that ends the batch's
last instance, the background writer or a query).  With ``[history] with_state_commit``, the
entries noted since the last write are encoded into one timeline chunk when a state commits
anyway (one or two more writes in that transaction, no extra fsync; the final state's commit
carries the completed record, with a short instance's whole timeline in it).  Either way a
daemon instance's chunk goes with the commit of a state that writes its daemon record, and
the background writer stores the timeline so far of an instance running longer than
``[history] flush_interval``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from .codec import capped, encode_json, encode_record

if TYPE_CHECKING:
    from ..instance import InstanceContext, LogSink, Result, StepHook
    from ..store import Put
    from ..workflow import StateSpec
    from .protocol import InstanceHistory

__all__ = ["Recorder"]

LOG_LINE_MAX = 4096
"""Characters of one log line kept."""
EMBED_MAX = 1024
"""An instance whose whole timeline, written at its end, is at most this long (JSON
characters) keeps it in its record (``tl``): one write and one delete instead of two."""

_encode = encode_json
_time = time.time
_quoted: dict[str, str] = {}
_heads: dict[tuple[str, str], str] = {}


def _q(text: str) -> str:
    """A state id or type as JSON text (cached: they repeat)."""
    got = _quoted.get(text)
    if got is None:
        got = _encode(text)
        if len(_quoted) < 10_000:
            _quoted[text] = got
    return got


_FIELDS = 14
"""Fields of a record as ``HistoryService.recorder`` makes it, with ``chunks`` (and ``tl``)."""

_O = ',"o":'
_BOOL: dict[Any, str] = {True: "true", False: "false"}
_repr_float = float.__repr__
_repr_int = int.__repr__


def _num(value: Any) -> str:
    """A number as JSON text (json writes a finite float as its repr), without the encoder."""
    if value.__class__ is float and -1e300 < value < 1e300:
        return _repr_float(value)
    if value.__class__ is int:
        return _repr_int(value)
    return _encode(value)


def _head(sid: str, typ: str) -> str:
    """An entry's state id and type as JSON members (cached: they repeat)."""
    head = f'"s":{_q(sid)},"t":{_q(typ)}'
    if len(_heads) < 10_000:
        _heads[(sid, typ)] = head
    return head


def _written(puts: Sequence[Put]) -> str:
    """An entry's ``v``: the scope and key of each write, as JSON text."""
    if len(puts) == 1:
        ref = puts[0].ref
        return f"[[{_quoted.get(ref.scope) or _q(ref.scope)},{_quoted.get(ref.key) or _q(ref.key)}]]"
    return "[" + ",".join([f"[{_q(p.ref.scope)},{_q(p.ref.key)}]" for p in puts]) + "]"


Entry = tuple[int, str, str, float, float, "str | None", "Sequence[Put] | None", "dict[str, Any] | None"]
"""(step, state id, type, started, ended, output JSON text or None when unchanged, the writes it
staged (a list the instance no longer changes), error)."""


class Recorder:
    """One instance's record and timeline on their way to the store."""

    __slots__ = (
        "history", "namespace", "instance_id", "record", "owns_record", "cap", "max_logs", "entries", "logs",
        "done_e", "done_l", "seq", "step_no", "t", "lock", "ctx", "cancelled", "final", "inner", "outer_sink",
        "first_input", "record_written", "leftover", "since", "enabled", "with_state", "t0", "out_obj", "out_text",
        "in_text", "t0_text",
    )

    def __init__(self, history: InstanceHistory, namespace: str, instance_id: str, record: dict[str, Any], *,
                 owns_record: bool, cap: int, max_logs: int, seq: int = 0, first_input: str | None = None,
                 enabled: bool = True, with_state: bool = False, data: Any = None, text: str | None = None,
                 input_text: str | None = None) -> None:
        self.enabled = enabled
        self.with_state = with_state  # write with each state's commit (else: the background writer)
        self.history = history
        self.namespace = namespace
        self.instance_id = instance_id
        self.record = record
        self.owns_record = owns_record  # False: the daemon writes the record (its InstanceRecords)
        self.cap = cap
        self.max_logs = max_logs
        self.entries: list[Entry] = []
        self.logs: list[tuple[float, int, str, str]] = []
        self.done_e = self.done_l = 0  # entries / log lines already written
        self.seq = seq  # the next chunk's number
        self.step_no = 0
        self.t = self.t0 = _time()  # when the current state started; entry times count from t0
        self.t0_text: str | None = None  # t0 as JSON text, made once
        self.since = time.monotonic()
        self.lock = threading.Lock()
        self.ctx: InstanceContext | None = None
        self.cancelled: str | None = None
        self.final = False  # the outcome's record is written (or queued)
        self.inner: StepHook | None = None
        self.outer_sink: LogSink | None = None
        self.first_input = first_input  # a resumed instance's data (its first entry's input)
        self.record_written = False
        self.leftover: list[Put] = []  # for a daemon instance: what end() left for its outcome's commit
        # The instance data last seen and its JSON text (the record's output, unless the
        # data changed since), and the record's input as JSON text: encoded once, reused.
        self.out_obj: Any = data
        self.out_text = text
        self.in_text = input_text

    # -- the instance loop's side ------------------------------------------------------
    def begin(self, ctx: InstanceContext, on_step: StepHook | None, sink: LogSink | None) -> tuple[StepHook, LogSink]:
        """Bind to the instance's context; returns the step hook and log sink to use."""
        self.inner = on_step
        self.outer_sink = sink
        with self.lock:
            self.ctx = ctx
            if self.cancelled is not None:
                ctx.cancelled = self.cancelled
        if not self.enabled:
            return on_step, sink  # type: ignore[return-value]  # the loop takes None for either
        return self.step, self.sink

    def sink(self, instance_id: str, state: str, message: str) -> None:
        n = len(self.logs)
        if n < self.max_logs:
            self.logs.append((_time(), self.step_no, state, message[:LOG_LINE_MAX]))
        elif n == self.max_logs:
            self.logs.append((_time(), self.step_no, state, f"(further log lines not kept: [history] max_log_lines = {self.max_logs})"))
        if self.outer_sink is not None:
            self.outer_sink(instance_id, state, message)

    def step(self, ctx: InstanceContext, state: StateSpec, nxt: str | None, data: dict[str, Any],
             pending: Sequence[Put]) -> Sequence[Put]:
        now = _time()
        caught = ctx.caught
        if caught is None:
            text, err = ctx.text, None
        else:
            text, err = _encode(data), {"code": caught.code, "message": caught.msg}
        if text is not None:
            self.out_obj, self.out_text = data, text
        self.entries.append((self.step_no, state.id, state.type, self.t, now, text, pending or None, err))
        self.t = now
        self.step_no += 1
        self.record["state"] = nxt
        extra = () if self.inner is None else self.inner(ctx, state, nxt, data, pending)
        if not extra and (not pending or not self.with_state):
            return extra  # kept for a later commit, the background writer or the end
        with self.lock:
            rec = self.record
            final = self.owns_record and nxt is None and ctx.error_at_end is None and ctx.cancelled is None
            puts = self._chunk() if not final else self._last_chunk()
            if self.owns_record:
                if final:
                    rec["status"], rec["state"], rec["ended"], rec["output"] = "complete", None, now, data
                    self.final = True
                rec["chunks"] = self.seq
                puts.extend(self._record_writes())
                self.record_written = True
        if extra:
            puts[:0] = extra
        return puts

    def deferrable(self, result: Result) -> bool:
        """Whether ``end`` may run later, in another thread: the output is the data whose
        JSON text the instance loop made (or none), so nothing the caller may change after
        the run is encoded late."""
        if result.error is not None or self.cancelled is not None:
            return False  # (rare: written at once, with what the context knows of the error)
        out = result.output
        return out is None or (out is self.out_obj and self.out_text is not None)

    def end(self, result: Result, now: float | None = None) -> list[Put]:
        """The instance ended (at ``now``, by default now): the writes that complete its
        history (the caller commits them)."""
        if now is None:
            now = _time()
        with self.lock:
            ctx = self.ctx
            err = result.error
            if err is not None and ctx is not None and ctx.step > self.step_no:  # its last state has no entry yet
                spec = ctx.workflow.states.get(err.state or "")
                self.entries.append((self.step_no, err.state or "", spec.type if spec is not None else "", self.t, now,
                                     None, None, {"code": err.code, "message": err.message}))
                self.step_no += 1
            elif err is not None and len(self.entries) > self.done_e and self.entries[-1][1] == err.state \
                    and self.entries[-1][7] is None:  # failed at its end (an error state): mark its entry
                self.entries[-1] = (*self.entries[-1][:7], {"code": err.code, "message": err.message})
            rec = self.record
            done = self.final and result.status == "complete" and result.output is rec.get("output")
            puts = self._last_chunk() if self.owns_record and not done else self._chunk()
            if self.owns_record:
                if not done:
                    rec["chunks"] = self.seq
                    rec.update(status=result.status, state=err.state if err is not None else None, ended=now,
                               output=result.output,
                               error=None if err is None else {"code": err.code, "message": err.message, "state": err.state})
                    puts.extend(self._record_writes())
                self.final = True
            if self.cancelled is not None:
                puts.extend(self.history.cancel_done(self.namespace, self.instance_id))
        return puts

    def cancel(self, reason: str) -> None:
        with self.lock:
            self.cancelled = reason
            if self.ctx is not None:
                self.ctx.cancelled = reason

    # -- the background writer's side ---------------------------------------------------
    def pending_writes(self) -> list[Put]:
        """What the background writer stores for a running instance (call with ``lock`` held,
        and keep holding it until written, so no later outcome is overtaken)."""
        if self.final:
            return []
        puts = self._chunk()
        if self.owns_record and (puts or not self.record_written):
            self.record["chunks"] = self.seq
            puts.extend(self._record_writes())
            self.record_written = True
        return puts

    def unwritten(self) -> dict[str, Any]:
        """The entries and log lines noted but not yet written, as a chunk (for live views)."""
        with self.lock:
            e = [json.loads(self._entry(x)) for x in self.entries[self.done_e:]]
            return {"t0": self.t0, "e": e, "l": list(self.logs[self.done_l:])}

    # -- encoding ----------------------------------------------------------------------
    def _record_writes(self) -> list[Put]:
        return self.history.writes(self.namespace, self.instance_id, record=self.record, encoded=self._record_json())

    def _record_json(self) -> bytes:
        """The record as stored (``encode_record``), assembled from text made once: the
        input, and the output when it is the data whose text the instance loop made (no
        dict encoded per commit)."""
        rec = self.record
        tl = rec.get("tl")
        if len(rec) != (_FIELDS if tl is None else _FIELDS + 1) or "chunks" not in rec or self.in_text is None:
            return encode_record(rec)  # not the layout made by HistoryService.recorder
        state, ended, out, err = rec["state"], rec["ended"], rec["output"], rec["error"]
        if out is None:
            out_text = "null"
        elif out is self.out_obj and self.out_text is not None:
            out_text = self.out_text
        else:
            out_text = _encode(out)
        tail = "}" if tl is None else f',"tl":{tl}}}'  # the chunk's JSON object as it is (codec.assemble)
        started = rec["started"]
        same = rec["created"] is started  # (one float object: an instance started when it was created)
        created = _num(rec["created"])
        text = (f'{{"v":{"1" if rec["v"] == 1 else _num(rec["v"])},"id":{_encode(rec["id"])},"workflow":{_q(rec["workflow"])},'
                f'"status":{_q(rec["status"])},"state":{"null" if state is None else _q(state)},'
                f'"trigger":{_q(rec["trigger"])},"created":{created},"started":{created if same else _num(started)},'
                f'"ended":{"null" if ended is None else _num(ended)},"input":{self.in_text},'
                f'"input_truncated":{_BOOL.get(rec["input_truncated"]) or _encode(rec["input_truncated"])},'
                f'"output":{out_text},"error":{"null" if err is None else _encode(err)},"chunks":{rec["chunks"]:d}{tail}')
        return text.encode("utf-8", "backslashreplace")  # a lone surrogate stays a \u escape

    def _last_chunk(self) -> list[Put]:
        """The rest of the timeline, as the record is about to be written for the last time:
        a short instance's whole timeline goes into its record (``tl``) instead of a chunk."""
        body = self._chunk_body()
        if body is None:
            return []
        if self.seq == 0 and len(body) <= EMBED_MAX:
            self.record["tl"] = body
            return []
        return self._chunk_put(body)

    def _chunk(self) -> list[Put]:
        body = self._chunk_body()
        return [] if body is None else self._chunk_put(body)

    def _chunk_body(self) -> str | None:
        """The entries and log lines not yet written, as one chunk's JSON (None: nothing new)."""
        e0, e1, l0, l1 = self.done_e, len(self.entries), self.done_l, len(self.logs)
        if e0 == e1 and l0 == l1:
            return None
        t0, cap, first = self.t0, self.cap, self.first_input
        parts: list[str] = []
        add = parts.append
        for e in self.entries[e0:e1]:
            n, sid, typ, a, b, text, written, err = e
            if err is not None or (n == 0 and first is not None) or (text is not None and len(text) > cap):
                add(self._entry(e))
                continue
            head = _heads.get((sid, typ)) or _head(sid, typ)
            # the common entries, inline (a chain of states makes one each): as _entry writes them
            if written:
                add(f'{{"n":{n},{head},"a":{int((a - t0) * 1e6)},"d":{int((b - a) * 1e6)}'
                    f'{"" if text is None else _O + text},"v":{_written(written)}}}')
            elif text is None:
                add(f'{{"n":{n},{head},"a":{int((a - t0) * 1e6)},"d":{int((b - a) * 1e6)}}}')
            else:
                add(f'{{"n":{n},{head},"a":{int((a - t0) * 1e6)},"d":{int((b - a) * 1e6)},"o":{text}}}')
        entries = ",".join(parts)
        logs = _encode(self.logs[l0:l1]) if l1 > l0 else "[]"
        self.done_e, self.done_l = e1, l1
        return f'{{"t0":{self.t0_text or self._t0_text()},"e":[{entries}],"l":{logs}}}'

    def _t0_text(self) -> str:
        text = self.t0_text = _num(self.t0)
        return text

    def _chunk_put(self, body: str) -> list[Put]:
        seq = self.seq
        self.seq = seq + 1
        return self.history.writes(self.namespace, self.instance_id, chunk=(seq, body.encode("utf-8", "backslashreplace")))  # a lone surrogate stays a \u escape

    def _entry(self, e: Entry) -> str:
        n, sid, typ, a, b, text, written, err = e
        head = _heads.get((sid, typ)) or _head(sid, typ)
        t0 = self.t0
        out = f'{{"n":{n},{head},"a":{int((a - t0) * 1e6)},"d":{int((b - a) * 1e6)}'
        if n == 0 and self.first_input is not None:
            kept, cut = capped(self.first_input, self.cap)
            out += f',"{"it" if cut else "i"}":{kept}'
        if text is not None:
            if len(text) <= self.cap:
                out += f',"o":{text}'
            else:
                out += f',"ot":{capped(text, self.cap)[0]}'
        if written:
            out += ',"v":' + _written(written)
        if err is not None:
            out += ',"e":' + _encode(err)
        return out + "}"
