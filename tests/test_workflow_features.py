"""Workflow-wide features: ``timeouts`` (interrupt / kill), ``singular``, ``scope: file``
getters, and the examples of the language reference — through ``isolde.Engine`` and the CLI."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
import time
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import isolde
from conftest import Cli

# --------------------------------------------------------------------------- timeouts


def slow(data: Any, request: Any) -> dict[str, Any]:
    """An in-process isolate that takes ``seconds`` unless its action is cut off."""
    cut = request.cancelled.wait(float(data.get("seconds", 5)))
    return {"cut": cut}


@pytest.fixture
def eng(data_dir: Path) -> Iterator[isolde.Engine]:
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}}) as engine:
        yield engine


def timed(engine: isolde.Engine, wf: str | Path, **kw: Any) -> tuple[isolde.Result, float]:
    started = time.monotonic()
    res = engine.run(wf, **kw)
    return res, time.monotonic() - started


SOFT_IN_DELAY = """
timeouts:
  interrupt: PT0.2S
states:
- id: wait
  type: delay
  duration: PT60S
"""

# Timeouts are time bounds, so these tests measure time, but only against work that
# would take far longer (LONG): a 0.2 s timeout must end a 60 s wait well before it ends.
LONG = 60
WELL_BEFORE = LONG / 2


def test_interrupt_cuts_a_delay_with_the_soft_code(eng: isolde.Engine) -> None:
    res, took = timed(eng, SOFT_IN_DELAY)
    assert (res.status, res.error.code, res.error.state) == ("failed", "direktiv.cancels.timeout.soft", "wait")
    assert "timeouts.interrupt" in res.error.message
    assert took < WELL_BEFORE


def test_the_soft_timeout_is_catchable_and_the_handler_runs(eng: isolde.Engine) -> None:
    wf = SOFT_IN_DELAY + "  catch:\n  - error: direktiv.cancels.*\n    transition: after\n- id: after\n  type: noop\n  transform: 'jq({handled: .error.code})'\n"
    res, took = timed(eng, wf)
    assert res.ok, res.error
    assert res.output == {"handled": "direktiv.cancels.timeout.soft"}


def test_kill_ends_the_handler_too_and_cannot_be_caught(eng: isolde.Engine) -> None:
    wf = """
timeouts:
  interrupt: PT0.2S
  kill: PT2S
states:
- id: wait
  type: delay
  duration: PT60S
  catch:
  - error: '*'
    transition: cleanup
- id: cleanup
  type: consumeEvent
  timeout: PT60S
  event:
    type: never
  catch:
  - error: '*'
"""
    res, took = timed(eng, wf)
    assert (res.error.code, res.error.state) == ("direktiv.cancels.timeout.hard", "cleanup")
    assert "timeouts.kill" in res.error.message
    assert 2.0 <= took < WELL_BEFORE  # not before the kill, long before the 60 s waits


def test_kill_alone_is_hard_at_once(eng: isolde.Engine) -> None:
    wf = "timeouts:\n  kill: PT0.2S\nstates:\n- id: w\n  type: consumeEvent\n  event:\n    type: never\n  catch:\n  - error: '*'\n"
    res, took = timed(eng, wf)
    assert res.error.code == "direktiv.cancels.timeout.hard" and took < WELL_BEFORE


def test_interrupt_cuts_an_action_short(eng: isolde.Engine) -> None:
    wf = """
timeouts:
  interrupt: PT0.3S
functions:
- id: slow
  type: python
  call: test_workflow_features:slow
states:
- id: call
  type: action
  action:
    function: slow
    input: {seconds: 60}
  catch:
  - error: direktiv.cancels.timeout.soft
"""
    res, took = timed(eng, wf)
    assert res.ok and res.output["error"]["code"] == "direktiv.cancels.timeout.soft"
    assert "timeouts.interrupt" in res.output["error"]["msg"]
    assert took < WELL_BEFORE


def test_a_subflow_call_is_cut_off_by_the_workflow_timeout(eng: isolde.Engine, tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("states:\n- id: nap\n  type: delay\n  duration: PT5S\n")
    (tmp_path / "parent.yaml").write_text("""
timeouts:
  interrupt: PT1S
functions:
- id: child
  type: subflow
  workflow: child.yaml
