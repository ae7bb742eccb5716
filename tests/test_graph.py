"""``isolde graph``: states and transitions drawn from the schema, in four formats."""

from __future__ import annotations

import json
import xml.dom.minidom
from pathlib import Path

from click.testing import CliRunner

from isolde.cli import main

WF = """
states:
- id: decide
  type: switch
  conditions:
  - condition: 'jq(.x > 1)'
    transition: big
  defaultTransition: small
- id: big
  type: action
  action:
    function: f
  catch:
  - error: 'direktiv.*'
    transition: oops
  transition: done
- id: small
  type: noop
  transition: done
- id: oops
  type: noop
- id: done
  type: noop
functions:
- id: f
  type: http
  url: http://127.0.0.1:9/
"""


def _graph(tmp_path: Path, *args: str) -> str:
    path = tmp_path / "wf.yaml"
    path.write_text(WF)
    result = CliRunner().invoke(main, ["graph", str(path), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_edges_come_from_every_stateid_field(tmp_path: Path) -> None:
    g = json.loads(_graph(tmp_path, "--format", "json"))
    assert g["start"] == "decide"
    assert [s["id"] for s in g["states"]] == ["decide", "big", "small", "oops", "done"]
    edges = {(e["from"], e["to"], e["kind"], e["label"]) for e in g["edges"]}
    assert edges == {
        ("decide", "big", "next", "conditions[0]"),
        ("decide", "small", "default", "default"),
        ("big", "oops", "catch", "catch direktiv.*"),
        ("big", "done", "next", ""),
        ("small", "done", "next", ""),
    }


def test_mermaid_and_dot_mark_catch_and_default_edges(tmp_path: Path) -> None:
    mermaid = _graph(tmp_path)
    assert mermaid.startswith("flowchart TD") and "-.->|catch direktiv.*|" in mermaid and "==>|default|" in mermaid
    dot = _graph(tmp_path, "-f", "dot")
    assert dot.startswith("digraph workflow") and "style=dashed" in dot and "style=bold" in dot


def test_svg_is_a_standalone_picture(tmp_path: Path) -> None:
    svg = _graph(tmp_path, "-f", "svg")
    doc = xml.dom.minidom.parseString(svg)
    assert doc.documentElement.tagName == "svg"
    assert len([g for g in doc.getElementsByTagName("g") if g.getAttribute("class") == "state"]) == 5


def test_an_invalid_workflow_is_reported_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("states:\n- id: a\n  type: noop\n  transition: nowhere\n")
    result = CliRunner().invoke(main, ["graph", str(path)])
    assert result.exit_code == 2
    assert "bad.yaml:4:15: state 'a': transition to unknown state 'nowhere'" in result.output
