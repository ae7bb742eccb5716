"""Workflow test files: what a test says, with where it says it (for located failures).

A test file is YAML::

    workflow: greeter.yaml            # relative to this file
    namespace: tests                  # optional (default: default)
    tests:
    - name: greets by name
      input: {name: Trent}
      variables:                      # set before the run
        workflow: {greeted: 0}
        namespace: {motd: "hello"}
      mocks:                          # replies of functions, by function id
        greeter: {return: {greeting: "Hi Trent"}}
        flaky:                        # a sequence: one per call (retries)
        - {error: {code: greeter.busy, message: try again}}
        - {return: {ok: true}}
      expect:
        output: {greeting: "Hi Trent"}        # or error: {code: ..., message: ...}
        variables: {workflow: {greeted: 1}}   # null: must not exist
        states: [greet, done]                 # visited states, in order
        calls: {greeter: [{name: Trent}]}     # inputs the mocked functions got
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Diagnostic, ValidationError
from ..loader import Document, YamlError, load_document

SCOPES = ("instance", "workflow", "namespace")
EXPECTATIONS = ("output", "error", "variables", "states", "calls")
CASE_KEYS = ("name", "input", "variables", "mocks", "expect", "events")
FILE_KEYS = ("workflow", "namespace", "tests")


@dataclass(slots=True)
class Reply:
    """One mocked reply: a result, or an error code (catchable)."""

    value: Any = None
    error: tuple[str, str] | None = None


@dataclass(slots=True)
class Case:
    name: str
    file: Path
    line: int
    col: int
    workflow: Path
    namespace: str
    input: Any
    variables: dict[str, dict[str, Any]]
    mocks: dict[str, list[Reply]]
    events: list[dict[str, Any]]
    expect: dict[str, Any]
    where: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Line and column of each expectation, for failure messages."""

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def load_cases(path: Path) -> list[Case]:
    """Every test of one file; ``ValidationError`` (located) when the file is malformed."""
    doc = load_document(path.read_bytes(), str(path))
    errors: list[tuple[tuple[Any, ...], str]] = []
    top = doc.value
    if not isinstance(top, dict):
        _fail(doc, [((), "a test file is a mapping with `workflow` and `tests`")])
    for key in top:
        if key not in FILE_KEYS:
            errors.append(((key,), f"unknown key '{key}' (known: {', '.join(FILE_KEYS)})"))
    if not isinstance(top.get("workflow"), str):
        errors.append((("workflow",) if "workflow" in top else (), "`workflow` must name the workflow file"))
    tests = top.get("tests")
    if not isinstance(tests, list) or not tests:
        errors.append((("tests",) if "tests" in top else (), "`tests` must be a non-empty list"))
    if errors:
        _fail(doc, errors)
    workflow = (path.parent / top["workflow"]).resolve()
    namespace = str(top.get("namespace") or "default")
    cases = []
    for i, raw in enumerate(tests):
        cases.append(_case(doc, path, workflow, namespace, i, raw, errors))
    if errors:
        _fail(doc, errors)
    return cases


def _case(doc: Document, path: Path, workflow: Path, namespace: str, i: int, raw: Any,
          errors: list[tuple[tuple[Any, ...], str]]) -> Case:
    at = ("tests", i)
    if not isinstance(raw, dict):
        errors.append((at, "a test is a mapping with a `name` and an `expect`"))
        raw = {}
    for key in raw:
        if key not in CASE_KEYS:
            errors.append((at + (key,), f"unknown key '{key}' (known: {', '.join(CASE_KEYS)})"))
    expect = raw.get("expect") if isinstance(raw.get("expect"), dict) else {}
    if "expect" in raw and not isinstance(raw.get("expect"), dict):
        errors.append((at + ("expect",), f"`expect` must be a mapping of {', '.join(EXPECTATIONS)}"))
    for key in expect:
        if key not in EXPECTATIONS:
            errors.append((at + ("expect", key), f"unknown expectation '{key}' (known: {', '.join(EXPECTATIONS)})"))
    if "output" in expect and "error" in expect:
        errors.append((at + ("expect",), "expect either `output` or `error`, not both"))
    variables = raw.get("variables") or {}
    if not isinstance(variables, dict) or any(s not in SCOPES or not isinstance(v, dict) for s, v in variables.items()):
        errors.append((at + ("variables",), "`variables` maps instance/workflow/namespace to {key: value}"))
        variables = {}
    mocks = {}
    for fid, spec in (raw.get("mocks") or {}).items():
        replies = [_reply(r, at + ("mocks", fid), errors) for r in (spec if isinstance(spec, list) else [spec])]
        mocks[str(fid)] = replies
    line, col = doc.where(at)
    return Case(
        name=str(raw.get("name") or f"test {i + 1}"), file=path, line=line, col=col, workflow=workflow,
        namespace=namespace, input=raw.get("input"), variables=variables, mocks=mocks,
        events=list(raw.get("events") or []), expect=expect,
        where={k: doc.where(at + ("expect", k)) for k in expect},
    )


def _reply(raw: Any, at: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Reply:
    if isinstance(raw, dict) and set(raw) == {"return"}:
        return Reply(value=raw["return"])
    if isinstance(raw, dict) and set(raw) == {"error"} and isinstance(raw["error"], dict) and "code" in raw["error"]:
        return Reply(error=(str(raw["error"]["code"]), str(raw["error"].get("message", ""))))
    errors.append((at, "a mocked reply is {return: VALUE} or {error: {code: CODE, message: TEXT}} (or a list of them)"))
    return Reply()


def _fail(doc: Document, errors: list[tuple[tuple[Any, ...], str]]) -> None:
    diagnostics = []
    for where, message in errors:
        line, col = doc.where(where, key=message.startswith("unknown "))
        diagnostics.append(Diagnostic(doc.filename, line, col, message))
    raise ValidationError(diagnostics)


__all__ = ["Case", "Reply", "YamlError", "load_cases"]
