"""The ``delay`` and ``validate`` states, through ``isolde.Engine``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import isolde
from helpers import in_thread, wait_until


def messages(engine: isolde.Engine, text: str) -> list[str]:
    return [d.message for d in engine.validate(text)]


# -- delay ---------------------------------------------------------------------------------

DELAY = """
states:
- id: wait
  type: delay
  duration: PT0.1S
  transform:
    waited: true
    x: jq(.x)
"""


def test_delay_waits_then_continues(engine: isolde.Engine) -> None:
    t0 = time.monotonic()
    result = engine.run(DELAY, input={"x": 1})
    assert result.ok, result.error
    assert time.monotonic() - t0 >= 0.1
    assert result.output == {"waited": True, "x": 1}


def test_delay_is_cancelled_when_the_engine_closes(data_dir: Path) -> None:
    wf = """
states:
- id: wait
  type: delay
  duration: PT1H
  catch:
  - error: "*"
    transition: caught
  transition: after
- id: after
  type: noop
- id: caught
  type: noop
"""
    engine = isolde.Engine(data_dir=data_dir, config={})
    try:
        t, out = in_thread(lambda: engine.run(wf, namespace="ns1"))
        wait_until(lambda: engine.events.waiting("ns1") != [])
    finally:
        engine.close()
    t.join(120)  # a hang guard only: the delay would take an hour
    assert not t.is_alive()
    result = out[0]
    assert not result.ok
    # not catchable: a closing engine runs no handlers
    assert result.error.code == "isolde.cancelled"
    assert result.error.state == "wait"
    assert "closing" in result.error.message


def test_delay_can_be_interrupted_for_one_instance(engine: isolde.Engine) -> None:
    wf = "states:\n- id: wait\n  type: delay\n  duration: PT1M\n"
    t, out = in_thread(lambda: engine.run(wf, namespace="ns2", instance_id="i-1"))
    wait_until(lambda: engine.events.waiting("ns2") != [])
    assert engine.events.interrupt("i-2") == 0
    assert engine.events.interrupt("i-1", "cancelled by the operator") == 1
    t.join(60)
    assert out[0].error.code == "isolde.cancelled"
    assert out[0].error.message == "cancelled by the operator"


@pytest.mark.parametrize("duration", ["1S", "P", "PT", "soon", 5])
def test_delay_duration_must_be_iso8601(validator: isolde.Engine, duration: Any) -> None:
    wf = yaml.safe_dump({"states": [{"id": "w", "type": "delay", "duration": duration}]}, sort_keys=False)
    problems = validator.validate(wf)
    assert len(problems) == 1
    assert "invalid ISO-8601 duration" in problems[0].message
    assert (problems[0].line, problems[0].state) == (4, "w")


def test_delay_requires_duration(validator: isolde.Engine) -> None:
    assert messages(validator, "states:\n- id: w\n  type: delay\n") == [
        "missing required field 'duration' in state type 'delay'"
    ]


# -- validate ---------------------------------------------------------------------------------

PERSON = """
states:
- id: check
  type: validate
  schema:
    type: object
    required: [name]
    properties:
      name: {type: string, minLength: 2}
      age: {type: integer, minimum: 0}
      email: {type: string, format: email}
"""


def test_validate_passes_data_through(engine: isolde.Engine) -> None:
    data = {"name": "Trent", "age": 3, "email": "trent@direktiv.io"}
    result = engine.run(PERSON, input=data)
    assert result.ok, result.error
    assert result.output == data


def test_validate_failure_lists_every_failing_path(engine: isolde.Engine) -> None:
    result = engine.run(PERSON, input={"name": "T", "age": -1, "email": "trent.hilliamdirektiv.io"})
    assert result.error.code == "direktiv.schema.failed"
    msg = result.error.message
    assert msg.startswith("subject failed its JSON Schema validation: ")
    for path in ("$.age:", "$.email:", "$.name:"):
        assert path in msg
    assert msg.index("$.age") < msg.index("$.email") < msg.index("$.name")
    assert "is not a 'email'" in msg


def test_validate_missing_required_field(engine: isolde.Engine) -> None:
    result = engine.run(PERSON, input={})
    assert result.error.code == "direktiv.schema.failed"
    assert "$: 'name' is a required property" in result.error.message


def test_validate_failure_is_catchable(engine: isolde.Engine) -> None:
    wf = PERSON + """  catch:
  - error: direktiv.schema.*
    transition: bad
  transition: good
- id: good
  type: noop
  transform:
    ok: true
- id: bad
  type: noop
  transform:
    code: jq(.error.code)
"""
    assert engine.run(wf, input={"name": "Trent"}).output == {"ok": True}
    assert engine.run(wf, input={"name": 5}).output == {"code": "direktiv.schema.failed"}


def test_validate_subject_selects_what_is_checked(engine: isolde.Engine) -> None:
    wf = """
