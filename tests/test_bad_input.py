"""Bad input of every kind (SPEC §2.3, §7; issue 2 "Done when").

Each case must end in one of two ways: a clear diagnostic located at the YAML
node (``FILE:LINE:COL: state 'ID': message``, exit code 2, nothing run), or a
catchable ``direktiv.*`` / ``isolde``-coded failure of the instance (exit code 1)
that left nothing half-written in the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde
from conftest import Cli

LIMITS = {"jq_timeout": 0.5, "max_steps": 200, "max_variable_bytes": 1000, "max_input_bytes": 1000}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[isolde.Engine]:
    """An engine with small limits, so every limit can be hit quickly."""
    with isolde.Engine(data_dir=tmp_path / "limited", config={"limits": dict(LIMITS)}) as eng:
        yield eng


def diagnostics(engine: isolde.Engine, text: str) -> list[str]:
    return [str(d) for d in engine.validate(text)]


def one(engine: isolde.Engine, text: str) -> str:
    found = diagnostics(engine, text)
    assert len(found) == 1, found
    return found[0]


def nothing_stored(engine: isolde.Engine) -> bool:
    return engine.namespaces() == []


# -- documents that do not parse or do not fit the schema -------------------------------------


def test_malformed_yaml_is_located(validator: isolde.Engine) -> None:
    text = "id: m\nstates:\n- id: a\n  type: noop\n   transform: x\n"
    line = one(validator, text)
    assert line.startswith("<string>:5:13: YAML syntax error: mapping values are not allowed")


def test_tab_indentation_is_located(validator: isolde.Engine) -> None:
    assert one(validator, "id: m\nstates:\n\t- id: a\n").startswith("<string>:3:1: YAML syntax error")


def test_not_utf8(validator: isolde.Engine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: caf\xe9\nstates: []\n".encode("latin-1"))
    [d] = validator.validate(path)
    assert "not UTF-8" in d.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "<string>:1:1: a workflow must be a YAML mapping with a 'states' list, got a list"),
        ("id: x\n", "<string>:1:1: missing required field 'states' in workflow"),
        ("id: x\nstates: []\n", "<string>:2:9: a workflow needs at least one state"),
        ("id: x\nstates:\n- id: a\n", "<string>:3:3: state 'a': missing required field 'type' in state"),
        ("id: x\nstates:\n- type: noop\n", "<string>:3:3: state '#1': missing required field 'id'"),
    ],
)
def test_wrong_shape(validator: isolde.Engine, text: str, expected: str) -> None:
    assert one(validator, text).startswith(expected)


def test_unknown_field_with_did_you_mean(validator: isolde.Engine) -> None:
    text = "id: u\nstates:\n- id: a\n  type: noop\n  transfrom: '.'\n"
    assert one(validator, text) == (
        "<string>:5:3: state 'a': unknown field 'transfrom' in state type 'noop' (did you mean 'transform'?)"
    )


def test_unknown_top_level_field_with_did_you_mean(validator: isolde.Engine) -> None:
    text = "id: u\ndescrption: x\nstates:\n- id: a\n  type: noop\n"
    assert one(validator, text) == "<string>:2:1: unknown field 'descrption' in workflow (did you mean 'description'?)"


def test_unknown_field_of_a_nested_struct(validator: isolde.Engine) -> None:
    text = "id: u\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: x\n    scope: workflow\n    ass: y\n"
    line = one(validator, text)
    assert line.startswith("<string>:8:5: state 'a': unknown field 'ass' in getvar (did you mean 'as'?)")


def test_unknown_state_type_with_did_you_mean_and_the_list(validator: isolde.Engine) -> None:
    line = one(validator, "id: u\nstates:\n- id: a\n  type: settr\n")
    assert line.startswith("<string>:4:9: state 'a': unknown state type 'settr' (did you mean 'setter'?); available: ")
    available = line.split("available: ")[1]
    for name in ("error", "getter", "noop", "setter", "switch"):
        assert name in available
    assert "isolde plugins" in line


def test_every_problem_is_reported_in_line_order(validator: isolde.Engine) -> None:
    text = (
        "id: many\nstates:\n- id: a\n  type: noop\n  transfrom: '.'\n  transition: c\n"
        "- id: b\n  type: getter\n  variables:\n  - key: 1x\n    scope: global\n"
    )
    found = diagnostics(validator, text)
    assert [f.split(": state")[0] for f in found] == ["<string>:5:3", "<string>:6:15", "<string>:10:10", "<string>:11:12"]


def test_dangling_transition(validator: isolde.Engine) -> None:
    text = "id: d\nstates:\n- id: a\n  type: noop\n  transition: bb\n- id: b\n  type: noop\n"
    assert one(validator, text) == "<string>:5:15: state 'a': transition to unknown state 'bb' (did you mean 'b'?)"


def test_dangling_switch_and_catch_transitions(validator: isolde.Engine) -> None:
    text = (
        "id: d\nstates:\n- id: a\n  type: switch\n  conditions:\n  - condition: '.x'\n    transition: nowhere\n"
        "  defaultTransition: elsewhere\n  catch:\n  - error: '*'\n    transition: gone\n"
    )
    found = diagnostics(validator, text)
    assert [f.split(": ", 1)[0] for f in found] == ["<string>:7:17", "<string>:8:22", "<string>:11:17"]
    assert all("state 'a': transition to unknown state" in f for f in found)


def test_unknown_start_state(validator: isolde.Engine) -> None:
    line = one(validator, "id: d\nstart:\n  state: zz\nstates:\n- id: a\n  type: noop\n")
    assert line.startswith("<string>:3:10: ") and "start state 'zz' does not exist" in line


def test_duplicate_state_ids(validator: isolde.Engine) -> None:
    text = "id: dup\nstates:\n- id: a\n  type: noop\n- id: a\n  type: noop\n"
    assert one(validator, text) == "<string>:5:7: state 'a': duplicate state id 'a' (ids must be unique)"


def test_duplicate_yaml_keys(validator: isolde.Engine) -> None:
    line = one(validator, "id: dup\nstates:\n- id: a\n  type: noop\n  type: getter\n")
    assert line.startswith("<string>:5:3: duplicate key 'type'")


# -- jq at validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        # raw-jq document: the string is the program; '}' is 8 characters in, after the quote at col 14.
        ("'{a: .x +}'", "<string>:5:23: state 'a': invalid jq: syntax error, unexpected '}'"),
        # structured document: the column counts through 'jq(' to the same '}'.
        ("'jq({a: .x +})'", "<string>:5:26: state 'a': invalid jq: syntax error, unexpected '}'"),
        ("'jq(.a'", "<string>:5:15: state 'a': invalid jq: unbalanced jq(...)"),
    ],
)
def test_invalid_jq_points_inside_the_string(validator: isolde.Engine, field: str, expected: str) -> None:
    head = "id: j\n" if "jq(" not in field else "description: structured\n"
    text = f"{head}states:\n- id: a\n  type: noop\n  transform: {field}\n"
    assert one(validator, text).startswith(expected)


def test_invalid_jq_inside_an_interpolated_string(validator: isolde.Engine) -> None:
    text = "states:\n- id: a\n  type: noop\n  transform:\n    msg: 'hello jq(.name | ) there'\n"
    line = one(validator, text)
    assert line.startswith("<string>:5:") and "invalid jq" in line
    assert int(line.split(":")[2]) > 10 + len("'hello jq(")  # inside the program, past its start


@pytest.mark.parametrize(
    ("program", "word"),
    [
        ("env.HOME", "env"),
        ("{a: $ENV.PATH}", "$ENV"),
        ("{a: input}", "input"),
        ("[inputs]", "inputs"),
        ('{a: ("x" | debug)}', "debug"),
        ('import "foo" as foo; .', "import"),
    ],
)
def test_jq_cannot_read_the_environment_or_files(validator: isolde.Engine, program: str, word: str) -> None:
    text = f"id: j\nstates:\n- id: a\n  type: noop\n  transform: '{program}'\n"
    line = one(validator, text)
    assert line.startswith("<string>:5:")
    assert f"'{word}' is not allowed in isolde jq programs" in line


def test_env_as_data_is_fine(engine: isolde.Engine) -> None:
    text = "id: j\nstates:\n- id: a\n  type: noop\n  transform: '{env: .env, \"input\": \"env\"}'\n"
    res = engine.run(text, input={"env": 1})
    assert res.output == {"env": 1, "input": "env"}


def test_jq_env_in_every_jq_field(validator: isolde.Engine) -> None:
    text = (
        "states:\n- id: a\n  type: setter\n  log: 'jq(env)'\n  variables:\n  - key: x\n    scope: workflow\n"
        "    value: 'jq($ENV)'\n  transition: b\n- id: b\n  type: switch\n  conditions:\n"
        "  - condition: 'jq(input)'\n"
    )
    found = diagnostics(validator, text)
    assert [f.split(": state")[0] for f in found] == ["<string>:4:12", "<string>:8:16", "<string>:13:20"]  # at the word


def test_js_expressions_are_rejected(validator: isolde.Engine) -> None:
    text = "states:\n- id: a\n  type: noop\n  transform: 'js(return {a: 1})'\n"
    line = one(validator, text)
    assert line.startswith("<string>:4:15: state 'a': js(...)")
    assert "jq(...)" in line


def test_literal_non_object_transform_is_rejected_in_structured_documents(validator: isolde.Engine) -> None:
    text = "states:\n- id: a\n  type: noop\n  transform: 'just text'\n"
    line = one(validator, text)
    assert line.startswith("<string>:4:14: state 'a': transform must produce an object")
    assert "jq(...)" in line  # the hint for a raw-jq habit


# -- keys and scopes --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["1bad", "bad-", "with space", "a/b", "x" * 256])
def test_bad_key_at_validation(validator: isolde.Engine, key: str) -> None:
    text = f"id: k\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: '{key}'\n    scope: workflow\n"
    line = one(validator, text)
    assert line.startswith("<string>:6:10: state 'a': invalid variable key")


def test_bad_scope_with_did_you_mean(validator: isolde.Engine) -> None:
    text = "id: k\nstates:\n- id: a\n  type: setter\n  variables:\n  - key: x\n    scope: workflw\n    value: 1\n"
    assert one(validator, text) == (
        "<string>:7:12: state 'a': invalid scope \"workflw\": use one of instance, workflow, namespace"
        " (did you mean 'workflow'?)"
    )


def test_missing_scope(validator: isolde.Engine) -> None:
    text = "id: k\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: x\n"
    assert "missing required field 'scope'" in one(validator, text)


COMPUTED_KEY = """\
states:
- id: a
  type: setter
  variables:
  - key: first
    scope: workflow
    value: 1
  - key: 'jq(.k)'
    scope: workflow
    value: 2
  catch:
  - error: direktiv.var.*
    transition: caught
