"""Validation: a YAML ``Document`` checked against the declared schema becomes a ``Workflow``.

Every problem is collected (not just the first) and located at its YAML node,
with did-you-mean suggestions for misspelled fields and types.  ``jx`` fields are
compiled here, so a workflow that validates never meets a jq syntax error at run time.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .store import SCOPES, StoreError, check_key
from .durations import parse_duration
from .errors import ValidationError
from .expr import Literal, compile_catch, compile_expr, find_js
from .jqexpr import JqError, JqRuntime
from .loader import Document, Path
from .schema import MISSING, Decl, Field, ListOf, Lit, MapOf, Named, Schema, Type, Union, type_str
from .report import Report
from .workflow import StateSpec, StateType, Workflow

INVALID: Any = object()

# Fields every state has; the engine implements them, so no plugin repeats them.
STATE_BASE = """
struct catch "Where to go when an error whose code matches `error` (a glob, or a regular expression) is raised." {
    error!: string        "Matches an error code as a glob (`direktiv.jq.*`, `*`) or, as in Direktiv, as a regular expression found anywhere in it."
    transition: stateid   "The state to go to; without it the instance ends with the error at .error."
}
struct state_base {
    id!: name             "Unique id of the state."
    type!: name           "The state type."
    transform: jx         "Applied to the state data after the state's own work; must yield one object."
    transition: stateid   "The next state; without it the instance ends here."
    log: jx               "Written to the instance log when the state starts."
    catch: [catch]        "Error handlers, tried in order."
    timeout: duration     "ISO-8601 duration the state may take."
    metadata: any         "Free-form data; ignored by the engine."
}
struct function_base {
    id!: name             "Unique id of the function, used by actions."
    type: name            "The function type (without one: isolated)."
}
struct workflow "A workflow document." {
    direktiv_api: "workflow/v1"  "Marks the 2023+ document format."
    id: name              "The workflow's id; defaults to the file's stem."
    description: string   "Free text."
    url: string           "Free text."
    version: string       "Free text."
    functions: [function] "Functions (isolates, subflows) that action states call."
    states!: [state]      "The states; the first one starts unless `start.state` says otherwise."
    start: start          "How instances start."
    timeouts: timeouts    "Workflow-wide time limits."
    singular: bool        "At most one instance at a time."
}
struct start {
    type: "default" | "scheduled" | "event" | "eventsXor" | "eventsAnd" = "default"
    state: stateid        "The first state."
    cron: cron            "Schedule, for type scheduled."
    event: any            "Event filter, for type event."
    events: [any]         "Event filters, for eventsXor / eventsAnd."
    lifespan: duration
    correlate: [string]
}
struct timeouts {
    interrupt: duration
    kill: duration
}
"""

_TRANSFORMS = frozenset({"transform", "defaultTransform"})
# The only fields whose jq Direktiv compiled at load (raw-jq era, ERAS §7); a raw program
# elsewhere that does not compile fails when it runs (direktiv.jq.badCommand, catchable).
_CHECKED_AT_LOAD = _TRANSFORMS | {"condition", "log", "value"}


class Validator:
    BUILTIN_TYPES = (
        "any", "string", "int", "number", "bool", "object", "jx", "name", "stateid", "funcid",
        "varkey", "scope", "duration", "cron", "mime", "relpath", "state", "function",
        "filekey", "filescope",
    )

    def __init__(self, doc: Document, schema: Schema, state_types: dict[str, StateType], jq: JqRuntime, raw: bool):
        self.doc = doc
        self.schema = schema
        self.state_types = state_types
        self.jq = jq
        self.raw = raw
        value = doc.value if isinstance(doc.value, dict) else {}
        self.modern = not raw and ("direktiv_api" in value or "id" not in value)
        """A Direktiv 0.6.1+ document (no top-level id): every string is trimmed."""
        self.report = Report(doc, jq=jq, raw=raw)
        self.state_refs: list[tuple[Path, str]] = []
        self.func_refs: list[tuple[Path, str]] = []
        self.builtins: dict[str, Callable[[Any, Path], Any]] = {
            "any": self._any,
            "string": self._string,
            "int": self._int,
            "number": self._number,
            "bool": self._bool,
            "object": self._object,
            "jx": self._jx,
            "name": self._name,
            "stateid": self._stateid,
            "funcid": self._funcid,
            "varkey": self._varkey,
            "scope": self._scope,
            "filekey": self._filekey,
            "filescope": self._filescope,
            "duration": self._duration,
            "cron": self._cron,
            "mime": self._mime,
            "relpath": self._relpath,
            "state": self._state,
            "function": self._function,
        }

    # -- generic machinery -------------------------------------------------
    def error(self, path: Path, message: str, **kw: Any) -> Any:
        self.report.error(path, message, **kw)
        return INVALID

    def check(self, value: Any, t: Type, path: Path) -> Any:
        if isinstance(t, Named):
            fn = self.builtins.get(t.name)
            if fn is not None:
                return fn(value, path)
            return self.struct(value, self.schema.structs[t.name], path)
        if isinstance(t, ListOf):
            if not isinstance(value, list):
                return self.error(path, f"expected a list of {type_str(t.item)}, got {_kind(value)}")
            return [self.check(v, t.item, path + (i,)) for i, v in enumerate(value)]
        if isinstance(t, MapOf):
            if not isinstance(value, dict):
                return self.error(path, f"expected a mapping of {type_str(t.item)}, got {_kind(value)}")
            return {k: self.check(v, t.item, path + (k,)) for k, v in value.items()}
        if isinstance(t, Lit):
            if value != t.value:
                return self.error(path, f"expected {type_str(t)}, got {_show(value)}")
            return value
        return self.union(value, t, path)

    def union(self, value: Any, t: Union, path: Path) -> Any:
        lits = [a.value for a in t.alts if isinstance(a, Lit)]
        if value in lits:
            return value
        others = [a for a in t.alts if not isinstance(a, Lit)]
        for alt in others:
            saved = self.report.diagnostics
            self.report.diagnostics = []
            out = self.check(value, alt, path)
            ok = not self.report.diagnostics
            self.report.diagnostics = saved
            if ok:
                return out
        if not others and isinstance(value, str):
            hint = _did_you_mean(value, [str(x) for x in lits])
            return self.error(path, f"{_show(value)} is not one of {', '.join(_show(x) for x in lits)}{hint}")
        if len(others) == 1 and not lits:
            return self.check(value, others[0], path)
        return self.error(path, f"expected {type_str(t)}, got {_show(value)}")

    def struct(self, value: Any, decl: Decl, path: Path, fields: dict[str, Field] | None = None) -> Any:
        if not isinstance(value, dict):
            return self.error(path, f"expected a mapping ({decl.name}), got {_kind(value)}")
        fields = fields if fields is not None else decl.fields
        out: dict[str, Any] = {}
        bad = False
        for key, v in value.items():
            f = fields.get(key)
            if f is None:
                hint = _did_you_mean(key, list(fields))
                self.error(path + (key,), f"unknown field '{key}' in {_what(decl)}{hint}", key=True)
                bad = True
                continue
            out[key] = self.check(v, f.type, path + (key,))
        for f in fields.values():
            if f.name not in value:
                if f.required:
                    self.error(path, f"missing required field '{f.name}' in {_what(decl)}")
                    bad = True
                elif f.default is not MISSING:
                    out[f.name] = f.default
        return INVALID if bad else out

    # -- builtin types -----------------------------------------------------
    def _any(self, value: Any, path: Path) -> Any:
        return value

    def _string(self, value: Any, path: Path) -> Any:
        if isinstance(value, str):
            return value
        return self.error(path, f"expected a string, got {_show(value)}")

    def _int(self, value: Any, path: Path) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return self.error(path, f"expected a whole number, got {_show(value)}")

    def _number(self, value: Any, path: Path) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        return self.error(path, f"expected a number, got {_show(value)}")

    def _bool(self, value: Any, path: Path) -> Any:
        if isinstance(value, bool):
            return value
        return self.error(path, f"expected true or false, got {_show(value)}")

    def _object(self, value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return value
        return self.error(path, f"expected a mapping, got {_kind(value)}")

    def _jx(self, value: Any, path: Path) -> Any:
        if not self.raw:
            js = find_js(value, path)
            if js is not None:
                return self.error(
                    js[0],
                    "js(...) (JavaScript expressions) is not supported by isolde; rewrite it with jq(...)",
                    offset=js[1],
                )
        failed = False

        def on_error(p: Path, exc: JqError, offset: int | None) -> None:
            nonlocal failed
            failed = True
            self.error(p, f"invalid jq: {exc.msg}", offset=offset)

        field = path[-1] if path else None
        if field in _TRANSFORMS and not self.raw and isinstance(value, str) and value.strip() in ("", "."):
            value, raw = ".", True  # Direktiv: an empty transform or "." changes nothing
        else:
            raw = self.raw
        deferred = self.raw and field not in _CHECKED_AT_LOAD
        expr = compile_expr(value, raw=raw, jq=self.jq, path=path, on_error=on_error, deferred=deferred,
                            modern=self.modern)
        return INVALID if failed else expr

    def _name(self, value: Any, path: Path) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            return self.error(path, f"expected a non-empty name, got {_show(value)}")
        if "\x00" in value or len(value.encode()) > 255:
            return self.error(path, "names must be at most 255 bytes with no NUL character")
        return value

    def _stateid(self, value: Any, path: Path) -> Any:
        value = self._name(value, path)
        if value is not INVALID:
            self.state_refs.append((path, value))
        return value

    def _funcid(self, value: Any, path: Path) -> Any:
        value = self._name(value, path)
        if value is not INVALID:
            self.func_refs.append((path, value))
        return value

    def _varkey(self, value: Any, path: Path) -> Any:
        if isinstance(value, str) and not self.raw and "jq(" in value:
            return self._jx(value, path)  # a key computed at run time (checked then)
        if not isinstance(value, str):
            return self.error(path, f"expected a variable key, got {_show(value)}")
        try:
            check_key(value)
        except StoreError as exc:
            return self.error(path, str(exc))
        return value

    def _scope(self, value: Any, path: Path) -> Any:
        if value in SCOPES:
            return value
        hint = _did_you_mean(str(value), list(SCOPES))
        return self.error(path, f"invalid scope {_show(value)}: use one of {', '.join(SCOPES)}{hint}")

    def _filekey(self, value: Any, path: Path) -> Any:
        """A variable key, or a path of a file of the namespace (a key with a ``/``,
        for ``scope: file``; the state's ``check`` pairs it with the scope)."""
        if isinstance(value, str) and "/" in value and not (not self.raw and "jq(" in value):
            parts = value.split("/")
            if "\x00" in value or ".." in parts or not value.strip("/"):
                return self.error(path, f"invalid file path {_show(value)}: a path inside the namespace, e.g. /data/e.yaml (no '..')")
            return value
        return self._varkey(value, path)

    def _filescope(self, value: Any, path: Path) -> Any:
        """A scope, or (getter only) ``file`` (a file of the namespace) or ``system``
        (Direktiv 0.6.1+: the keys instance, uuid, epoch)."""
        if value in ("file", "system"):
            return value
        if value not in SCOPES and isinstance(value, str) and _did_you_mean(value, ["file", "system"]):
            hint = _did_you_mean(value, ["file", "system"])
            return self.error(path, f"invalid scope {_show(value)}: use one of {', '.join(SCOPES)}, file, system{hint}")
        return self._scope(value, path)

    def _duration(self, value: Any, path: Path) -> Any:
        if isinstance(value, str):
            seconds = parse_duration(value)
            if seconds is not None:
                return seconds
        return self.error(path, f"invalid ISO-8601 duration {_show(value)} (e.g. PT30S, PT5M, P1D)")

    def _cron(self, value: Any, path: Path) -> Any:
        if not isinstance(value, str):
            return self.error(path, f"expected a cron expression, got {_show(value)}")
        from croniter import croniter

        if not croniter.is_valid(value):
            return self.error(path, f"invalid cron expression {_show(value)} (five fields: minute hour day month weekday)")
        return value

    def _mime(self, value: Any, path: Path) -> Any:
        if isinstance(value, str) and re.fullmatch(r"[\w.+-]+/[\w.+-]+(\s*;.*)?", value):
            return value
        return self.error(path, f"invalid MIME type {_show(value)} (e.g. application/json, text/plain)")

    def _relpath(self, value: Any, path: Path) -> Any:
        if not isinstance(value, str) or not value:
            return self.error(path, f"expected a relative path, got {_show(value)}")
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts or "\x00" in value or any(p in ("",) for p in parts[:-1]):
            return self.error(path, f"unsafe path {_show(value)}: it must stay inside the action folder (no '..', no leading '/')")
        return value

    def _dispatch(self, value: Any, path: Path, kind: str) -> Any:
        """Validate a ``state`` or ``function`` against the declaration its ``type`` names,
        merged with the fields every one of that kind has; (type name, fields) or INVALID."""
        table = self.schema.states if kind == "state" else self.schema.functions
        base = self.schema.structs[f"{kind}_base"].fields
        if not isinstance(value, dict):
            return self.error(path, f"expected a {kind} (a mapping), got {_kind(value)}")
        tname = value.get("type")
        if tname is None and kind == "function":
            tname = "isolated"  # Direktiv v0.1-v0.3 functions carry no type: an image run per call
        if not isinstance(tname, str):
            return self.error(path, f"missing required field 'type' in {kind}")
        decl = table.get(tname)
        if decl is None:
            hint = _did_you_mean(tname, list(table))
            known = ", ".join(sorted(n for n in table if n)) or "none installed"
            return self.error(path + ("type",), f"unknown {kind} type '{tname}'{hint}; available: {known} (see `isolde plugins`)")
        fields = self.struct(value, decl, path, {**base, **decl.fields})
        return INVALID if fields is INVALID else (tname, fields)

    def _state(self, value: Any, path: Path) -> Any:
        got = self._dispatch(value, path, "state")
        if got is INVALID:
            return INVALID
        tname, fields = got
        spec = StateSpec(
            id=fields.pop("id"),
            type=tname,
            impl=self.state_types[tname],
            fields=fields,
            path=path,
            transform=fields.pop("transform", None),
            transition=fields.pop("transition", None),
            log=fields.pop("log", None),
            catch=tuple((c["error"], c.get("transition")) for c in fields.pop("catch", ()) if c is not INVALID),
        )
        for pattern, _ in spec.catch:
            compile_catch(pattern)
        fields.pop("type", None)
        if isinstance(spec.transform, Literal) and not isinstance(spec.transform.value, dict):
            self.error(path + ("transform",), f"transform must produce an object, got {_show(spec.transform.value)}"
                       + (" (in this document jq programs are written as jq(...))" if not self.raw else ""))
        return spec

    def _function(self, value: Any, path: Path) -> Any:
        got = self._dispatch(value, path, "function")
        if got is INVALID:
            return INVALID
        tname, fields = got
        fields["type"] = tname
        return fields


def build_workflow(
    doc: Document,
    *,
    schema: Schema,
    state_types: dict[str, StateType],
    jq: JqRuntime,
    default_id: str,
) -> Workflow:
    """Validate ``doc`` and build its ``Workflow``; raise ``ValidationError`` listing every problem."""
    value = doc.value
    report_only = Report(doc)
    if not isinstance(value, dict):
        report_only.error((), f"a workflow must be a YAML mapping with a 'states' list, got {_kind(value)}")
        raise ValidationError(report_only.diagnostics)
    raw = not (doc.has_templates or "direktiv_api" in value or "id" not in value)
    v = Validator(doc, schema, state_types, jq, raw)
    top = v.struct(value, schema.structs["workflow"], ())
    states: dict[str, StateSpec] = {}
    specs = top.get("states") if isinstance(top, dict) else (
        v.check(value.get("states"), ListOf(Named("state")), ("states",)) if "states" in value else []
    )
    if isinstance(specs, list):
        if not specs and "states" in value:
            v.error(("states",), "a workflow needs at least one state")
        for spec in specs:
            if isinstance(spec, StateSpec) and spec.id not in states:
                states[spec.id] = spec
    seen: set[str] = set()  # from the raw list: a state that failed validation still has an id
    raw_states = value.get("states")
    for i, raw_state in enumerate(raw_states if isinstance(raw_states, list) else ()):
        sid = raw_state.get("id") if isinstance(raw_state, dict) else None
        if isinstance(sid, (str, int)) and not isinstance(sid, bool):
            if str(sid) in seen:
                v.error(("states", i, "id"), f"duplicate state id '{sid}' (ids must be unique)")
            seen.add(str(sid))
    functions: dict[str, dict[str, Any]] = {}
    fn_list = top.get("functions") if isinstance(top, dict) else None
    for i, fn in enumerate(fn_list or []):
        if not isinstance(fn, dict):
            continue
        if fn["id"] in functions:
            v.error(("functions", i, "id"), f"duplicate function id '{fn['id']}'")
        functions[fn["id"]] = fn
    all_ids = [s.get("id") for s in value.get("states") or [] if isinstance(s, dict)]
    for path, ref in v.state_refs:
        if ref not in all_ids:
            hint = _did_you_mean(ref, [str(i) for i in all_ids])
            if path[-2:] == ("start", "state"):
                v.error(path, f"start state '{ref}' does not exist{hint}")
            else:
                v.error(path, f"transition to unknown state '{ref}'{hint}")
    fn_ids = [f.get("id") for f in value.get("functions") or [] if isinstance(f, dict)]
    for path, ref in v.func_refs:
        if ref not in fn_ids:
            hint = _did_you_mean(ref, [str(i) for i in fn_ids])
            declared = ", ".join(str(i) for i in fn_ids) or "none"
            v.error(path, f"function '{ref}' is not declared in 'functions' (declared: {declared}){hint}")
    wf_fields = {k: val for k, val in (top.items() if isinstance(top, dict) else ()) if k not in ("states", "functions")}
    wid = wf_fields.get("id") or default_id
    wf = Workflow(
        id=wid,
        document=doc,
        raw=raw,
        fields=wf_fields,
        states=states,
        functions=functions,
    )
    if not v.report.diagnostics:
        for spec in states.values():
            spec.impl.check(spec, wf, v.report)
    if v.report.diagnostics:
        raise ValidationError(sorted(v.report.diagnostics, key=lambda d: (d.line, d.col)))
    start = wf_fields.get("start") or {}
    wf.start = states[start.get("state") or next(iter(states))]
    return wf


def _did_you_mean(word: str, choices: list[str]) -> str:
    from difflib import get_close_matches  # only for a hint on an error

    close = get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _show(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _what(decl: Decl) -> str:
    if decl.kind == "state":
        return f"state type '{decl.name}'"
    if decl.kind == "function":
        return f"function type '{decl.name}'" if decl.name else "function"
    return decl.name


__all__ = ["STATE_BASE", "Report", "Validator", "build_workflow", "parse_duration"]
