"""The JSON Schema for editors and the language reference come from the declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import isolde
from isolde.registry import BUILTIN_PLUGINS
from isolde.schemagen import json_schema, reference

REPO = Path(__file__).resolve().parents[1]


def _builtin_only(engine: isolde.Engine) -> dict[str, Any]:
    """A config that disables every installed third-party plugin."""
    extra = [p.name for p in engine.registry.plugins if p.name not in BUILTIN_PLUGINS]
    return {"plugins": {"disable": extra}}


@pytest.fixture(scope="module")
def schema(validator: isolde.Engine) -> dict[str, Any]:
    out = json_schema(validator.registry)
    jsonschema.Draft7Validator.check_schema(out)
    return out


def test_schema_accepts_what_isolde_accepts_on_the_corpus(validator: isolde.Engine, schema: dict[str, Any], corpus: Path) -> None:
    checker = jsonschema.Draft7Validator(schema)
    checked = 0
    for path in sorted(corpus.glob("*/*.yaml")):
        if validator.validate(path):
            continue
        doc = yaml.safe_load(path.read_text())
        errors = [e.message for e in checker.iter_errors(doc)]
        assert not errors, f"{path.name}: {errors[:3]}"
        checked += 1
    assert checked >= 10


def test_schema_rejects_unknown_fields_and_types(schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema)
    good = {"states": [{"id": "a", "type": "noop", "transform": {"x": 1}}]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({"states": [{"id": "a", "type": "noop", "transfrom": {}}]}))
    assert list(validator.iter_errors({"states": [{"id": "a", "type": "nope"}]}))
    assert list(validator.iter_errors({"states": [{"id": "a", "type": "getter", "variables": [{"key": "x", "scope": "global"}]}]}))


def test_schema_command_prints_valid_json(cli: Any) -> None:
    out = cli("schema")
    assert out.code == 0, out.stderr
    assert out.json["$schema"].startswith("http://json-schema.org/draft-07")
    assert "state.getter" in out.json["definitions"]


def test_plugin_state_types_appear_in_schema_and_reference(validator: isolde.Engine) -> None:
    names = set(validator.registry.state_types)
    s = json_schema(validator.registry)
    ref = reference(validator.registry)
    for name in names:
        assert f"state.{name}" in s["definitions"]
        assert f"### `{name}`" in ref


def test_committed_reference_is_current(engine: isolde.Engine, data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config=_builtin_only(engine)) as builtin:
        expected = reference(builtin.registry)
    committed = (REPO / "docs" / "reference.md").read_text()
    assert committed == expected, "docs/reference.md is stale: run `isolde reference -o docs/reference.md` with only built-in plugins"
