"""The embedding API, ``isolde.Engine`` (SPEC §5.2).

An embedder needs: a context manager that releases everything, several engines
in one process that share nothing they should not, ``run`` taking a path, YAML
text or a loaded workflow, a result with ``output/status/error/instance_id``,
and ``engine.variables`` to read and write variables by scope.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import isolde
from isolde.store import InvalidKey
from conftest import EXAMPLES

COUNTER = EXAMPLES / "counter.yaml"

ECHO = "id: echo\nstates:\n- id: a\n  type: noop\n"

LOGS = """\
id: logs
states:
- id: one
  type: noop
  log: '"first " + (.n | tostring)'
  transition: two
- id: two
  type: noop
  log: '{n: .n}'
"""


# -- lifecycle ------------------------------------------------------------------------------


def test_context_manager_closes_and_close_is_idempotent(tmp_path: Path) -> None:
    with isolde.Engine(data_dir=tmp_path, config={}) as engine:
        assert engine.run(COUNTER).output == {"var": {"x": 1}}
    with pytest.raises(isolde.IsoldeError, match="closed"):
        engine.run(COUNTER)
    engine.close()  # a second close is harmless
    with isolde.Engine(data_dir=tmp_path, config={}) as again:  # the files were released
        assert again.run(COUNTER).output == {"var": {"x": 2}}


def test_validate_only_never_opens_the_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "never"
    with isolde.Engine(data_dir=data_dir, config={}) as engine:
        assert engine.validate(COUNTER) == []
    assert not data_dir.exists()


def test_resources_are_closed_with_the_engine_in_reverse_order(tmp_path: Path) -> None:
    closed: list[str] = []

    class Res:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    with isolde.Engine(data_dir=tmp_path, config={}) as engine:
        first = engine.resource("a", lambda: Res("a"))
        assert engine.resource("a", lambda: Res("other")) is first  # made once
        engine.resource("b", lambda: Res("b"))
    assert closed == ["b", "a"]
    with pytest.raises(isolde.IsoldeError):
        engine.resource("c", lambda: Res("c"))


# -- several engines --------------------------------------------------------------------------


def test_two_engines_on_two_data_dirs_share_nothing(tmp_path: Path) -> None:
    with isolde.Engine(data_dir=tmp_path / "one", config={}) as one, \
            isolde.Engine(data_dir=tmp_path / "two", config={"plugins": {"disable": ["switch"]}}) as two:
        assert one.run(COUNTER).output == {"var": {"x": 1}}
        assert one.run(COUNTER).output == {"var": {"x": 2}}
        assert two.run(COUNTER).output == {"var": {"x": 1}}
        one.variables.set("only", "in one")
        assert two.variables.get("only") is None
        # Each has its own plugin manager and registry.
        assert one.registry.pm is not two.registry.pm
        assert "switch" in one.registry.state_types
        assert "switch" not in two.registry.state_types
        assert one.jq is not two.jq


def test_two_engines_on_one_data_dir_see_each_other(tmp_path: Path) -> None:
    with isolde.Engine(data_dir=tmp_path, config={}) as one, isolde.Engine(data_dir=tmp_path, config={}) as two:
        assert one.run(COUNTER).output == {"var": {"x": 1}}
        assert two.run(COUNTER).output == {"var": {"x": 2}}
    with isolde.Engine(data_dir=tmp_path, config={}) as three:
        assert three.variables.value("x", scope="workflow", workflow="counter") == 2


def test_closing_one_engine_leaves_the_other_working(tmp_path: Path) -> None:
    one = isolde.Engine(data_dir=tmp_path, config={})
    with isolde.Engine(data_dir=tmp_path, config={}) as two:
        one.run(COUNTER)
        one.close()
        assert two.run(COUNTER).output == {"var": {"x": 2}}


def test_per_engine_limits(tmp_path: Path) -> None:
    loop = "id: l\nstates:\n- id: a\n  type: noop\n  transition: b\n- id: b\n  type: noop\n  transition: a\n"
    with isolde.Engine(data_dir=tmp_path / "a", config={"limits": {"max_steps": 5}}) as small, \
            isolde.Engine(data_dir=tmp_path / "b", config={"limits": {"max_steps": 50}}) as big:
        assert "5 state transitions" in small.run(loop).error.message
        assert "50 state transitions" in big.run(loop).error.message


# -- what run accepts -----------------------------------------------------------------------------


def test_run_takes_a_path_str_path_yaml_text_and_a_workflow(engine: isolde.Engine) -> None:
    assert engine.run(COUNTER).output == {"var": {"x": 1}}
    assert engine.run(str(COUNTER)).output == {"var": {"x": 2}}
    assert engine.run(COUNTER.read_text()).output == {"var": {"x": 3}}  # id: counter -> same workflow
    wf = engine.load(COUNTER)
    assert isinstance(wf, isolde.Workflow) and wf.id == "counter"
    assert engine.run(wf).output == {"var": {"x": 4}}


def test_workflow_id_comes_from_id_then_stem_then_argument(engine: isolde.Engine, tmp_path: Path) -> None:
    no_id = "states:\n- id: a\n  type: setter\n  variables:\n  - key: k\n    scope: workflow\n    value: 1\n"
    (tmp_path / "from-stem.yaml").write_text(no_id)
    engine.run(tmp_path / "from-stem.yaml")
    engine.run(tmp_path / "from-stem.yaml", workflow_id="explicit")
    engine.run(no_id, workflow_id="text-wf")
    assert engine.load(COUNTER).id == "counter"
    assert engine.workflows() == ["explicit", "from-stem", "text-wf"]


def test_load_caches_by_file_and_notices_changes(engine: isolde.Engine, tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(ECHO)
    first = engine.load(path)
    assert engine.load(path) is first
    path.write_text(ECHO + "  transform: '{changed: true}'\n")
    assert engine.load(path) is not first
    assert engine.run(path).output == {"changed": True}


def test_load_of_a_relative_path_follows_the_working_directory(engine: isolde.Engine, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is keyed by the path as given: a relative one names another file once the
    working directory changed, and the same file under another spelling is still the same."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "wf.yaml").write_text(ECHO.replace("id: echo", f"id: {name}"))
    monkeypatch.chdir(tmp_path / "one")
    assert engine.load("wf.yaml").id == "one"
    monkeypatch.chdir(tmp_path / "two")
    assert engine.load("wf.yaml").id == "two"
    assert engine.load(Path("wf.yaml")).id == "two"
    assert engine.load(str(tmp_path / "one" / "wf.yaml")).id == "one"


def test_run_of_an_invalid_workflow_raises_validation_error(engine: isolde.Engine) -> None:
    with pytest.raises(isolde.ValidationError) as info:
        engine.run("id: bad\nstates:\n- id: a\n  type: nope\n")
    [d] = info.value.diagnostics
    assert isinstance(d, isolde.Diagnostic)
    assert (d.line, d.col, d.state) == (4, 9, "a")
    assert engine.namespaces() == []


def test_run_of_a_missing_file(engine: isolde.Engine, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        engine.run(tmp_path / "missing.yaml")


@pytest.mark.parametrize("namespace", ["", "a/b", "nul\x00", "x" * 256])
def test_bad_namespace_names(engine: isolde.Engine, namespace: str) -> None:
    with pytest.raises(isolde.IsoldeError, match="namespace"):
        engine.run(ECHO, namespace=namespace)


# -- the result -------------------------------------------------------------------------------------


def test_result_of_a_successful_run(engine: isolde.Engine) -> None:
    res = engine.run(LOGS, input={"n": 7}, namespace="ns1")
    assert isinstance(res, isolde.Result)
    assert res.ok and res.status == "complete"
    assert res.output == {"n": 7}
    assert res.error is None
    assert uuid.UUID(res.instance_id)
    assert (res.workflow, res.namespace) == ("logs", "ns1")
    assert res.log == ['"first 7"', '{\n  "n": 7\n}']  # JSON text, as Direktiv logged it


def test_result_of_a_failed_run(engine: isolde.Engine, corpus: Path) -> None:
    res = engine.run(corpus / "v06-v10-knative" / "error.yaml")
    assert not res.ok and res.status == "failed"
    assert res.output is None
    assert isinstance(res.error, isolde.ErrorInfo)
    assert (res.error.code, res.error.message, res.error.state) == ("testcode", "this is a test error", "a")
    assert str(res.error) == "testcode: this is a test error (state 'a')"


def test_instance_ids_are_unique_and_can_be_given(engine: isolde.Engine) -> None:
    ids = {engine.run(ECHO).instance_id for _ in range(20)}
    assert len(ids) == 20
    assert engine.run(ECHO, instance_id="my-id").instance_id == "my-id"


def test_log_sink_gets_instance_state_and_message(tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    with isolde.Engine(data_dir=tmp_path, config={}, log=lambda *line: seen.append(line)) as engine:
        res = engine.run(LOGS, input={"n": 1})
    assert seen == [(res.instance_id, "one", '"first 1"'), (res.instance_id, "two", '{\n  "n": 1\n}')]


# -- input wrapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "data"),
    [
        (None, {}),
        ({"x": 5}, {"x": 5}),
        ({}, {}),
        ([1, 2, 3], {"input": [1, 2, 3]}),
        (0, {"input": 0}),
        (False, {"input": False}),
        ("text", {"input": "text"}),  # a Python str is a JSON string value, not parsed
        ("[1]", {"input": "[1]"}),
        (b'{"x": 5}', {"x": 5}),  # bytes are read as the CLI reads them
        (b"[1, 2]", {"input": [1, 2]}),
        (b"null", {"input": None}),
        (b"Hello, world!", {"input": "SGVsbG8sIHdvcmxkIQ=="}),
        (b"\xff\xfe", {"input": "//4="}),
        (b"", {}),
        (b"  \n", {}),
    ],
)
def test_input_wrapping(engine: isolde.Engine, given: Any, data: dict[str, Any]) -> None:
    assert engine.run(ECHO, input=given).output == data


def test_input_dict_is_not_mutated(engine: isolde.Engine) -> None:
    given = {"n": 1, "nested": {"a": [1]}}
    engine.run("id: m\nstates:\n- id: a\n  type: noop\n  transform: '.nested.a += [2] | .n = 2'\n", input=given)
    assert given == {"n": 1, "nested": {"a": [1]}}


# -- engine.variables ---------------------------------------------------------------------------------


def test_variables_by_scope(engine: isolde.Engine) -> None:
    v = engine.variables
    v.set("k", {"a": 1})  # namespace scope by default
    v.set("k", "wf text", scope="workflow", workflow="w1", mime="text/plain")
    v.set("k", [1, 2], scope="instance", instance="i1")
    v.set("k", 5, namespace="other")

    var = v.get("k")
    assert isinstance(var, isolde.store.Variable)
    assert (var.data, var.mime, var.size) == (b'{"a":1}', "application/json", 7)
    assert var.created <= var.updated <= time.time()
    assert v.value("k") == {"a": 1}
    assert v.value("k", scope="workflow", workflow="w1") == "wf text"
    assert v.get("k", scope="workflow", workflow="w1").data == b"wf text"
    assert v.value("k", scope="instance", instance="i1") == [1, 2]
    assert v.value("k", namespace="other") == 5
    assert v.value("k", scope="workflow", workflow="w2") is None
    assert v.get("missing") is None and v.value("missing") is None

    assert [k for k, _ in v.list()] == ["k"]
    assert [k for k, _ in v.list(scope="workflow", workflow="w1")] == ["k"]
    assert list(v) == ["k"]

    v.delete("k")
    assert v.get("k") is None
    assert v.value("k", scope="workflow", workflow="w1") == "wf text"  # other scopes untouched
    v.set("k", None, scope="workflow", workflow="w1")  # None deletes, as in a setter
    assert v.get("k", scope="workflow", workflow="w1") is None


def test_variables_bytes_and_mime_rules(engine: isolde.Engine) -> None:
    v = engine.variables
    v.set("raw", b"\xff\x00")
    assert (v.get("raw").data, v.get("raw").mime) == (b"\xff\x00", "application/octet-stream")
    assert v.value("raw") == "/wA="  # what a getter would see
    v.set("b64", "aGk=", mime="application/octet-stream")
    assert v.get("b64").data == b"hi"
    v.set("zero", 0)
    v.set("empty", "")
    v.set("list", [])
    assert [v.value(k) for k in ("zero", "empty", "list")] == [0, "", []]  # stored, not deleted


def test_variables_seen_by_workflows(engine: isolde.Engine) -> None:
    engine.variables.set("x", 41, scope="workflow", workflow="counter")
    assert engine.run(COUNTER).output == {"var": {"x": 42}}
    assert engine.variables.get("x", scope="workflow", workflow="counter").version == 2


def test_variables_errors(engine: isolde.Engine) -> None:
    v = engine.variables
    with pytest.raises(InvalidKey):
        v.set("bad key", 1)
    with pytest.raises(isolde.store.StoreError):
        v.get("k", scope="global")
    with pytest.raises(isolde.IsoldeError, match="workflow"):
        v.get("k", scope="workflow")
    with pytest.raises(isolde.IsoldeError, match="instance"):
        v.set("k", 1, scope="instance")
    assert engine.namespaces() == []


def test_namespace_and_workflow_listing_and_deletion(engine: isolde.Engine) -> None:
    v = engine.variables
    v.set("a", 1, namespace="foo")
    v.set("b", 1, namespace="foobar")
    v.set("c", 1, scope="workflow", workflow="counter", namespace="foo")
    v.set("d", 1, scope="workflow", workflow="counter2", namespace="foo")
    assert engine.namespaces() == ["foo", "foobar"]
    assert engine.workflows("foo") == ["counter", "counter2"]
    assert engine.delete_workflow("counter", "foo") == 1
    assert engine.workflows("foo") == ["counter2"]
    assert engine.delete_namespace("foo") == 2
    assert engine.namespaces() == ["foobar"]


# -- threads -------------------------------------------------------------------------------------------


def test_eight_threads_on_one_engine(engine: isolde.Engine) -> None:
    errors: list[Any] = []
    per_thread = 40

    def work() -> None:
        for _ in range(per_thread):
            res = engine.run(COUNTER)
            if not res.ok:
                errors.append(res.error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    final = engine.variables.value("x", scope="workflow", workflow="counter")
    assert 1 <= final <= 8 * per_thread


def test_config_as_path(tmp_path: Path) -> None:
    cfg = tmp_path / "conf.toml"
    cfg.write_text('data_dir = "from-config"\n[limits]\nmax_steps = 7\n')
    with isolde.Engine(config=cfg) as engine:
        assert engine.data_dir == tmp_path / "from-config"
        assert engine.config.limit("max_steps") == 7
    with isolde.Engine(data_dir=tmp_path / "explicit", config=cfg) as engine:
        assert engine.data_dir == tmp_path / "explicit"
    with pytest.raises(isolde.ConfigError):
        isolde.Engine(data_dir=tmp_path, config={"limits": {"max_step": 1}})


@pytest.mark.parametrize("namespace", ["", "a/b", "x" * 256])
def test_variables_refuse_namespaces_run_refuses(engine: isolde.Engine, namespace: str) -> None:
    with pytest.raises(isolde.IsoldeError, match="namespace"):
        engine.variables.set("k", 1, namespace=namespace)
    with pytest.raises(isolde.IsoldeError, match="namespace"):
        engine.variables.list(namespace=namespace)
    assert engine.namespaces() == []


def test_non_json_python_input_reaching_a_setter(engine: isolde.Engine) -> None:
    text = "id: x\nstates:\n- id: a\n  type: setter\n  variables:\n  - key: k\n    scope: workflow\n    value: '.a'\n"
    res = engine.run(text, input={"a": {1, 2}})
    assert res.error.code == "direktiv.var.invalidValue"
    assert "not JSON" in res.error.message
    assert engine.variables.list(scope="workflow", workflow="x") == []
    engine.history.flush()
    assert engine.history.get("default", res.instance_id)["input"] == {"a": "<set: not JSON>"}


def test_a_cyclic_python_value_is_refused_as_not_json(engine: isolde.Engine) -> None:
    """Variables are encoded without a cycle check (the fast encoder): a cyclic value from a
    Python caller is refused with the invalid-value error, and nothing is stored."""
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(isolde.IsoldeError, match="not JSON: it refers to itself"):
        engine.variables.set("k", cyclic)
    assert engine.variables.list() == []
