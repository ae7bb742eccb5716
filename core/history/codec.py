"""How instance history is laid out in the variable store, and read back.

Everything is stored as instance-scope variables of reserved owners (an instance id
never starts with ``~``, so they can't collide with an instance's own variables, and
no instance of these names is ever registered, so the orphan sweep leaves them):

- the **record** of instance ``ID``: key ``i-ID`` of owner ``~isolde-history``, a JSON
  object: ``v``, ``chunks`` (how many timeline chunks it has), ``tl`` (see below), ``id``, ``workflow``, ``status`` (pending | running | complete |
  failed | cancelled), ``state``, ``trigger``, ``created``, ``started``, ``ended``,
  ``input`` (capped), ``output``, ``error`` (``code``, ``message``, ``state``), and
  what the daemon keeps to resume it (``data``, ``ivars``, ``log``, ``lock``, ``resumed``);
- its **timeline**, in chunks: keys ``c000000``, ``c000001``, ... of owner
  ``~isolde-timeline/ID``, each a JSON object ``{"e": [entries], "l": [log lines]}``
  written in the commit of a state that writes variables (``with_state_commit``), else by
  the background writer; a short instance's whole timeline is kept in its record instead
  (``tl``, one chunk's object; older records have its JSON text, a string);
  a chunk also has ``t0`` (Unix time), and an entry is ``{"n": step, "s": state,
  "t": type, "a": started (microseconds after t0), "d": how long (microseconds),
  "o": output, "i": input (only where it is not the previous output), "v": [[scope, key]],
  "e": error}``, ``"ot"``/``"it"`` instead of ``"o"``/``"i"`` when cut (the first bytes
  as text); a log line is ``[time, step, state, message]``;
- a **cancel request** for ``ID`` from another process: key ``c-ID`` of owner
  ``~isolde-cancel`` (the reason as JSON text).
"""

from __future__ import annotations

import json
from typing import Any, Final, Iterable

from ..jsontext import compact

__all__ = [
    "CANCEL_CODE", "CANCEL_OWNER", "ENDED", "RECORD_OWNER", "RECORD_PREFIX", "assemble", "cancel_key", "capped",
    "capped_input", "encode_json",
    "chunk_key", "decode_record", "encode_record", "summary", "timeline_owner",
]

RECORD_OWNER: Final = "~isolde-history"
RECORD_PREFIX: Final = "i-"
TIMELINE_PREFIX: Final = "~isolde-timeline/"
CANCEL_OWNER: Final = "~isolde-cancel"
CANCEL_CODE: Final = "direktiv.cancels.api"
"""The error code of an instance cancelled by a user (as Direktiv's)."""
ENDED: Final = frozenset(("complete", "failed", "cancelled"))
SUMMARY_KEYS: Final = ("id", "workflow", "status", "trigger", "created", "started", "ended", "state")

def _unjson(value: object) -> str:
    """A value no JSON holds (only Python callers can pass one), as history shows it."""
    return f"<{type(value).__name__}: not JSON>"


_plain = compact()
_lenient = compact(_unjson)


def encode_json(value: Any) -> str:
    """Compact JSON text; a value JSON cannot hold (from a Python caller) is named, not refused."""
    try:
        return _plain(value)
    except (TypeError, ValueError):
        return _lenient(value)


_encode = encode_json


def encode_record(record: dict[str, Any]) -> bytes:
    return _encode(record).encode("utf-8", "backslashreplace")  # a lone surrogate stays a \u escape


def decode_record(data: bytes, namespace: str) -> dict[str, Any]:
    rec: dict[str, Any] = json.loads(data)
    rec["namespace"] = namespace
    return rec


def timeline_owner(instance_id: str) -> str:
    return TIMELINE_PREFIX + instance_id


def chunk_key(seq: int) -> str:
    return f"c{seq:06d}"


def cancel_key(instance_id: str) -> str:
    return "c-" + instance_id


def capped(text: str, cap: int) -> tuple[str, bool]:
    """JSON text kept whole when it fits ``cap`` bytes (as characters: cheap and close),
    else its first ``cap`` characters as a JSON string, marked cut."""
    if len(text) <= cap:
        return text, False
    return _encode(text[:cap]), True


def capped_input(data: Any, cap: int) -> Any:
    """An instance's input as its record keeps it: whole, or the first ``cap`` characters
    of its JSON text (a string) when longer."""
    text = _encode(data)
    return data if len(text) <= cap else text[:cap]


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What a listing shows of one record."""
    out = {k: record.get(k) for k in SUMMARY_KEYS}
    err = record.get("error")
    out["error_code"] = err.get("code") if isinstance(err, dict) else None
    return out


def assemble(record: dict[str, Any] | None,
             chunks: Iterable[bytes | dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The timeline entries and log lines of an instance from its stored chunks (in key
    order): each entry with ``input`` (the previous state's output unless it was given),
    ``output``, ``variables``, ``error`` and the log lines of that step."""
    entries: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    embedded = (record or {}).get("tl")
    if isinstance(embedded, dict):  # a short instance's whole timeline (one chunk), kept in its record
        chunks = [embedded, *chunks]
    elif isinstance(embedded, str):  # (as its JSON text: a record written before 2026-12, or one in memory)
        chunks = [embedded.encode(), *chunks]
    by_step: dict[int, dict[str, Any]] = {}
    prev: Any = (record or {}).get("input")
    prev_cut = bool((record or {}).get("input_truncated"))
    for raw in chunks:
        try:
            chunk = raw if isinstance(raw, dict) else json.loads(raw)
        except ValueError:
            continue  # a chunk is never half written; a foreign value is skipped
        t0 = chunk.get("t0")
        for e in chunk.get("e", ()):
            cut: list[str] = []
            started = ended = None
            if isinstance(t0, (int, float)) and isinstance(e.get("a"), int) and isinstance(e.get("d"), int):
                # not rounded: a rounded start could precede its instance's, and an end taken from a
                # rounded start could follow the next state's start by a microsecond
                started = t0 + e["a"] / 1e6
                ended = t0 + (e["a"] + e["d"]) / 1e6
            if "it" in e:
                inp, in_cut = e["it"], True
            elif "i" in e:
                inp, in_cut = e["i"], False
            else:
                inp, in_cut = prev, prev_cut
            if in_cut:
                cut.append("input")
            if "ot" in e:
                out, out_cut = e["ot"], True
            elif "o" in e:
                out, out_cut = e["o"], False
            elif e.get("e") is not None:
                out, out_cut = None, False
            else:
                out, out_cut = inp, in_cut  # the state passed its data on unchanged
            if out_cut:
                cut.append("output")
            entry = {
                "step": e.get("n"), "state": e.get("s"), "type": e.get("t"), "started": started, "ended": ended,
                "input": inp, "output": out, "error": e.get("e"),
                "variables": [{"scope": s, "key": k} for s, k in e.get("v") or ()], "logs": [], "truncated": cut,
            }
            entries.append(entry)
            by_step[int(e.get("n") or 0)] = entry
            prev, prev_cut = out, out_cut
        for t, step, state, message in chunk.get("l", ()):
            logs.append({"time": t, "state": state, "message": message, "step": step})
    for line in logs:
        owner = by_step.get(line["step"])
        if owner is not None:
            owner["logs"].append({"time": line["time"], "message": line["message"]})
    return entries, logs
