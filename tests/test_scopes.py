"""Variable scopes and their lifetimes, through the CLI (SPEC §3, issue 2 "Done when").

Every step is a separate ``isolde`` process on one data directory, so what a
later step sees was persisted by an earlier one.  Deletion must be exact: the
store keys scopes by name, so ``counter`` must never take ``counter2`` with it,
nor ``foo`` take ``foobar``.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Cli

INCREMENT = """\
id: {id}
states:
- id: get
  type: getter
  variables:
  - key: n
    scope: {scope}
  transform: '.var.n += 1'
  transition: set
- id: set
  type: setter
  variables:
  - key: n
    scope: {scope}
    value: '.var.n'
"""

INSTANCE_ONLY = """\
id: scratch
states:
- id: put
  type: setter
  variables:
  - key: tmp
    scope: instance
    value: '"scratch value"'
  transition: read
- id: read
  type: getter
  variables:
  - key: tmp
    scope: instance
  transition: {after}
- id: done
  type: noop
- id: boom
  type: error
  error: test.boom
  message: '"failing after writing an instance variable"'
"""


def make(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


def counter(tmp_path: Path, wid: str, scope: str) -> str:
    return make(tmp_path, f"{wid}-{scope}", INCREMENT.format(id=wid, scope=scope))


def value(cli: Cli, key: str, *where: str) -> str | None:
    res = cli("vars", "get", key, *where)
    if res.code == 1:
        return None
    assert res.code == 0, res.stderr
    return res.stdout


def test_instance_variables_are_gone_after_a_successful_run(cli: Cli, tmp_path: Path) -> None:
    wf = make(tmp_path, "scratch", INSTANCE_ONLY.format(after="done"))
    res = cli("run", wf, "-n", "inst")
    assert res.code == 0, res.stderr
    assert res.json == {"var": {"tmp": "scratch value"}}  # it existed during the run
    # The run wrote nothing else, so a namespace with any variable left would be listed.
    assert "inst" not in cli("namespaces", "list").stdout.split()
    second = cli("run", wf, "-n", "inst")
    assert second.json == {"var": {"tmp": "scratch value"}}


def test_instance_variables_are_gone_after_a_failed_run(cli: Cli, tmp_path: Path) -> None:
    wf = make(tmp_path, "scratch", INSTANCE_ONLY.format(after="boom"))
    res = cli("run", wf, "-n", "inst")
    assert res.code == 1
    assert "test.boom" in res.stderr
    match = re.search(r"instance (\S+) failed", res.stderr)
    assert match, res.stderr
    listed = cli("vars", "list", "-n", "inst", "--instance", match.group(1))
    assert listed.code == 0 and listed.stdout == ""
    assert "inst" not in cli("namespaces", "list").stdout.split()


def test_instance_variables_are_not_shared_between_runs(cli: Cli, tmp_path: Path) -> None:
    wf = counter(tmp_path, "inst-counter", "instance")
    for _ in range(2):
        res = cli("run", wf)
        assert res.json == {"var": {"n": 1}}
    assert cli("namespaces", "list").stdout == ""


def test_workflow_variables_are_shared_by_runs_of_one_workflow_only(cli: Cli, tmp_path: Path) -> None:
    one, two = counter(tmp_path, "counter", "workflow"), counter(tmp_path, "counter2", "workflow")
    assert [cli("run", one).json["var"]["n"] for _ in range(3)] == [1, 2, 3]
    assert cli("run", two).json == {"var": {"n": 1}}
    assert cli("run", one, "-n", "elsewhere").json == {"var": {"n": 1}}  # same id, other namespace
    assert value(cli, "n", "-w", "counter") == "3"
    assert value(cli, "n", "-w", "counter2") == "1"
    assert value(cli, "n", "-w", "counter", "-n", "elsewhere") == "1"
    assert value(cli, "n") is None  # nothing leaked into namespace scope


def test_namespace_variables_are_shared_inside_a_namespace_and_invisible_outside(cli: Cli, tmp_path: Path) -> None:
    a, b = counter(tmp_path, "first", "namespace"), counter(tmp_path, "second", "namespace")
    assert cli("run", a, "-n", "foo").json == {"var": {"n": 1}}
    assert cli("run", b, "-n", "foo").json == {"var": {"n": 2}}  # another workflow, same namespace
    assert cli("run", a, "-n", "foobar").json == {"var": {"n": 1}}
    assert cli("run", a).json == {"var": {"n": 1}}  # the default namespace
    assert value(cli, "n", "-n", "foo") == "2"
    assert value(cli, "n", "-n", "foobar") == "1"
    assert value(cli, "n", "-n", "fo") is None


def test_deleting_workflow_counter_keeps_counter2_and_everything_else(cli: Cli, tmp_path: Path) -> None:
    one, two = counter(tmp_path, "counter", "workflow"), counter(tmp_path, "counter2", "workflow")
    cli("run", one)
    cli("run", one)
    cli("run", two)
    cli("run", one, "-n", "other")
    cli("vars", "set", "keep", "1")  # namespace scope of the same namespace
    cli("vars", "set", "extra", "1", "-w", "counter")

    res = cli("workflows", "delete", "counter")
    assert res.code == 0
    assert "2 variable(s)" in res.stderr
    assert cli("vars", "list", "-w", "counter").stdout == ""
    assert value(cli, "n", "-w", "counter2") == "1"
    assert value(cli, "n", "-w", "counter", "-n", "other") == "1"
    assert value(cli, "keep") == "1"
    assert cli("workflows", "list").stdout.split() == ["counter2"]
    assert cli("run", one).json == {"var": {"n": 1}}  # starts over


def test_deleting_namespace_foo_keeps_foobar(cli: Cli, tmp_path: Path) -> None:
    ns_counter, wf_counter = counter(tmp_path, "nsc", "namespace"), counter(tmp_path, "wfc", "workflow")
    for ns in ("foo", "foobar", "fo"):
        cli("run", ns_counter, "-n", ns)
        cli("run", wf_counter, "-n", ns)
    assert cli("namespaces", "list").stdout.split() == ["fo", "foo", "foobar"]

    res = cli("namespaces", "delete", "foo")
    assert res.code == 0 and "2 variable(s)" in res.stderr
    assert cli("namespaces", "list").stdout.split() == ["fo", "foobar"]
    for ns in ("foobar", "fo"):
        assert value(cli, "n", "-n", ns) == "1"
        assert value(cli, "n", "-n", ns, "-w", "wfc") == "1"
    assert value(cli, "n", "-n", "foo") is None
    assert cli("run", ns_counter, "-n", "foo").json == {"var": {"n": 1}}
