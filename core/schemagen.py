"""Documents generated from the schema declarations: a JSON Schema for editors and the
language reference.

Both read the same ``Schema`` the validator uses (built-ins and installed plugins
alike), so an added field or state type shows up in the editor and in the docs
without anyone writing it twice.
"""

from __future__ import annotations

import json
from typing import Any

from .registry import Registry
from .schema import MISSING, Decl, Field, ListOf, Lit, MapOf, Named, Type, type_str

_DURATION_PATTERN = r"^P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"

_BUILTIN_JSON: dict[str, dict[str, Any]] = {
    "any": {},
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "number": {"type": "number"},
    "bool": {"type": "boolean"},
    "object": {"type": "object"},
    "jx": {"description": "A value evaluated against the state data: jq(...) in structured documents, a jq program in raw-jq ones."},
    "name": {"type": ["string", "number"]},
    "stateid": {"type": "string", "description": "The id of a state of this workflow."},
    "funcid": {"type": "string", "description": "The id of a function declared in 'functions'."},
    "varkey": {"type": "string", "description": "A variable key: ^(([a-zA-Z][a-zA-Z0-9_\\-\\.]*[a-zA-Z0-9])|([a-zA-Z]))$, or jq(...)."},
    "scope": {"enum": ["instance", "workflow", "namespace"]},
    "filekey": {"type": "string", "description": "A variable key, jq(...), or for scope file a path of a file of the namespace (/data/e.yaml)."},
    "filescope": {"enum": ["instance", "workflow", "namespace", "file"]},
    "duration": {"type": "string", "pattern": _DURATION_PATTERN, "description": "ISO-8601 duration, e.g. PT30S."},
    "cron": {"type": "string", "description": "Cron expression (minute hour day month weekday)."},
    "mime": {"type": "string", "description": "A MIME type, e.g. application/json."},
    "relpath": {"type": "string", "description": "A relative path that stays inside the action folder."},
    "state": {"$ref": "#/definitions/state"},
    "function": {"$ref": "#/definitions/function"},
}

_BUILTIN_DOC: dict[str, str] = {
    "any": "any value",
    "jx": "value with jq",
    "name": "name",
    "stateid": "state id",
    "funcid": "function id",
    "varkey": "variable key",
    "scope": "`instance` \\| `workflow` \\| `namespace`",
    "filekey": "variable key or file path",
    "filescope": "`instance` \\| `workflow` \\| `namespace` \\| `file`",
    "duration": "ISO-8601 duration",
}


def _type_json(t: Type) -> dict[str, Any]:
    if isinstance(t, Named):
        builtin = _BUILTIN_JSON.get(t.name)
        return dict(builtin) if builtin is not None else {"$ref": f"#/definitions/struct.{t.name}"}
    if isinstance(t, ListOf):
        return {"type": "array", "items": _type_json(t.item)}
    if isinstance(t, MapOf):
        return {"type": "object", "additionalProperties": _type_json(t.item)}
    if isinstance(t, Lit):
        return {"const": t.value}
    lits = [a.value for a in t.alts if isinstance(a, Lit)]
    others = [_type_json(a) for a in t.alts if not isinstance(a, Lit)]
    alts = ([{"enum": lits}] if lits else []) + others
    return alts[0] if len(alts) == 1 else {"anyOf": alts}