states:
- id: call
  type: action
  action:
    function: child
  transition: next
  catch:
  - error: direktiv.cancels.timeout.soft
    transition: handled
- id: next
  type: noop
  transform: {never: true}
- id: handled
  type: noop
""")
    res = eng.run(tmp_path / "parent.yaml")
    assert res.ok, res.error
    assert "never" not in res.output and res.output["error"]["code"] == "direktiv.cancels.timeout.soft"
    assert "return" not in res.output  # the subflow was stopped, not waited for


def test_a_workflow_within_its_timeouts_is_untouched(eng: isolde.Engine) -> None:
    wf = "timeouts:\n  interrupt: PT60S\n  kill: PT120S\nstates:\n- id: a\n  type: delay\n  duration: PT0.05S\n  transform: {ok: true}\n"
    for _ in range(3):
        assert eng.run(wf).output == {"ok": True}


def test_timeouts_are_validated(eng: isolde.Engine) -> None:
    wf = "timeouts:\n  interrupt: soon\n  kil: PT1S\nstates:\n- id: a\n  type: noop\n"
    text = [str(d) for d in eng.validate(wf)]
    assert any(t.startswith("<string>:2:14: invalid ISO-8601 duration \"soon\"") for t in text), text
    assert any("unknown field 'kil'" in t and "did you mean 'kill'" in t for t in text), text


def test_cli_reports_the_timeout(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "late.yaml"
    wf.write_text(SOFT_IN_DELAY)
    out = cli("run", str(wf))
    assert out.code == 1
    assert "direktiv.cancels.timeout.soft" in out.stderr and "'wait'" in out.stderr


# --------------------------------------------------------------------------- singular


SINGULAR = "singular: true\nstates:\n- id: hold\n  type: delay\n  duration: PT{seconds}S\n  transform: {{done: true}}\n"


def run_in_thread(engine: isolde.Engine, wf: str | Path, **kw: Any) -> tuple[threading.Thread, list[isolde.Result]]:
    out: list[isolde.Result] = []
    t = threading.Thread(target=lambda: out.append(engine.run(wf, **kw)))
    t.start()
    return t, out


def wait_for(cond: Any, timeout: float = 60) -> None:  # a hang guard, not a measured bound
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# holds its workflow until the test publishes a `release` event (no clock involved)
HOLD_UNTIL_RELEASED = (
    "singular: true\nstates:\n- id: hold\n  type: consumeEvent\n  event:\n    type: release\n"
    "  transform: {done: true}\n"
)


def test_second_instance_of_a_singular_workflow_fails_with_mutex(eng: isolde.Engine) -> None:
    quick = SINGULAR.format(seconds="0")
    t, out = run_in_thread(eng, HOLD_UNTIL_RELEASED, workflow_id="only")
    wait_for(lambda: eng.events.waiting("default"))
    second = eng.run(quick, workflow_id="only")
    assert (second.status, second.error.code) == ("failed", "direktiv.mutex")
    assert "singular" in second.error.message and "'only'" in second.error.message
    assert eng.run(quick, workflow_id="other").ok  # another workflow id is another mutex
    assert eng.run(quick, workflow_id="only", namespace="elsewhere").ok  # and so is another namespace
    eng.events.publish("default", {"type": "release", "source": "test"})
    t.join(60)
    assert out[0].output == {"done": True}
    assert eng.run(quick, workflow_id="only").ok  # free again once the first ended


def test_singular_is_released_when_the_instance_fails(eng: isolde.Engine) -> None:
    wf = "singular: true\nstates:\n- id: bad\n  type: noop\n  transform: 'jq(1)'\n"
    for _ in range(2):
        assert eng.run(wf, workflow_id="failing").error.code == "direktiv.jq.notObject"


def test_singular_holds_across_processes_and_a_killed_holder_frees_it(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    wf = tmp_path / "single.yaml"
    wf.write_text(SINGULAR.format(seconds="600") + "  log: '\"holding\"'\n")
    # a real process: only kill -9 of another process shows the lock is freed by the kernel
    holder = subprocess.Popen([sys.executable, "-m", "isolde.cli", "run", str(wf)], cwd=tmp_path, env=cli.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stderr is not None
        # the state's log line is written once the instance holds the workflow
        for line in holder.stderr:
            if line.startswith(b"[hold] "):
                break
        else:
            raise AssertionError("the CLI ended without taking the lock")
        with isolde.Engine(data_dir=data_dir, config={}) as engine:
            res = engine.run(SINGULAR.format(seconds="0"), workflow_id="single")
            assert res.error is not None and res.error.code == "direktiv.mutex"
            holder.send_signal(signal.SIGKILL)
            holder.wait(60)
            assert engine.run(SINGULAR.format(seconds="0"), workflow_id="single").ok
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
        holder.stdout.close()  # type: ignore[union-attr]
        holder.stderr.close()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- scope: file


FILE_GETTER = """
states:
- id: read
  type: getter
  variables:
  - key: /conf/e.yaml
    scope: file
    as: e
  - key: 'jq(.which)'
    scope: file
    as: computed
  - key: /missing.bin
    scope: file
    as: missing
  - key: x
    scope: namespace
