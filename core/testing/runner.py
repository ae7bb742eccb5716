"""Running workflow tests: one fresh engine per test, mocked functions, compared results."""

from __future__ import annotations

import copy
import difflib
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..config import Config, load_config
from ..engine import Engine
from ..errors import IsoldeError, ValidationError
from ..loader import YamlError
from .cases import Case, load_cases
from .mocks import MOCK_TYPE, MockPlugin, MockTable

PATTERNS = ("*.test.yaml", "*.test.yml", "*_test.yaml", "*_test.yml")
"""Which files ``isolde test DIR`` runs."""


@dataclass(slots=True)
class Outcome:
    """How one test went: ``problems`` is empty when it passed."""

    case: Case
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        head = f"{self.case.location}: test '{self.case.name}'"
        return "\n".join([head, *("  " + line for p in self.problems for line in p.splitlines())])


def find_test_files(paths: Iterable[str | Path]) -> list[Path]:
    """Test files named by ``paths`` (files as given; directories searched recursively)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted({f for pattern in PATTERNS for f in p.rglob(pattern) if ".venv" not in f.parts})
        else:
            found.append(p)
    return found


def collect(path: Path) -> list[Case]:
    """The tests of one file (``ValidationError`` with located problems when it is malformed)."""
    try:
        return load_cases(path)
    except YamlError as exc:
        raise ValidationError([exc.diagnostic]) from None


def run_case(case: Case, config: Config | None = None) -> Outcome:
    """Run one test with a fresh data directory and its functions mocked."""
    outcome = Outcome(case)
    begun = time.perf_counter()
    table = MockTable(case.mocks)
    cfg = config or _config_near(case.workflow)
    data = {**cfg.data, "store": {**cfg.data.get("store", {}), "durability": "fast"}}
    with tempfile.TemporaryDirectory(prefix="isolde-test-") as tmp:
        try:
            with Engine(data_dir=tmp, config=Config(data, cfg.path), plugins=[MockPlugin(table)]) as engine:
                _run(engine, case, table, outcome)
        except ValidationError as exc:
            outcome.problems.append("the workflow is invalid:\n" + "\n".join(str(d) for d in exc.diagnostics))
        except (IsoldeError, OSError) as exc:
            outcome.problems.append(f"could not run: {exc}")
    outcome.seconds = time.perf_counter() - begun
    return outcome


def _config_near(workflow: Path) -> Config:
    """``isolde.toml`` beside the workflow (or its parent folders), else the usual search."""
    for folder in [workflow.parent, *workflow.parent.parents]:
        if (folder / "isolde.toml").is_file():
            return load_config(folder / "isolde.toml")
    return load_config()


def _run(engine: Engine, case: Case, table: MockTable, outcome: Outcome) -> None:
    original = engine.load(case.workflow)  # located errors refer to the file as written
    value = copy.deepcopy(original.document.value)
    functions = {str(f.get("id")): f for f in value.get("functions") or [] if isinstance(f, dict)}
    unknown = sorted(set(case.mocks) - set(functions))
    if unknown:
        outcome.problems.append(f"mocks name functions the workflow does not declare: {', '.join(unknown)} "
                                f"(declared: {', '.join(sorted(functions)) or 'none'})")
        return
    for fid in case.mocks:
        functions[fid].clear()
        functions[fid].update({"id": fid, "type": MOCK_TYPE})
    wf = engine.build(yaml.safe_dump(value, sort_keys=False), str(case.workflow), original.id) if case.mocks else original
    iid = f"test-{case.line}"
    for scope, items in case.variables.items():
        for key, val in items.items():
            engine.variables.set(key, val, scope=scope, namespace=case.namespace, workflow=wf.id, instance=iid)
    for event in case.events:
        engine.events.publish(case.namespace, event, retain_for=math.inf)
    result = engine.run(wf, case.input, namespace=case.namespace, instance_id=iid)
    expect = case.expect
    if "output" in expect:
        if not result.ok:
            outcome.problems.append(_at(case, "output") + f"expected output, got error {result.error}")
        else:
            _compare(outcome, case, "output", expect["output"], result.output)
    if "error" in expect:
        want = expect["error"] if isinstance(expect["error"], dict) else {"code": expect["error"]}
        got = {"code": result.error.code, "message": result.error.message} if result.error else None
        if got is None:
            outcome.problems.append(_at(case, "error") + f"expected error {want.get('code')}, the instance completed "
                                    f"with output {json.dumps(result.output, sort_keys=True)}")
        else:
            _compare(outcome, case, "error", want, {k: got[k] for k in want if k in got})
    if "states" in expect:
        _compare(outcome, case, "states", expect["states"], result.states)
    if "calls" in expect:
        _compare(outcome, case, "calls", expect["calls"], {fid: table.calls.get(fid, []) for fid in expect["calls"]})
    if "variables" in expect:
        got_vars: dict[str, dict[str, Any]] = {}
        for scope, items in (expect["variables"] or {}).items():
            got_vars[scope] = {key: engine.variables.value(key, scope=scope, namespace=case.namespace, workflow=wf.id,
                                                           instance=iid) for key in items}
        _compare(outcome, case, "variables", expect["variables"], got_vars)


def _at(case: Case, key: str) -> str:
    line, col = case.where.get(key, (case.line, case.col))
    return f"{case.file}:{line}:{col}: "


def _compare(outcome: Outcome, case: Case, key: str, want: Any, got: Any) -> None:
    if want == got:
        return
    a = json.dumps(want, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    b = json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    diff = "\n".join(difflib.unified_diff(a, b, "expected", "got", lineterm=""))
    outcome.problems.append(_at(case, key) + f"{key} differs:\n{diff}")


__all__ = ["Outcome", "PATTERNS", "collect", "find_test_files", "run_case"]