- id: caught
  type: noop
"""


@pytest.mark.parametrize("computed", ["9bad", 17, None, ""])
def test_computed_invalid_key_is_catchable_and_stores_neither(engine: isolde.Engine, computed: Any) -> None:
    res = engine.run(COMPUTED_KEY, input={"k": computed}, workflow_id="ck")
    assert res.ok
    assert res.output["error"]["code"] == "direktiv.var.invalidKey"
    assert engine.variables.list(scope="workflow", workflow="ck") == []


def test_computed_key_ok_stores_both(engine: isolde.Engine) -> None:
    res = engine.run(COMPUTED_KEY, input={"k": "second"}, workflow_id="ck")
    assert res.ok and "error" not in res.output
    assert [k for k, _ in engine.variables.list(scope="workflow", workflow="ck")] == ["first", "second"]


def test_setter_second_variable_bad_base64_stores_neither(engine: isolde.Engine) -> None:
    text = (
        "states:\n- id: a\n  type: setter\n  variables:\n  - key: first\n    scope: namespace\n    value: 1\n"
        "  - key: second\n    scope: namespace\n    value: 'not base64!'\n    mimeType: application/octet-stream\n"
    )
    res = engine.run(text)
    assert res.status == "failed"
    assert res.error.code == "direktiv.var.invalidValue"
    assert "base64" in res.error.message
    assert nothing_stored(engine)


def test_setter_whose_transform_fails_stores_nothing(engine: isolde.Engine) -> None:
    text = (
        "id: s\nstates:\n- id: a\n  type: setter\n  variables:\n  - key: x\n    scope: workflow\n"
        "    value: 1\n  transform: '5'\n"
    )
    res = engine.run(text)
    assert res.error.code == "direktiv.jq.notObject"
    assert nothing_stored(engine)


def test_failure_keeps_what_earlier_states_committed(engine: isolde.Engine) -> None:
    text = (
        "id: s\nstates:\n- id: a\n  type: setter\n  variables:\n  - key: x\n    scope: workflow\n"
        "    value: 1\n  transition: b\n- id: b\n  type: setter\n  variables:\n  - key: y\n    scope: workflow\n"
        "    value: 2\n  transform: '.missing.deeper'\n"
    )
    res = engine.run(text, input={"missing": 3})
    assert res.error.code == "direktiv.jq.badCommand"
    assert res.error.state == "b"
    assert engine.variables.value("x", scope="workflow", workflow="s") == 1
    assert engine.variables.get("y", scope="workflow", workflow="s") is None


# -- transforms at run time -------------------------------------------------------------------

NOT_OBJECT = """\
id: n
states:
- id: a
  type: noop
  transform: '.value'
