"""The Direktiv corpus (``../shared/corpus``, see its MANIFEST.md) run and validated.

Two kinds of checks:

* **Results**: every file that uses only installed state types gives the result
  the manifest lists (outputs, stored variable bytes and mime types, failures).
* **Validation**: every file validates, or is rejected as the manifest says.  A
  file that needs a state type, function type or feature that is not installed
  yet must be rejected with a clean, located "unknown state type" diagnostic —
  never a traceback.  ``NEEDS`` below says what each file needs; as later issues
  install those plugins the expectation flips to "valid" by itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import isolde
from conftest import Cli

RAW = "v03-raw-jq"
STRUCT = "v04-v06-structured"
KN = "v06-v10-knative"

# file -> what it needs beyond the YAML itself: "state:T", "function:T" or "feature:F".
NEEDS: dict[str, set[str]] = {
    f"{RAW}/helloworld.yaml": {"state:noop"},
    f"{RAW}/eventgreeting.yaml": {"state:action", "state:consumeEvent", "function:isolated"},
    f"{RAW}/go-build.yaml": {"state:action", "function:isolated"},
    f"{RAW}/template-event-and.yaml": {"state:action", "state:eventAnd", "function:isolated"},
    f"{RAW}/template-event-xor.yaml": {"state:action", "state:eventXor", "function:isolated"},
    f"{RAW}/template-parallel.yaml": {"state:parallel", "function:isolated"},
    f"{STRUCT}/counter.yaml": {"state:getter", "state:setter"},
    # Its files: key `myscript"` really holds a stray quote (MANIFEST): the action plugin decides.
    f"{STRUCT}/excel-reader-files.yaml": {"state:action", "function:reusable"},
    f"{STRUCT}/fastapi.yaml": {"state:action", "state:error", "state:foreach", "state:switch", "function:reusable"},
    f"{STRUCT}/template-error.yaml": {"state:error", "state:noop", "state:validate"},
    f"{STRUCT}/vars-loop-instance.yaml": {"state:getter", "state:noop", "state:setter", "state:switch"},
    f"{STRUCT}/vars-loop-namespace.yaml": {"state:getter", "state:noop", "state:setter", "state:switch"},
    f"{STRUCT}/vars-loop-workflow.yaml": {"state:getter", "state:noop", "state:setter", "state:switch"},
    f"{KN}/catch.yaml": {"state:action", "function:subflow"},
    f"{KN}/counter-persistent-data.yaml": {"state:getter", "state:setter"},
    f"{KN}/error.yaml": {"state:error"},
    f"{KN}/events-and-wait.yaml": {"state:eventsAnd", "state:noop"},
    f"{KN}/events-xor-wait.yaml": {"state:eventsXor", "state:noop"},
    # getter/files with `scope: file` (a workflow file of the namespace as a variable).
    f"{KN}/files-a.yaml": {"state:action", "state:getter", "state:setter", "function:knative-namespace", "feature:scope-file"},
    f"{KN}/generate-event.yaml": {"state:delay", "state:generateEvent"},
    f"{KN}/getter-setter-nuller.yaml": {"state:setter"},
    f"{KN}/getter-setter-test.yaml": {"state:getter", "state:noop", "state:setter"},
    f"{KN}/getter-setter-test2.yaml": {"state:getter", "state:noop", "state:setter"},
    f"{KN}/greeting.yaml": {"state:action", "state:validate", "function:knative-workflow"},
    f"{KN}/instance-data.yaml": {"state:noop"},
    f"{KN}/mime-json.yaml": {"state:setter"},
    f"{KN}/mime-octet-stream.yaml": {"state:setter"},
    f"{KN}/mime-text-plain.yaml": {"state:setter"},
    f"{KN}/noop.yaml": {"state:noop"},
    f"{KN}/simple-chain.yaml": {"state:noop"},
    f"{KN}/simple-listener.yaml": {"state:action", "state:consumeEvent", "function:subflow"},
    f"{KN}/simple-loop.yaml": {"state:noop", "state:switch"},
    f"{KN}/workflow-scope.yaml": {"state:action", "state:getter", "state:setter", "function:knative-workflow"},
    "invalid/dangling-transition.yaml": {"state:action", "function:reusable"},
    "invalid/undeclared-function.yaml": {"state:action", "function:reusable"},
    "invalid/unparsable.yaml": set(),
}

# What issue 2 itself must handle completely (manifest: "uses only this issue's state types").
CORE_FILES = sorted(f for f, needs in NEEDS.items() if needs and needs <= {
    "state:getter", "state:setter", "state:noop", "state:switch", "state:error"})


def installed(engine: isolde.Engine) -> set[str]:
    have = {f"state:{t}" for t in engine.registry.state_types}
    have |= {f"function:{t}" for t in engine.registry.schema.functions}
    # Feature detection by behaviour: does a getter accept `scope: file` with a path key?
    probe = "states:\n- id: a\n  type: getter\n  variables:\n  - key: /e.yaml\n    scope: file\n    as: e\n"
    if not engine.validate(probe):
        have.add("feature:scope-file")
    return have


# -- the table itself -------------------------------------------------------------------


def test_table_covers_every_corpus_file(corpus: Path) -> None:
    on_disk = {str(p.relative_to(corpus)) for p in corpus.rglob("*.yaml")}
    assert on_disk == set(NEEDS)


@pytest.mark.parametrize("name", sorted(f for f in NEEDS if f != "invalid/unparsable.yaml"))
def test_table_matches_the_types_the_yaml_uses(corpus: Path, name: str) -> None:
    doc = yaml.safe_load((corpus / name).read_text())
    used = {f"state:{s['type']}" for s in doc["states"]}
    used |= {f"function:{f.get('type', 'isolated')}" for f in doc.get("functions") or []}
    assert {n for n in NEEDS[name] if not n.startswith("feature:")} == used


def test_this_issue_covers_the_getter_setter_files() -> None:
    assert len(CORE_FILES) == 17  # see MANIFEST.md: the files issue 2 must run


# -- validation of every file -------------------------------------------------------------

LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (state '(?P<state>[^']+)': )?(?P<msg>.+)$")


@pytest.mark.parametrize("name", sorted(f for f in NEEDS if not f.startswith("invalid/")))
def test_corpus_file_validates_or_names_what_is_missing(validator: isolde.Engine, corpus: Path, name: str) -> None:
    diagnostics = validator.validate(corpus / name)
    missing = NEEDS[name] - installed(validator)
    if not missing:
        assert [str(d) for d in diagnostics] == []
        return
    assert diagnostics, f"{name} needs {sorted(missing)} but validated"
    text = [str(d) for d in diagnostics]
    for line in text:
        assert LOCATED.match(line), line
    for need in sorted(missing):
        kind, _, what = need.partition(":")
        if kind == "state":
            hits = [d for d in diagnostics if f"unknown state type '{what}'" in d.message]
            assert hits, (need, text)
            assert all(d.state and d.line > 1 for d in hits)
            assert all("available: " in d.message for d in hits)
        elif kind == "function":
            assert any(f"unknown function type '{what}'" in d.message for d in diagnostics), (need, text)
        else:  # a feature: the diagnostic names the value it does not accept
            assert any("file" in d.message for d in diagnostics), (need, text)


def test_dangling_transition_is_rejected_citing_the_state(validator: isolde.Engine, corpus: Path) -> None:
    diagnostics = validator.validate(corpus / "invalid" / "dangling-transition.yaml")
    assert diagnostics
    assert any(d.state == "getter" for d in diagnostics)
    if NEEDS["invalid/dangling-transition.yaml"] <= installed(validator):
        [d] = [d for d in diagnostics if "transition" in d.message]
        assert (d.line, d.col, d.state) == (20, 15, "getter")
        assert "unknown state 'check'" in d.message


def test_undeclared_function_is_rejected_citing_the_state(validator: isolde.Engine, corpus: Path) -> None:
    diagnostics = validator.validate(corpus / "invalid" / "undeclared-function.yaml")
    assert diagnostics
    assert any(d.state == "gh" for d in diagnostics)
    if NEEDS["invalid/undeclared-function.yaml"] <= installed(validator):
        [d] = [d for d in diagnostics if "scp" in d.message]
        assert (d.line, d.col, d.state) == (9, 15, "gh")
        assert "not declared" in d.message


def test_unparsable_is_a_yaml_error_at_28_32(validator: isolde.Engine, corpus: Path) -> None:
    [d] = validator.validate(corpus / "invalid" / "unparsable.yaml")
    assert (d.line, d.col) == (28, 32)
    assert "mapping values are not allowed" in d.message
    assert d.message.startswith("YAML")


def test_validate_whole_corpus_through_the_cli(cli: Cli, corpus: Path) -> None:
    files = sorted(str(p) for p in corpus.rglob("*.yaml"))
    res = cli("validate", *files)
    assert res.code == 2  # invalid/ alone guarantees that
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert lines[-1].endswith(f"of {len(files)} file(s) invalid")
    for line in lines[:-1]:
        assert LOCATED.match(line), line
    for name in CORE_FILES:
        assert str(corpus / name) + ":" not in res.stderr


# -- results ------------------------------------------------------------------------------


def test_t1_three_scopes_sequence_through_the_cli(cli: Cli, corpus: Path, tmp_path: Path) -> None:
    """test, test, test2, nuller, test in one fresh namespace, each stored under its own name."""
    for src, dst in (("getter-setter-test", "test"), ("getter-setter-test2", "test2"), ("getter-setter-nuller", "nuller")):
        shutil.copy(corpus / KN / f"{src}.yaml", tmp_path / f"{dst}.yaml")
    expected = [
        ("test", {"nsx": 1, "wfx": 10, "inx": 100}),
        ("test", {"nsx": 2, "wfx": 20, "inx": 100}),
        ("test2", {"nsx": 3, "wfx": 10, "inx": 100}),
        ("nuller", {}),
        ("test", {"nsx": 1, "wfx": 30, "inx": 100}),
    ]
    for name, output in expected:
        res = cli("run", str(tmp_path / f"{name}.yaml"), "-n", "t1")
        assert res.code == 0, res.stderr
        assert res.json == output, name
    assert cli("vars", "get", "x", "-n", "t1").stdout == "1"
    assert cli("vars", "get", "x", "-n", "t1", "-w", "test").stdout == "30"
    assert cli("vars", "get", "x", "-n", "t1", "-w", "test2").stdout == "10"
    assert cli("workflows", "list", "-n", "t1").stdout.split() == ["test", "test2"]


def test_t1_through_the_engine_with_workflow_ids(engine: isolde.Engine, corpus: Path) -> None:
    outputs = []
    for src, wid in (("test", "test"), ("test", "test"), ("test2", "test2"), ("nuller", "nuller"), ("test", "test")):
        res = engine.run(corpus / KN / f"getter-setter-{src}.yaml", namespace="t1", workflow_id=wid)
        assert res.ok, res.error
        outputs.append(res.output)
    assert outputs == [
        {"nsx": 1, "wfx": 10, "inx": 100},
        {"nsx": 2, "wfx": 20, "inx": 100},
        {"nsx": 3, "wfx": 10, "inx": 100},
        {},
        {"nsx": 1, "wfx": 30, "inx": 100},
    ]


def stored(engine: isolde.Engine, key: str, **where: Any) -> tuple[bytes, str] | None:
    var = engine.variables.get(key, **where)
    return None if var is None else (var.data, var.mime)


def test_t2_vars_loop_workflow(engine: isolde.Engine, corpus: Path) -> None:
    wf = corpus / STRUCT / "vars-loop-workflow.yaml"
    for expected in (b"5", b"10"):
        assert engine.run(wf, namespace="t2").ok
        assert stored(engine, "x", scope="workflow", workflow="vars-loop-workflow", namespace="t2") == (
            expected, "application/json")


def test_t2_vars_loop_namespace_as_two_workflows(engine: isolde.Engine, corpus: Path) -> None:
    wf = corpus / STRUCT / "vars-loop-namespace.yaml"
    for wid, expected in (("testwf1", b"5"), ("testwf2", b"10")):
        assert engine.run(wf, namespace="t2", workflow_id=wid).ok
        assert stored(engine, "x", namespace="t2") == (expected, "application/json")
    assert engine.workflows("t2") == []  # only namespace scope was written


def test_t2_vars_loop_instance(engine: isolde.Engine, corpus: Path) -> None:
    wf = corpus / STRUCT / "vars-loop-instance.yaml"
    for _ in range(2):
        res = engine.run(wf, namespace="t2")
        assert res.ok
        assert res.output["var"] == {"x": 5}  # the last value read inside the instance
        assert engine.variables.list(scope="instance", instance=res.instance_id, namespace="t2") == []
    assert engine.namespaces() == []


@pytest.mark.parametrize(
    ("name", "wid", "key"),
    [
        (f"{STRUCT}/counter.yaml", "getter-and-setter", "ExampleVariableCounter"),
        (f"{KN}/counter-persistent-data.yaml", "counter-persistent-data", "counter"),
    ],
)
def test_counters_three_runs(engine: isolde.Engine, corpus: Path, name: str, wid: str, key: str) -> None:
    for n in (1, 2, 3):
        res = engine.run(corpus / name)
        assert res.ok, res.error
        assert res.output == {"newCounter": n, "var": {key: None if n == 1 else n - 1}}
    assert stored(engine, key, scope="workflow", workflow=wid) == (b"3", "application/json")


@pytest.mark.parametrize(
    ("name", "output"),
    [
        (f"{KN}/noop.yaml", {"result": "x"}),
        (f"{KN}/simple-chain.yaml", {"a": "x", "b": "y", "c": "z"}),
        (f"{KN}/simple-loop.yaml", {"i": 0, "result": [5, 4, 3, 2, 1]}),
        (f"{KN}/getter-setter-nuller.yaml", {}),
        # Raw-jq era (SPEC §2.1): the transform is a jq program, as in Direktiv v0.1-v0.2.
        (f"{RAW}/helloworld.yaml", {"result": "Hello World!"}),
    ],
)
def test_outputs(engine: isolde.Engine, corpus: Path, name: str, output: Any) -> None:
    res = engine.run(corpus / name, input=None)
    assert res.ok, res.error
    assert res.output == output


@pytest.mark.parametrize(
    ("given", "output"),
    [
        (None, {}),
        (b'{"x": 5}', {"x": 5}),
        (b"[1, 2, 3]", {"input": [1, 2, 3]}),
        (b"Hello, world!", {"input": "SGVsbG8sIHdvcmxkIQ=="}),
    ],
)
def test_instance_data(engine: isolde.Engine, corpus: Path, given: bytes | None, output: Any) -> None:
    res = engine.run(corpus / KN / "instance-data.yaml", input=given)
    assert res.output == output


def test_error_state_fails_with_testcode(engine: isolde.Engine, corpus: Path) -> None:
    res = engine.run(corpus / KN / "error.yaml")
    assert res.status == "failed"
    assert res.output is None
    assert (res.error.code, res.error.message, res.error.state) == ("testcode", "this is a test error", "a")


@pytest.mark.parametrize(
    ("name", "key", "data", "mime"),
    [
        ("mime-json", "StringVar", b'"hello\\nworld"', "application/json"),
        ("mime-text-plain", "StringVar", b"hello\nworld", "text/plain"),
        ("mime-octet-stream", "MessageVar", b"hello from direktiv", "application/octet-stream"),
    ],
)
def test_mime_types_store_exact_bytes(engine: isolde.Engine, corpus: Path, name: str, key: str, data: bytes, mime: str) -> None:
    res = engine.run(corpus / KN / f"{name}.yaml")
    assert res.ok, res.error
    assert stored(engine, key, scope="workflow", workflow=name) == (data, mime)


def test_mime_values_read_back_through_a_getter(engine: isolde.Engine, corpus: Path) -> None:
    for name in ("mime-json", "mime-text-plain", "mime-octet-stream"):
        engine.run(corpus / KN / f"{name}.yaml", workflow_id="mimes")
    reader = """\
states:
- id: read
  type: getter
  variables:
  - key: StringVar
    scope: workflow
  - key: MessageVar
    scope: workflow
"""
    res = engine.run(reader, workflow_id="mimes")
    # text/plain overwrote the JSON string: bytes that are not JSON read back as base64
    # whatever the mime type (SPEC §3, as Direktiv), unless the getter opts in with as_text.
    assert res.output == {"var": {"StringVar": "aGVsbG8Kd29ybGQ=", "MessageVar": "aGVsbG8gZnJvbSBkaXJla3Rpdg=="}}
    res = engine.run(reader.replace("scope: workflow", "scope: workflow\n    as_text: true"), workflow_id="mimes")
    assert res.output == {"var": {"StringVar": "hello\nworld", "MessageVar": "hello from direktiv"}}