states:
- id: check
  type: validate
  subject: jq(.order)
  schema:
    type: object
    properties:
      items: {type: array, minItems: 1}
    required: [items]
"""
    assert engine.run(wf, input={"order": {"items": [1]}, "other": "x"}).ok
    result = engine.run(wf, input={"order": {"items": []}})
    assert result.error.code == "direktiv.schema.failed"
    assert "$.items:" in result.error.message


def test_validate_in_a_raw_jq_document(engine: isolde.Engine) -> None:
    wf = """
id: rawvalidate
states:
- id: check
  type: validate
  subject: .n
  schema:
    type: number
    maximum: 10
"""
    assert engine.run(wf, input={"n": 3}).ok
    assert engine.run(wf, input={"n": 30}).error.code == "direktiv.schema.failed"


def test_an_invalid_schema_is_a_located_validation_error(validator: isolde.Engine) -> None:
    wf = """states:
- id: check
  type: validate
  schema:
    type: object
    properties:
      name:
        type: 12
"""
    problems = validator.validate(wf)
    assert len(problems) == 1
    p = problems[0]
    assert (p.line, p.col, p.state) == (8, 15, "check")
    assert p.message.startswith("invalid JSON Schema: 12 is not valid")


def test_schema_refs_must_resolve_inside_the_schema(validator: isolde.Engine) -> None:
    wf = """states:
- id: check
  type: validate
  schema:
    $defs:
      name: {type: string}
    properties:
      a: {$ref: "#/$defs/name"}
      b: {$ref: "#/$defs/missing"}
      c: {$ref: "https://example.com/schema.json"}
"""
    problems = validator.validate(wf)
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (9, "$ref '#/$defs/missing' does not point to anything in this schema"),
        (10, "$ref 'https://example.com/schema.json' points outside this schema"),
    ]


def test_local_refs_and_older_drafts_work(engine: isolde.Engine) -> None:
    draft7_tuple = """states:
- id: check
  type: validate
  schema:
    definitions:
      word: {type: string}
    type: array
    items:
    - {$ref: "#/definitions/word"}
    - {type: integer}
"""
    wf = draft7_tuple.replace("  schema:", "  subject: jq(.input)\n  schema:")
    assert engine.run(wf, input=["a", 1]).ok
    result = engine.run(wf, input=[1, "a"])
    assert result.error.code == "direktiv.schema.failed"
    assert "$[0]:" in result.error.message and "$[1]:" in result.error.message


def test_unknown_schema_dialect_is_reported(validator: isolde.Engine) -> None:
    wf = 'states:\n- id: v\n  type: validate\n  schema:\n    $schema: "https://example.com/mine"\n'
    assert messages(validator, wf)[0].startswith("unknown JSON Schema dialect 'https://example.com/mine'")


def test_corpus_template_error_fails_with_the_schema_code(engine: isolde.Engine, corpus: Path) -> None:
    result = engine.run(corpus / "v04-v06-structured" / "template-error.yaml")
    assert result.status == "failed"
    assert result.error.code == "direktiv.schema.*"
    assert result.error.message == "email '.email' is not valid"
    assert result.error.state == "email-not-valid"


def test_corpus_greeting_validate_state(engine: isolde.Engine, corpus: Path) -> None:
    doc = yaml.safe_load((corpus / "v06-v10-knative" / "greeting.yaml").read_text())
    state = doc["states"][0]
    assert state["type"] == "validate"
    state.pop("transition")
    wf = yaml.safe_dump({"states": [state]})
    assert engine.run(wf, input={"name": "Trent"}).output == {"name": "Trent"}
    result = engine.run(wf, input={"name": 7})
    assert result.error.code == "direktiv.schema.failed"
    assert "$.name: 7 is not of type 'string'" in result.error.message


def test_closing_the_engine_ends_a_waiting_instance_with_a_result(data_dir: Any) -> None:
    """close() wakes a delay, lets the instance clean up its variables, then closes the store."""
    import threading

    wf = """
states:
- id: a
  type: setter
  variables:
  - key: v
    scope: instance
    value: 1
  transition: b
- id: b
  type: delay
  duration: PT1H
"""
    engine = isolde.Engine(data_dir=data_dir, config={})
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("r", engine.run(wf)))
    t.start()
    wait_until(lambda: engine.events.waiting("default") != [])  # in the delay, the variable set
    engine.close()
    t.join(120)  # a hang guard only: the delay would take an hour
    assert not t.is_alive()
    result = out["r"]
    assert result.error is not None and result.error.code == "isolde.cancelled"
    with isolde.Engine(data_dir=data_dir, config={}) as again:
        assert again.variables.list(scope="instance", instance=result.instance_id) == []