def _object_json(decl: Decl, fields: dict[str, Field]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in fields.values():
        prop = _type_json(f.type)
        if f.doc:
            prop["description"] = f.doc
        if f.default is not MISSING:
            prop["default"] = f.default
        props[f.name] = prop
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [f.name for f in fields.values() if f.required]
    if required:
        out["required"] = required
    if decl.doc:
        out["description"] = decl.doc
    return out


def json_schema(registry: Registry) -> dict[str, Any]:
    """A JSON Schema (draft-07, as the YAML language server reads it) for workflow documents."""
    schema = registry.schema
    defs: dict[str, Any] = {}
    for name, decl in sorted(schema.structs.items()):
        if name in ("workflow", "state_base", "function_base"):
            continue
        defs[f"struct.{name}"] = _object_json(decl, decl.fields)
    base = schema.structs["state_base"].fields
    state_types = sorted(schema.states)
    branches = []
    for name in state_types:
        decl = schema.states[name]
        fields = {**base, **decl.fields}
        body = _object_json(decl, fields)
        body["properties"]["type"] = {"const": name}
        defs[f"state.{name}"] = body
        branches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                         "then": {"$ref": f"#/definitions/state.{name}"}})
    defs["state"] = {"type": "object", "required": ["id", "type"], "properties": {"type": {"enum": state_types}}}
    if branches:
        defs["state"]["allOf"] = branches
    fbase = schema.structs["function_base"].fields
    fn_types = sorted(schema.functions)
    fbranches = []
    for name in fn_types:
        decl = schema.functions[name]
        body = _object_json(decl, {**fbase, **decl.fields})
        body["properties"]["type"] = {"const": name}
        defs[f"function.{name}"] = body
        cond: dict[str, Any] = {"properties": {"type": {"const": name}}, "required": ["type"]}
        if name == "isolated":  # a function without a type is an isolated one
            cond = {"not": {"required": ["type"]}}
            fbranches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                              "then": {"$ref": f"#/definitions/function.{name}"}})
        fbranches.append({"if": cond, "then": {"$ref": f"#/definitions/function.{name}"}})
    defs["function"] = {"type": "object", "required": ["id"]}
    if fn_types:
        defs["function"].update(properties={"type": {"enum": fn_types}}, allOf=fbranches)
    top = _object_json(schema.structs["workflow"], schema.structs["workflow"].fields)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://isolde.invalid/workflow.schema.json",
        "title": "isolde workflow",
        **top,
        "definitions": defs,
    }


def _type_doc(t: Type) -> str:
    if isinstance(t, Named):
        if t.name in _BUILTIN_DOC:
            return _BUILTIN_DOC[t.name]
        if t.name in _BUILTIN_JSON:
            return t.name
        return f"[{t.name}](#struct-{t.name.lower()})"
    if isinstance(t, ListOf):
        return f"list of {_type_doc(t.item)}"
    if isinstance(t, MapOf):
        return f"mapping of {_type_doc(t.item)}"
    if isinstance(t, Lit):
        return f"`{json.dumps(t.value)}`"
    return " \\| ".join(_type_doc(a) for a in t.alts)


def _field_table(fields: dict[str, Field]) -> list[str]:
    rows = ["| field | type | required | default | description |", "| --- | --- | --- | --- | --- |"]
    for f in fields.values():
        default = "" if f.default is MISSING else f"`{json.dumps(f.default)}`"
        doc = f.doc.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{f.name}` | {_type_doc(f.type)} | {'yes' if f.required else ''} | {default} | {doc} |")
    return rows


def reference(registry: Registry) -> str:
    """The language reference in Markdown, generated from the declarations."""
    schema = registry.schema
    origin = {}
    for info in registry.plugins:
        for s in info.state_types:
            origin[s] = info.name
    out = [
        "# Language reference",
        "",
        "<!-- Generated by `isolde reference` from the schema declarations; do not edit by hand. -->",
        "",
        "Every state has the common fields below, plus the fields of its type. A field marked",
        "*value with jq* is evaluated against the state data: in structured documents through",
        "`jq(...)` templates, in raw-jq documents as a jq program (see [language.md](language.md)).",
        "",
        "## The workflow document",
        "",
        *_field_table(schema.structs["workflow"].fields),
        "",
        "## Common state fields",
        "",
        *_field_table(schema.structs["state_base"].fields),
        "",
        "## State types",
        "",
    ]
    for name in sorted(schema.states):
        decl = schema.states[name]
        impl = registry.state_types.get(name)
        out += [f"### `{name}`", ""]
        if decl.doc:
            out += [decl.doc, ""]
        if decl.fields:
            out += _field_table(decl.fields) + [""]
        else:
            out += ["No fields of its own.", ""]
        example = getattr(impl, "example", None)
        if example:
            out += ["```yaml", example.strip("\n"), "```", ""]
        out += [f"Provided by plugin `{origin.get(name, '?')}`.", ""]
    if schema.functions:
        out += ["## Function types", ""]
        fbase = schema.structs["function_base"].fields
        for name in sorted(schema.functions):
            decl = schema.functions[name]
            out += [f"### `{name}`", ""]
            if decl.doc:
                out += [decl.doc, ""]
            out += _field_table({**fbase, **decl.fields}) + [""]
    out += ["## Structures", ""]
    for name in sorted(schema.structs):
        if name in ("workflow", "state_base", "function_base"):
            continue
        decl = schema.structs[name]
        out += [f"### struct `{name}`", "", f'<a id="struct-{name.lower()}"></a>', ""]
        if decl.doc:
            out += [decl.doc, ""]
        out += _field_table(decl.fields) + [""]
    return "\n".join(out).rstrip() + "\n"


__all__ = ["json_schema", "reference", "type_str"]
