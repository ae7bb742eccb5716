"""The ``validate`` state: check the state data (or part of it) against a JSON Schema.

Decisions (Direktiv used gojsonschema and was silent on drafts and formats):

* The schema is JSON Schema **draft 2020-12** unless it names another draft in
  ``$schema``.  A schema without ``$schema`` that is only valid under draft 7
  (e.g. the array form of ``items``) is read as draft 7, so schemas written for
  Direktiv's engine keep working.
* The schema itself is checked when the workflow is loaded; a bad keyword value
  or a ``$ref`` that points nowhere is a located validation error.  Remote
  ``$ref`` URLs are refused (isolde never fetches schemas).
* ``format`` is enforced (jsonschema's format checker for the draft): an
  ``email`` without ``@`` fails, as Direktiv's template ``error.yml`` expects.
  Formats whose checker needs an extra package (``date-time``, ``uri``) are
  accepted unchecked, as the JSON Schema specification allows.
* ``subject`` defaults to the whole state data.  A failure raises the catchable
  ``direktiv.schema.failed`` whose message lists each failing location as a JSON
  path (``$.email: ...``), at most ten, in path order.
"""

from __future__ import annotations

from typing import Any

from isolde.plugin import Report, StateContext, StateSpec, StateType, Workflow, WorkflowError, hookimpl

SCHEMA_FAILED = "direktiv.schema.failed"
MAX_LISTED = 10
MAX_MESSAGE = 200


class Validate(StateType):
    name = "validate"
    schema = """
    state validate "Checks data against a JSON Schema (draft 2020-12 by default); a mismatch raises `direktiv.schema.failed`." {
        schema!: object   "The JSON Schema, written as YAML; `format` is enforced where the checker is built in (`email`, `ipv4`, `date`, `uuid`, ...)."
        subject: jx       "What to check, evaluated against the state data (default: the whole state data)."
    }
    """
    example = """
- id: check-input
  type: validate
  subject: 'jq(.)'
  schema:
    type: object
    required: [email]
    properties:
      email:
        type: string
        format: email
  catch:
  - error: direktiv.schema.*
    transition: bad-input
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        schema = state.fields["schema"]
        where = state.path + ("schema",)
        cls = _validator_class(schema, where, report)
        if cls is None:
            return
        if not _refs_resolve(schema, schema, where, report):
            return
        state.extra["validator"] = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        expr = state.fields.get("subject")
        subject = data if expr is None else expr.eval(data)
        validator = state.extra["validator"]
        try:
            errors = sorted(validator.iter_errors(subject), key=lambda e: [str(p) for p in e.absolute_path])
        except Exception as exc:  # e.g. a $ref the loader could not check statically
            raise WorkflowError(SCHEMA_FAILED, f"the schema could not be applied: {exc}") from None
        if not errors:
            return data
        parts = [f"{e.json_path}: {_short(e.message)}" for e in errors[:MAX_LISTED]]
        more = f" (and {len(errors) - MAX_LISTED} more)" if len(errors) > MAX_LISTED else ""
        raise WorkflowError(SCHEMA_FAILED, "subject failed its JSON Schema validation: " + "; ".join(parts) + more)


def _validator_class(schema: dict[str, Any], where: tuple[Any, ...], report: Report) -> Any:
    """The jsonschema validator class for ``schema``, or None after reporting why there is none."""
    from jsonschema import Draft7Validator, Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if "$schema" in schema:
        cls = validator_for(schema, default=None)
        if cls is None:
            report.error(where + ("$schema",), f"unknown JSON Schema dialect {schema['$schema']!r} "
                         "(e.g. https://json-schema.org/draft/2020-12/schema or http://json-schema.org/draft-07/schema#)")
            return None
        candidates = [cls]
    else:
        candidates = [Draft202012Validator, Draft7Validator]
    first: SchemaError | None = None
    for cls in candidates:
        try:
            cls.check_schema(schema)
            return cls
        except SchemaError as exc:
            first = first or exc
    assert first is not None
    report.error(where + tuple(first.path), f"invalid JSON Schema: {_short(first.message)}")
    return None


def _refs_resolve(node: Any, root: dict[str, Any], path: tuple[Any, ...], report: Report) -> bool:
    """Check every ``$ref``: local JSON pointers must point into the schema; remote URLs are refused."""
    ok = True
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#"):
                report.error(path + ("$ref",), f"$ref {ref!r} points outside this schema; isolde does not fetch "
                             "schemas: put the definition under $defs and refer to it as '#/$defs/NAME'")
                ok = False
            elif ref.startswith("#/") or ref == "#":
                if not _pointer_exists(root, ref[1:]):
                    report.error(path + ("$ref",), f"$ref {ref!r} does not point to anything in this schema")
                    ok = False
        for key, value in node.items():
            if key not in ("const", "enum", "default", "examples"):
                ok = _refs_resolve(value, root, path + (key,), report) and ok
    elif isinstance(node, list):
        for i, value in enumerate(node):
            ok = _refs_resolve(value, root, path + (i,), report) and ok
    return ok


def _pointer_exists(root: Any, pointer: str) -> bool:
    from urllib.parse import unquote

    node = root
    for raw in unquote(pointer).split("/")[1:] if pointer else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Validate]