"""


def test_getter_reads_files_of_the_namespace_as_base64(eng: isolde.Engine, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "e.yaml").write_bytes(b"\nstates: []")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    wf = tmp_path / "files.yaml"
    wf.write_text(FILE_GETTER)
    eng.variables.set("x", 42)
    res = eng.run(wf, input={"which": "blob.bin", "var": {"kept": 1}})
    assert res.ok, res.error
    assert res.output["var"] == {
        "kept": 1,
        "e": base64.b64encode(b"\nstates: []").decode(),
        "computed": base64.b64encode(bytes(range(256))).decode(),
        "missing": None,
        "x": 42,
    }


def test_file_paths_cannot_leave_the_namespace(eng: isolde.Engine, tmp_path: Path) -> None:
    ns = tmp_path / "ns"
    ns.mkdir()
    (tmp_path / "secret.txt").write_text("no")
    (ns / "link").symlink_to(tmp_path / "secret.txt")
    wf = ns / "wf.yaml"
    wf.write_text(FILE_GETTER.replace("/conf/e.yaml", "/link"))
    res = eng.run(wf, input={"which": "x"})
    assert res.error.code == "isolde.files.unsafePath" and "leaves the namespace root" in res.error.message
    computed = eng.run(wf, input={"which": "../secret.txt"})
    assert computed.error.code == "isolde.files.unsafePath"


@pytest.mark.parametrize(
    ("item", "where", "text"),
    [
        ("  - key: /e.yaml\n    scope: file\n", "6:5", "scope file needs 'as'"),
        ("  - key: ../e.yaml\n    scope: file\n    as: e\n", "6:10", "invalid file path \"../e.yaml\""),
        ("  - key: /e.yaml\n    scope: namespace\n", "6:10", "invalid variable key '/e.yaml'"),
        ("  - key: e\n    scope: fil\n", "7:12", "did you mean 'file'?"),
        ("  - key: e\n    scope: global\n", "7:12", "invalid scope \"global\": use one of instance, workflow, namespace"),
        ("  - key: /e.yaml\n    scope: file\n    as: e\n    lock: true\n", "9:11", "lock applies to variables, not to files"),
    ],
)
def test_scope_file_validation_is_located(eng: isolde.Engine, item: str, where: str, text: str) -> None:
    wf = "# a getter\nstates:\n- id: read\n  type: getter\n  variables:\n" + item
    diagnostics = [str(d) for d in eng.validate(wf)]
    assert any(d.startswith(f"<string>:{where}: state 'read': ") and text in d for d in diagnostics), diagnostics


def test_setter_keeps_refusing_scope_file(eng: isolde.Engine) -> None:
    wf = "states:\n- id: w\n  type: setter\n  variables:\n  - key: e\n    scope: file\n    value: 1\n"
    [d] = eng.validate(wf)
    assert 'invalid scope "file"' in d.message


def test_scope_file_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_bytes(b"hello")
    wf = tmp_path / "reader.yaml"
    wf.write_text("states:\n- id: read\n  type: getter\n  variables:\n  - key: /e.yaml\n    scope: file\n    as: e\n")
    out = cli("run", str(wf))
    assert (out.code, out.json) == (0, {"var": {"e": "aGVsbG8="}})


# --------------------------------------------------------------------------- the reference's examples


def test_every_builtin_state_type_has_an_example_that_validates(eng: isolde.Engine) -> None:
    from isolde.registry import BUILTIN_PLUGINS

    checked = 0
    for info in eng.registry.plugins:
        if info.name not in BUILTIN_PLUGINS:
            continue
        for name in info.state_types:
            example = eng.registry.state_types[name].example
            assert example.strip(), f"state type {name} has no example"
            states = yaml.safe_load(example)
            assert isinstance(states, list) and states[0]["type"] == name, name
            targets = set()
            for text in [example]:
                for line in text.splitlines():
                    key, _, value = line.strip().lstrip("- ").partition(":")
                    if key in ("transition", "defaultTransition") and value.strip():
                        targets.add(value.strip())
            ids = {s["id"] for s in states}
            states += [{"id": t, "type": "noop"} for t in sorted(targets - ids)]
            functions = [{"id": f, "type": "process", "command": ["true"]} for f in ("greeter", "solve")]
            doc = yaml.safe_dump({"functions": functions, "states": states}, sort_keys=False)
            assert [str(d) for d in eng.validate(doc)] == [], name
            checked += 1
    assert checked >= 16


def test_examples_are_shown_in_the_committed_reference() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    for name in ("foreach", "parallel", "getter", "eventsXor"):
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        assert "```yaml" in section, name


def test_leading_slash_subflow_resolves_from_the_namespace_root(cli: Any, tmp_path: Path) -> None:
    """Direktiv's engine tests call '/a/child.yaml' from a parent stored in /a/: with
    --root naming the namespace root, the leading / means it; without, the parent's own
    directory is the root and nothing above it is reachable."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "child.yaml").write_text("states:\n- id: c\n  type: noop\n  transform:\n    child: true\n")
    (tmp_path / "a" / "parent.yaml").write_text(
        "functions:\n- id: kid\n  type: subflow\n  workflow: '/a/child.yaml'\n"
        "states:\n- id: p\n  type: action\n  action:\n    function: kid\n"
    )
    out = cli("run", "a/parent.yaml", "--root", ".")
    assert out.code == 0, out.stderr
    assert out.json["return"] == {"child": True}
    escaped = cli("run", "a/parent.yaml")  # root = a/, where /a/child.yaml does not exist
    assert escaped.code == 1 and "isolde.subflow.notFound" in escaped.stderr
    (tmp_path / "a" / "up.yaml").write_text(
        "functions:\n- id: kid\n  type: subflow\n  workflow: '../outside.yaml'\n"
        "states:\n- id: p\n  type: action\n  action:\n    function: kid\n"
    )
    (tmp_path / "outside.yaml").write_text("states:\n- id: c\n  type: noop\n")
    up = cli("run", "a/up.yaml")
    assert up.code == 1 and "isolde.files.unsafePath" in up.stderr and "leaves the namespace root" in up.stderr