"""


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "null"), (3, "a number"), ("s", "a string"), ([1], "an array"), (True, "a boolean")],
)
def test_transform_yielding_a_non_object(engine: isolde.Engine, value: Any, kind: str) -> None:
    res = engine.run(NOT_OBJECT, input={"value": value})
    assert res.status == "failed"
    assert res.error.code == "direktiv.jq.notObject"
    assert res.error.message == f"transform must produce an object, got {kind}"
    assert res.error.state == "a"


def test_not_object_is_catchable(engine: isolde.Engine) -> None:
    text = NOT_OBJECT + "  catch:\n  - error: direktiv.jq.*\n    transition: b\n- id: b\n  type: noop\n"
    res = engine.run(text, input={"value": 1, "keep": True})
    assert res.ok
    assert res.output == {
        "value": 1,
        "keep": True,
        "error": {"code": "direktiv.jq.notObject", "msg": "transform must produce an object, got a number"},
    }


def test_catch_globs_are_tried_in_order(engine: isolde.Engine) -> None:
    text = NOT_OBJECT + (
        "  catch:\n  - error: direktiv.var.*\n    transition: wrong\n  - error: 'direktiv.jq.*'\n    transition: right\n"
        "  - error: '*'\n    transition: wrong\n"
        "- id: wrong\n  type: noop\n  transform: '{went: \"wrong\"}'\n- id: right\n  type: noop\n  transform: '{went: \"right\"}'\n"
    )
    assert engine.run(text).output == {"went": "right"}


def test_uncaught_not_object_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "n.yaml").write_text(NOT_OBJECT)
    res = cli("run", str(tmp_path / "n.yaml"), "--input", '{"value": 1}')
    assert res.code == 1 and res.stdout == ""
    assert "state 'a': direktiv.jq.notObject: transform must produce an object, got a number" in res.stderr


def test_transform_with_several_results_is_not_object(engine: isolde.Engine) -> None:
    text = "id: m\nstates:\n- id: a\n  type: noop\n  transform: '.[]'\n"
    res = engine.run(text, input={"a": {}, "b": {}})
    assert res.error.code == "direktiv.jq.notObject"  # SPEC 2.2: exactly one object
    assert "2 results" in res.error.message


def test_jq_runtime_error_is_bad_command(engine: isolde.Engine) -> None:
    text = "id: m\nstates:\n- id: a\n  type: noop\n  transform: '.a.b'\n"
    res = engine.run(text, input={"a": 5})
    assert res.error.code == "direktiv.jq.badCommand"
    assert "Cannot index number" in res.error.message


# -- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["def f: f; f", "[range(1e12)] | {}", "{a: last(repeat(1))}"])
def test_runaway_jq_hits_the_configured_timeout(limited: isolde.Engine, program: str) -> None:
    text = f"id: r\nstates:\n- id: a\n  type: noop\n  transform: '{program}'\n"
    start = time.monotonic()
    res = limited.run(text)
    elapsed = time.monotonic() - start
    # the program never ends: failing with the limit's code is the proof the limit fired
    assert res.status == "failed"
    assert res.error.code == "direktiv.limits.jq"
    assert "jq_timeout" in res.error.message
    assert elapsed >= 0.4  # not before the configured limit (a lower bound: load cannot break it)
    ok = limited.run("id: ok\nstates:\n- id: a\n  type: noop\n  transform: '{fine: true}'\n")
    assert ok.output == {"fine": True}  # the engine is still healthy


def test_runaway_jq_is_catchable(limited: isolde.Engine) -> None:
    text = (
        "id: r\nstates:\n- id: a\n  type: noop\n  transform: 'def f: f; f'\n  catch:\n  - error: direktiv.limits.*\n"
        "    transition: b\n- id: b\n  type: noop\n"
    )
    res = limited.run(text)
    assert res.ok and res.output["error"]["code"] == "direktiv.limits.jq"


def test_runaway_jq_through_the_cli_with_jq_timeout(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "isolde.toml").write_text("[limits]\njq_timeout = 0.5\n")
    (tmp_path / "r.yaml").write_text("id: r\nstates:\n- id: a\n  type: noop\n  transform: 'def f: f; f'\n")
    res = cli("run", str(tmp_path / "r.yaml"))  # never ends unless the limit fires
    assert res.code == 1
    assert "direktiv.limits.jq" in res.stderr and "0.5 s" in res.stderr


def test_infinite_switch_loop_hits_max_steps_and_is_not_catchable(limited: isolde.Engine) -> None:
    text = (
        "id: loop\nstates:\n- id: a\n  type: switch\n  conditions:\n  - condition: 'true'\n    transition: a\n"
        "  catch:\n  - error: '*'\n    transition: b\n- id: b\n  type: noop\n"
    )
    res = limited.run(text)
    assert res.status == "failed"
    assert res.error.code == "direktiv.limits.steps"
    assert "max_steps" in res.error.message and "200" in res.error.message


def test_variable_over_the_size_limit(limited: isolde.Engine) -> None:
    text = (
        "id: v\nstates:\n- id: a\n  type: setter\n  variables:\n  - key: small\n    scope: workflow\n    value: 1\n"
        "  - key: big\n    scope: workflow\n    value: '\"x\" * 2000'\n"
    )
    res = limited.run(text)
    assert res.error.code == "direktiv.limits.variable"
    assert "max_variable_bytes" in res.error.message
    assert nothing_stored(limited)


def test_input_over_the_size_limit(limited: isolde.Engine) -> None:
    with pytest.raises(isolde.IsoldeError, match="max_input_bytes"):
        limited.run("id: i\nstates:\n- id: a\n  type: noop\n", input=b"x" * 2000)


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("id: bomb\nstates:\n- id: a\n  type: noop\n")
    return "\n".join(lines)


def test_alias_bomb_is_refused_fast(validator: isolde.Engine) -> None:
    [d] = validator.validate(alias_bomb())  # ~3.5e9 nodes if expanded: returning at all is the proof
    assert "max_yaml_nodes" in d.message
    assert (d.line, d.col) > (1, 1)


def test_small_aliases_are_fine(validator: isolde.Engine) -> None:
    text = "id: al\nx: &v {k: 1}\nstates:\n- id: a\n  type: noop\n  transform: '{k: 1}'\n"
    assert diagnostics(validator, text) == ["<string>:2:1: unknown field 'x' in workflow"]
    text = "id: al\nstates:\n- id: a\n  type: noop\n  metadata: &m {k: 1}\n- id: b\n  type: noop\n  metadata: *m\n"
    assert diagnostics(validator, text) == []


def test_oversized_yaml_is_refused(validator: isolde.Engine, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("id: big\nstates:\n- id: a\n  type: noop\n# " + "x" * (1 << 20) + "\n")
    [d] = validator.validate(path)
    assert (d.line, d.col) == (1, 1)
    assert "max_yaml_bytes" in d.message
    with isolde.Engine(data_dir=tmp_path / "d", config={"limits": {"max_yaml_bytes": 2 << 20}}) as roomy:
        assert roomy.validate(path) == []


def test_deep_nesting_is_refused(validator: isolde.Engine) -> None:
    text = "id: deep\nstates:\n- id: a\n  type: noop\n  metadata: " + "[" * 300 + "]" * 300 + "\n"
    [line] = diagnostics(validator, text)
    assert "deeper than" in line


# -- exit codes through the CLI, and nothing stored ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("malformed", "id: m\nstates:\n- id: a\n  type: noop\n   transform: x\n", ":5:13: YAML syntax error"),
        ("unknownfield", "id: u\nstates:\n- id: a\n  type: noop\n  transfrom: '.'\n", "did you mean 'transform'"),
        ("badjq", "id: j\nstates:\n- id: a\n  type: noop\n  transform: '{a: .x +}'\n", ":5:23: state 'a': invalid jq"),
        ("env", "id: e\nstates:\n- id: a\n  type: noop\n  transform: 'env'\n", "'env' is not allowed"),
    ],
    ids=["malformed", "unknownfield", "badjq", "env"],
)
def test_invalid_workflows_exit_2_and_store_nothing(cli: Cli, tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    res = cli("run", str(path))
    assert res.code == 2 and res.stdout == ""
    assert needle in res.stderr
    assert str(path) in res.stderr
    assert "Traceback" not in res.stderr
    assert cli("namespaces", "list").stdout == ""


def test_alias_bomb_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    res = cli("validate", str(tmp_path / "bomb.yaml"))
    assert res.code == 2 and "max_yaml_nodes" in res.stderr


@pytest.mark.parametrize("program", ["empty", "{a: 1}, {b: 2}"])
def test_transform_with_no_or_several_results_is_not_object(engine: isolde.Engine, program: str) -> None:
    wf = f"id: t\nstates:\n- id: a\n  type: noop\n  transform: '{program}'\n"
    res = engine.run(wf)
    assert res.error is not None and res.error.code == "direktiv.jq.notObject"


def test_nan_and_deep_json_are_not_json(engine: isolde.Engine, cli: Any, tmp_path: Path) -> None:
    assert engine.run("id: t\nstates:\n- id: a\n  type: noop\n", b"NaN").output == {"input": "TmFO"}
    deep = b"[" * 100_000 + b"]" * 100_000
    res = engine.run("id: t\nstates:\n- id: a\n  type: noop\n", deep)
    assert res.ok and res.output["input"].startswith("W1tb")  # passed on as bytes, base64
    (tmp_path / "deep.json").write_bytes(deep)
    out = cli("vars", "set", "deep", "-f", str(tmp_path / "deep.json"))
    assert out.code == 0, out.stderr
    getter = tmp_path / "g.yaml"
    getter.write_text("id: g\nstates:\n- id: a\n  type: getter\n  variables:\n  - key: deep\n    scope: namespace\n")
    got = cli("run", "-q", str(getter))
    assert got.code == 0 and "Traceback" not in got.stderr
    assert isinstance(got.json["var"]["deep"], str)  # too deep for JSON: read as text


def test_state_data_that_keeps_growing_hits_the_data_cap(data_dir: Path) -> None:
    wf = (
        "id: grow\nstates:\n- id: a\n  type: noop\n  transform: '{a: [.a, .a]}'\n  transition: a\n"
    )
    with isolde.Engine(data_dir=data_dir, config={"limits": {"max_data_bytes": 100_000}}) as engine:
        res = engine.run(wf, {"a": "x"})  # doubles at every step: only the cap ends it
    assert res.error is not None and res.error.code == "direktiv.limits.data"
    assert "max_data_bytes" in res.error.message
