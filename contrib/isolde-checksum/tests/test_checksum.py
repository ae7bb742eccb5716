"""Tests of the ``checksum`` state, through isolde's public surfaces only.

They run against the *installed* package (``pip install ./contrib/isolde-checksum``),
exactly as isolde would load it in production: through the ``isolde`` entry-point
group, not by importing this package directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde

try:
    distribution("isolde-checksum")
except PackageNotFoundError:  # pragma: no cover - depends on the environment
    pytest.skip("isolde-checksum is not installed (pip install ./contrib/isolde-checksum)", allow_module_level=True)

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[isolde.Engine]:
    with isolde.Engine(data_dir=tmp_path / "data", config={}) as eng:
        yield eng


def checksum_workflow(**fields: Any) -> str:
    """A one-state structured workflow (no top-level id) using the checksum state."""
    lines = ["states:", "- id: hash", "  type: checksum"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def test_string_is_hashed_as_utf8_with_defaults(engine: isolde.Engine) -> None:
    result = engine.run(checksum_workflow(value="jq(.text)"), input={"text": "abc"})
    assert result.ok, result.error
    assert result.output == {"text": "abc", "checksum": ABC_SHA256}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("sha256", ABC_SHA256),
        ("sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("md5", "900150983cd24fb0d6963f7d28e17f72"),
        ("blake2b", hashlib.blake2b(b"abc").hexdigest()),
    ],
)
def test_each_algorithm(engine: isolde.Engine, algorithm: str, expected: str) -> None:
    result = engine.run(checksum_workflow(value="abc", algorithm=algorithm, **{"as": "digest"}))
    assert result.output == {"digest": expected}


def test_base64_encoding(engine: isolde.Engine) -> None:
    result = engine.run(checksum_workflow(value="abc", encoding="base64"))
    assert result.output["checksum"] == base64.b64encode(bytes.fromhex(ABC_SHA256)).decode()


def test_non_strings_are_hashed_as_sorted_compact_json(engine: isolde.Engine) -> None:
    wf = checksum_workflow(value="jq(.doc)")
    one = engine.run(wf, input={"doc": {"b": [1, 2], "a": "é"}})
    two = engine.run(wf, input={"doc": {"a": "é", "b": [1, 2]}})
    expected = hashlib.sha256('{"a":"é","b":[1,2]}'.encode()).hexdigest()
    assert one.output["checksum"] == two.output["checksum"] == expected
    for value, text in [(42, "42"), (None, "null"), (True, "true"), ([], "[]")]:
        got = engine.run(wf, input={"doc": value}).output["checksum"]
        assert got == hashlib.sha256(text.encode()).hexdigest(), value


def test_raw_jq_document_and_engine_owned_fields(engine: isolde.Engine) -> None:
    """In a raw-jq era document `value` is a jq program; transform/transition are the engine's."""
    wf = """\
id: legacy
states:
- id: hash
  type: checksum
  value: .name
  as: sum
  transform: '{name, short: .sum[0:8]}'
  transition: done
- id: done
  type: noop
"""
    result = engine.run(wf, input={"name": "abc"})
    assert result.output == {"name": "abc", "short": ABC_SHA256[:8]}


def test_validation_errors_are_located_with_hints(engine: isolde.Engine) -> None:
    problems = [str(d) for d in engine.validate(checksum_workflow(value="x", algorithm="sha265"))]
    assert len(problems) == 1
    assert "state 'hash'" in problems[0] and "did you mean 'sha256'" in problems[0]
    problems = [str(d) for d in engine.validate(checksum_workflow(encoding="hex"))]
    assert any("missing required field 'value'" in p for p in problems)
    problems = [str(d) for d in engine.validate(checksum_workflow(value="x", **{"as": ""}))]
    assert any("'as' must name a key" in p for p in problems)


def test_unhashable_value_is_a_catchable_error(engine: isolde.Engine) -> None:
    wf = """\
states:
- id: hash
  type: checksum
  value: 'jq(.s)'
  catch:
  - error: 'checksum.*'
    transition: fallback
- id: fallback
  type: noop
"""
    result = engine.run(wf, input={"s": "\ud800"})  # a lone surrogate has no UTF-8 form
    assert result.ok, result.error
    assert result.output["error"]["code"] == "checksum.invalidValue"
    assert "checksum" not in result.output


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["ISOLDE_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [sys.executable, "-m", "isolde.cli", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )


def test_cli_lists_plugin_and_runs_it(tmp_path: Path) -> None:
    listing = run_cli(tmp_path, "plugins")
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith("checksum\t"))
    assert distribution("isolde-checksum").version in line and "state checksum" in line

    wf = tmp_path / "hash.yaml"
    wf.write_text(checksum_workflow(value="jq(.input)", encoding="base64"))
    done = run_cli(tmp_path, "run", str(wf), "--input", '"abc"')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checksum"] == base64.b64encode(bytes.fromhex(ABC_SHA256)).decode()


def test_cli_can_disable_it(tmp_path: Path) -> None:
    (tmp_path / "isolde.toml").write_text('[plugins]\ndisable = ["checksum"]\n')
    wf = tmp_path / "hash.yaml"
    wf.write_text(checksum_workflow(value="abc"))
    done = run_cli(tmp_path, "validate", str(wf))
    assert done.returncode == 2
    assert "unknown state type 'checksum'" in done.stderr