def test_scope_file_cannot_read_outside_the_root_or_special_files(engine: Any, tmp_path: Path) -> None:
    wf = tmp_path / "fs.yaml"
    wf.write_text(
        "direktiv_api: workflow/v1\nstates:\n- id: g\n  type: getter\n  variables:\n"
        "  - key: 'jq(.p)'\n    scope: file\n    as: f\n"
    )
    (tmp_path / "ok.txt").write_text("fine")
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/etc/hostname", tmp_path / "link")
    assert engine.run(wf, {"p": "/ok.txt"}).output["var"]["f"] == "ZmluZQ=="
    # an absolute-looking key means the root's own /proc/...: nothing there, so null
    assert engine.run(wf, {"p": "/proc/self/environ"}).output["var"]["f"] is None
    for bad in ("../../etc/passwd", "/fifo", "/link"):
        res = engine.run(wf, {"p": bad})
        assert res.error is not None and res.error.code == "isolde.files.unsafePath", (bad, res.error)


def test_a_resumed_instance_keeps_counting_its_timeouts_from_its_start(engine: Any) -> None:
    wf = engine.load(
        "id: t\ntimeouts:\n  interrupt: PT60S\nstates:\n- id: a\n  type: delay\n  duration: PT120S\n"
    )
    import time as _time

    begun = _time.monotonic()
    # started 59.8 s ago (as a record restored after a restart would say): 0.2 s are left
    res = engine.run_loaded(wf, {}, instance_id="resumed-1", started_at=_time.time() - 59.8)
    assert res.error is not None and res.error.code == "direktiv.cancels.timeout.soft"
    assert _time.monotonic() - begun < 30  # counted from its start: well before a fresh 60 s
