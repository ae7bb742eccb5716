"""Workflows under test are data (STYLE.md practice 6): ``tests/workflows/``.

* ``valid/NAME.yaml`` is run as described by ``valid/NAME.golden.json``::

      {"namespace": "ns",                       # optional, default "default"
       "runs": [{"input": <JSON>} | {"input_bytes": "<text>"} | {},
                 ... "output": <JSON>  or  "error": {"code": ..., "state": ..., "message": ...},
                 ... "log": ["line", ...]],     # optional
       "variables": [{"scope": ..., "key": ..., "bytes": "<text>" | null, "mime": ...}]}

  Runs happen in order on one fresh data directory, so later runs see what
  earlier runs stored; ``variables`` is checked after the last run (``bytes:
  null`` means "must not exist").  Workflow-scope variables belong to the
  workflow's own id; instance-scope ones to the last run's instance.

* ``invalid/NAME.yaml`` must be rejected with exactly the diagnostics listed in
  ``invalid/NAME.expected``, one per line, in order; each expected line is a
  prefix of the printed ``FILE:LINE:COL: state 'ID': message`` (FILE is the
  bare file name).

Set ``ISOLDE_UPDATE_GOLDEN=1`` to (re)write the golden files from what isolde
does now, then review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import isolde
from conftest import Cli

HERE = Path(__file__).parent / "workflows"
VALID = sorted((HERE / "valid").glob("*.yaml"))
INVALID = sorted((HERE / "invalid").glob("*.yaml"))
UPDATE = bool(os.environ.get("ISOLDE_UPDATE_GOLDEN"))


def _input(run: dict[str, Any]) -> Any:
    if "input_bytes" in run:
        return run["input_bytes"].encode()
    return run.get("input")


def _actual_run(res: isolde.Result, run: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = {k: run[k] for k in ("input", "input_bytes") if k in run}
    if res.ok:
        got["output"] = res.output
    else:
        got["error"] = {"code": res.error.code, "state": res.error.state, "message": res.error.message}
    if "log" in run or (UPDATE and res.log):
        got["log"] = res.log
    return got


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_workflow_golden(path: Path, tmp_path: Path) -> None:
    golden_path = path.with_suffix(".golden.json")
    golden = json.loads(golden_path.read_text())
    namespace = golden.get("namespace", "default")
    with isolde.Engine(data_dir=tmp_path, config={}) as engine:
        wf = engine.load(path)
        results = [engine.run(wf, input=_input(run), namespace=namespace) for run in golden["runs"]]
        actual_runs = [_actual_run(res, run) for res, run in zip(results, golden["runs"])]
        actual_vars = []
        for want in golden.get("variables", []):
            where: dict[str, Any] = {"scope": want["scope"], "namespace": namespace}
            if want["scope"] == "workflow":
                where["workflow"] = wf.id
            elif want["scope"] == "instance":
                where["instance"] = results[-1].instance_id  # (gone once the instance ended)
            var = engine.variables.get(want["key"], **where)
            got = {"scope": want["scope"], "key": want["key"], "bytes": None if var is None else var.data.decode()}
            if var is not None:
                got["mime"] = var.mime
            actual_vars.append(got)
    if UPDATE:
        golden["runs"] = actual_runs
        if actual_vars:
            golden["variables"] = actual_vars
        golden_path.write_text(json.dumps(golden, indent=2, ensure_ascii=False) + "\n")
        return
    for i, (want, got) in enumerate(zip(golden["runs"], actual_runs)):
        if "error" in want and "message" not in want["error"]:
            got["error"].pop("message")
        assert got == want, f"run {i + 1} of {path.name}"
    assert actual_vars == golden.get("variables", [])


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_workflow_diagnostics(path: Path, monkeypatch: pytest.MonkeyPatch, validator: isolde.Engine) -> None:
    monkeypatch.chdir(path.parent)
    got = [str(d) for d in validator.validate(path.name)]
    expected_path = path.with_suffix(".expected")
    if UPDATE:
        expected_path.write_text("".join(line + "\n" for line in got))
        return
    expected = expected_path.read_text().splitlines()
    assert got, f"{path.name} validated but should not"
    assert len(got) == len(expected), "\n".join(got)
    for want, line in zip(expected, got):
        assert line.startswith(want), f"\nexpected prefix: {want}\ngot:             {line}"


def test_every_example_has_its_golden_file() -> None:
    assert VALID and INVALID
    for path in VALID:
        assert path.with_suffix(".golden.json").is_file(), path
    for path in INVALID:
        assert path.with_suffix(".expected").is_file(), path
    stray = {p.name for p in HERE.rglob("*") if p.is_file() and p.suffix not in (".yaml", ".json", ".expected")}
    assert stray == set()


def test_valid_examples_validate_through_the_cli(cli: Cli) -> None:
    res = cli("validate", *[str(p) for p in VALID])
    assert res.code == 0, res.stderr
    assert res.stdout == ""
    assert f"{len(VALID)} file(s) valid" in res.stderr


def test_invalid_examples_through_the_cli(cli: Cli) -> None:
    """One process validates every invalid example: the same lines, exit 2, no traceback."""
    cli.cwd = HERE / "invalid"
    res = cli("validate", *[p.name for p in INVALID])
    assert res.code == 2
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert lines[-1] == f"{len(INVALID)} of {len(INVALID)} file(s) invalid"
    expected = [line for p in INVALID for line in p.with_suffix(".expected").read_text().splitlines()]
    assert len(lines) - 1 == len(expected)
    for want, line in zip(expected, lines):
        assert line.startswith(want), line


def test_validate_missing_file_and_usage(cli: Cli, tmp_path: Path) -> None:
    res = cli("validate", str(tmp_path / "nope.yaml"), str(VALID[0]))
    assert res.code == 2
    assert "nope.yaml: no such file" in res.stderr
    assert "1 of 2 file(s) invalid" in res.stderr
    assert cli("validate").code == 2
