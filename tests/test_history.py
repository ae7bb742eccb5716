"""Instance history and cancel, through the public surfaces: ``isolde.Engine`` (``history``,
``cancel``), the ``isolde instances`` commands (in-process, and against a real ``isolde run``
process), and the daemon's HTTP API (an in-process ``Daemon`` serving on a free port).

Cancelling a running instance uses the probe isolate's ``hang`` op: the call blocks until
its ``DELETE`` arrives, and the probe records every request in a file the test polls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

import isolde
from test_actions import probe_function, records
from test_daemon import InProcess, eventually

if TYPE_CHECKING:
    from conftest import Cli, RealCli

COUNTER = Path(__file__).resolve().parents[1] / "examples" / "counter.yaml"

STEPS = """
id: steps
states:
- id: first
  type: noop
  log: starting with jq(.n)
  transform: jq(.n += 1)
  transition: keep
- id: keep
  type: setter
  variables:
  - key: seen
    scope: namespace
    value: jq(.n)
  transition: boom
- id: boom
  type: error
  error: app.boom
  message: it went boom
"""


def hang_workflow(record: Path) -> str:
    return textwrap.dedent(f"""\
        functions:
        {probe_function(record)}
        states:
        - id: before
          type: noop
          log: about to call
          transition: call
        - id: call
          type: action
          action:
            function: probe
            input: {{op: hang, seconds: 60}}
          catch:
          - error: "*"
            transition: caught
          transition: after
        - id: after
          type: noop
        - id: caught
          type: noop
        """)


def posted(record: Path) -> bool:
    return any(r["method"] == "POST" and r.get("op") == "hang" for r in records(record))


def deleted(record: Path) -> bool:
    return any(r["method"] == "DELETE" for r in records(record))


@pytest.fixture
def run_in_thread() -> Iterator[Any]:
    threads: list[threading.Thread] = []

    def start(fn: Any) -> dict[str, Any]:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # surfaced by the test's join
                box["error"] = exc

        t = threading.Thread(target=target, daemon=True)
        box["thread"] = t
        threads.append(t)
        t.start()
        return box

    yield start
    for t in threads:
        t.join(60)
        assert not t.is_alive()


def test_a_state_never_seems_to_end_after_the_next_one_started() -> None:
    """Entry times are microseconds after the chunk's ``t0``: a state's end is ``t0 + a + d``
    (rounding ``started`` first and then the sum put it a microsecond after the next state's
    start for this ``t0``; a loaded test run found it)."""
    from isolde.history.codec import assemble

    chunk = {"t0": 1796498139.9014275, "e": [{"n": 0, "s": "a", "t": "noop", "a": 31, "d": 22},
                                             {"n": 1, "s": "b", "t": "noop", "a": 53, "d": 1}]}
    a, b = assemble(None, [chunk])[0]
    assert a["started"] <= a["ended"] <= b["started"] <= b["ended"], (a, b)


# --------------------------------------------------------------------------- the library


def test_every_run_keeps_its_record_and_timeline(engine: isolde.Engine) -> None:
    first = engine.run(COUNTER)
    second = engine.run(COUNTER)
    failed = engine.run(STEPS, {"n": 1})
    assert failed.status == "failed"
    rows, total = engine.history.list("default")
    assert total == 3
    assert [r["id"] for r in rows] == [failed.instance_id, second.instance_id, first.instance_id]  # newest first
    assert rows[0] == {**rows[0], "workflow": "steps", "status": "failed", "error_code": "app.boom", "state": "boom"}
    assert rows[1]["status"] == "complete" and rows[1]["error_code"] is None

    shown = engine.history.show("default", second.instance_id)
    assert shown["output"] == {"var": {"x": 2}} and shown["input"] == {} and shown["status"] == "complete"
    assert [(e["state"], e["type"]) for e in shown["timeline"]] == [("a", "getter"), ("b", "setter")]
    a, b = shown["timeline"]
    assert a["input"] == {} and a["output"] == {"var": {"x": 2}} and b["input"] == a["output"]
    assert b["variables"] == [{"scope": "workflow", "key": "x"}] and a["variables"] == []
    # entry times are whole microseconds after the instance's start, never rounded past it
    times = [shown["started"], a["started"], a["ended"], b["started"], b["ended"], shown["ended"]]
    assert times == sorted(times), times

    shown = engine.history.show("default", failed.instance_id)
    assert shown["error"] == {"code": "app.boom", "message": "it went boom", "state": "boom"}
    steps = shown["timeline"]
    assert [e["state"] for e in steps] == ["first", "keep", "boom"]
    assert steps[0]["logs"][0]["message"] == '"starting with 1"' and steps[0]["output"] == {"n": 2}
    assert steps[1]["variables"] == [{"scope": "namespace", "key": "seen"}]
    assert steps[2]["error"] == {"code": "app.boom", "message": "it went boom"}
    lines, nxt, ended = engine.history.logs("default", failed.instance_id)
    assert [x["message"] for x in lines] == ['"starting with 1"']  # log values are JSON text and nxt == 1 and ended
    assert engine.history.logs("default", failed.instance_id, after=1)[0] == []


def test_a_caught_error_is_in_the_timeline(engine: isolde.Engine) -> None:
    wf = textwrap.dedent("""\
        states:
        - id: boom
          type: action
          action: {function: nothing}
          catch:
          - error: "*"
            transition: after
        - id: after
          type: noop
        functions:
        - {id: nothing, type: process, command: ["/nonexistent/isolde-test"]}
        """)
    res = engine.run(wf)
    assert res.ok, res.error
    steps = engine.history.show("default", res.instance_id)["timeline"]
    assert [e["state"] for e in steps] == ["boom", "after"]
    assert steps[0]["error"]["code"] and steps[0]["output"]["error"]["code"] == steps[0]["error"]["code"]
    assert steps[1]["input"] == steps[0]["output"]


def test_data_in_and_out_is_capped_and_marked(data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"history": {"max_data_bytes": 64}}) as eng:
        res = eng.run("states:\n- id: a\n  type: noop\n  transform: 'jq({big: (\"x\" * 500)})'\n", {"in": "y" * 300})
        shown = eng.history.show("default", res.instance_id)
    assert res.ok and len(res.output["big"]) == 500  # the instance itself is not cut
    (entry,) = shown["timeline"]
    assert entry["truncated"] == ["input", "output"]
    assert isinstance(entry["output"], str) and len(entry["output"]) == 64 and entry["output"].startswith('{"big":"xxx')
    assert shown["input"] == entry["input"] and shown["input_truncated"]


def test_retention_keeps_the_newest_per_namespace(data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"history": {"keep": 3}}) as eng:
        ids = [eng.run(COUNTER).instance_id for _ in range(5)]
        other = eng.run(COUNTER, namespace="other").instance_id
        eng.history.flush()
        eng.history.flush()  # the outcomes, then what the retention removes
        assert [r["id"] for r in eng.history.list("default")[0]] == ids[:1:-1]
        assert [r["id"] for r in eng.history.list("other")[0]] == [other]
        assert eng.history.get("default", ids[0]) is None
        timeline_owners = {o for o in (f"~isolde-timeline/{i}" for i in ids[:2]) if eng.store.list("default", "instance", o)}
        assert timeline_owners == set()  # their timelines went with them


def test_retention_counts_what_another_engine_stored(data_dir: Path) -> None:
    """The retention's scan reads the records it does not know (another engine's or process's)
    and deletes them with their timeline chunks, in one bulk delete."""
    grow = "states:\n- id: a\n  type: noop\n  transform: 'jq(.big = (.big + \"y\"))'\n"
    with isolde.Engine(data_dir=data_dir, config={"history": {"keep": 100}}) as first:
        older = [first.run(grow, {"big": "x" * 1500}).instance_id for _ in range(3)]
        first.history.flush()
        chunked = [i for i in older if first.store.list("default", "instance", f"~isolde-timeline/{i}")]
        assert chunked == older  # a timeline too long for its record: kept as chunks
    with isolde.Engine(data_dir=data_dir, config={"history": {"keep": 2}}) as second:
        mine = second.run(COUNTER).instance_id
        second.history.flush()
        second.history.flush()
        assert [r["id"] for r in second.history.list("default")[0]] == [mine, older[2]]
        assert not any(second.store.list("default", "instance", f"~isolde-timeline/{i}") for i in older[:2])
        assert second.store.list("default", "instance", f"~isolde-timeline/{older[2]}")
        assert second.history.show("default", older[2])["timeline"][0]["output"]["big"].endswith("xy")


def test_retention_keeps_an_instance_that_ended_during_its_scan(data_dir: Path) -> None:
    """An instance that ends while the retention reads the stored records (its record
    committed after the listing) is counted at once, not left until the next scan."""
    with isolde.Engine(data_dir=data_dir, config={"history": {"keep": 2}}) as eng:
        stored = eng.history.history
        listing = stored.finished
        during: list[str] = []

        def finished(namespace: str, known: Any) -> Any:
            got = listing(namespace, known)
            if not during:
                during.append(eng.run(COUNTER).instance_id)  # ends after the listing
            return got

        stored.finished = finished  # type: ignore[method-assign]
        ids = [eng.run(COUNTER).instance_id for _ in range(3)]
        eng.history.flush()
        eng.history.flush()
        newest = sorted([*ids, *during])[-2:]
        assert sorted(k for k, _ in eng.store.list("default", "instance", "~isolde-history")) == [f"i-{i}" for i in newest]


def test_a_record_with_its_timeline_as_text_is_read(engine: isolde.Engine) -> None:
    """Records written before the embedded timeline became a JSON object keep it as JSON text."""
    iid = engine.run(COUNTER).instance_id
    engine.history.flush()
    before = engine.history.show("default", iid)
    (key, var), = [(k, v) for k, v in engine.store.list("default", "instance", "~isolde-history") if k == f"i-{iid}"]
    record = json.loads(var.data)
    assert isinstance(record["tl"], dict)
    record["tl"] = json.dumps(record["tl"], separators=(",", ":"))
    from isolde.store import Put, Ref

    engine.store.write([Put(Ref("default", "instance", "~isolde-history", key), json.dumps(record).encode())])
    assert engine.history.show("default", iid) == before


def test_max_age_and_disabled_history(data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"history": {"max_age": 0.001}}) as eng:
        iid = eng.run(COUNTER).instance_id
        eventually(lambda: eng.history.get("default", iid) is None)  # each query applies max_age
    with isolde.Engine(data_dir=data_dir, config={"history": {"enabled": False}}) as eng:
        res = eng.run(COUNTER)
        eng.history.flush()
        assert res.ok and eng.history.list("default") == ([], 0)


def test_log_lines_are_capped(data_dir: Path) -> None:
    wf = "states:\n- id: a\n  type: noop\n  log: one\n  transition: b\n- id: b\n  type: noop\n  log: two\n  transition: c\n- id: c\n  type: noop\n  log: three\n"
    with isolde.Engine(data_dir=data_dir, config={"history": {"max_log_lines": 2}}) as eng:
        res = eng.run(wf)
        lines, _, _ = eng.history.logs("default", res.instance_id)
    assert [x["message"] for x in lines][:2] == ['"one"', '"two"']
    assert "max_log_lines" in lines[2]["message"] and len(lines) == 3


def test_history_on_the_in_memory_backend(data_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from backends.memory_store import MemoryStorePlugin

    with isolde.Engine(data_dir=data_dir, config={}, plugins=[MemoryStorePlugin()]) as eng:
        res = eng.run(COUNTER)
        shown = eng.history.show("default", res.instance_id)
        assert shown["status"] == "complete" and len(shown["timeline"]) == 2
    assert not (data_dir / "data.mdb").exists()


def test_cancel_in_this_process(engine: isolde.Engine, tmp_path: Path, run_in_thread: Any) -> None:
    record = tmp_path / "calls.jsonl"
    box = run_in_thread(lambda: engine.run(hang_workflow(record), instance_id="cancel-me-1"))
    eventually(lambda: posted(record), timeout=30)
    live = engine.history.get("default", "cancel-me-1")
    assert live is not None and live["status"] == "running" and live["state"] == "call"
    assert engine.cancel("cancel-me-1") == "cancelled"
    box["thread"].join(30)
    res = box["result"]
    assert res.status == "cancelled" and res.error.code == "direktiv.cancels.api" and res.error.state == "call"
    assert res.states == ["before", "call"]  # the catch did not take it
    assert deleted(record)
    engine.history.flush()
    rec = engine.history.get("default", "cancel-me-1")
    assert rec["status"] == "cancelled" and rec["error"]["code"] == "direktiv.cancels.api"
    with pytest.raises(isolde.IsoldeError, match="already ended"):
        engine.cancel("cancel-me-1")
    from isolde.history import NotFound

    with pytest.raises(NotFound):
        engine.cancel("no-such-id")


# --------------------------------------------------------------------------- the CLI


def test_cli_list_show_logs(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "steps.yaml"
    wf.write_text(STEPS)
    assert cli("run", str(COUNTER)).code == 0
    r = cli("run", str(wf), "--input", '{"n": 5}', "-n", "ns2")
    assert r.code == 1 and "app.boom" in r.stderr
    listed = cli("instances", "list")
    assert listed.code == 0 and "counter" in listed.stdout and "complete" in listed.stdout and "steps" not in listed.stdout
    page = cli("instances", "list", "-n", "ns2", "--json").json
    assert page["total"] == 1 and page["instances"][0]["status"] == "failed"
    iid = page["instances"][0]["id"]
    assert cli("instances", "list", "-n", "ns2", "--status", "complete", "--json").json["total"] == 0
    assert cli("instances", "list", "-n", "ns2", "-w", "steps", "--json").json["total"] == 1

    shown = cli("instances", "show", iid, "-n", "ns2")
    assert shown.code == 0
    assert "failed" in shown.stdout and "app.boom: it went boom (state 'boom')" in shown.stdout
    assert 'log: "starting with 5"' in shown.stdout and "namespace:seen" in shown.stdout
    assert cli("instances", "show", iid[-8:], "-n", "ns2", "--json").json["id"] == iid  # the end of an id will do
    doc = cli("instances", "show", iid, "-n", "ns2", "--json").json
    assert [e["state"] for e in doc["timeline"]] == ["first", "keep", "boom"]

    logs = cli("instances", "logs", iid, "-n", "ns2")
    assert logs.code == 0 and logs.stdout.strip().endswith('[first] "starting with 5"')

    missing = cli("instances", "show", iid)  # in another namespace
    assert missing.code == 1 and "add -n ns2" in missing.stderr
    unknown = cli("instances", "logs", "nope")
    assert unknown.code == 1 and "no instance 'nope'" in unknown.stderr and "isolde instances list" in unknown.stderr
    done = cli("instances", "cancel", iid, "-n", "ns2")
    assert done.code == 1 and "already ended (failed)" in done.stderr


def test_cancel_and_follow_an_isolde_run_in_another_process(cli: Cli, real_cli: RealCli, tmp_path: Path,
                                                             data_dir: Path, run_in_thread: Any) -> None:
    record = tmp_path / "calls.jsonl"
    wf = tmp_path / "hang.yaml"
    wf.write_text(hang_workflow(record))
    (tmp_path / "isolde.toml").write_text("[history]\nflush_interval = 0.1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["ISOLDE_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "run", str(wf)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        eventually(lambda: posted(record), timeout=60)
        running = eventually(lambda: cli("instances", "list", "--status", "running", "--json").json["instances"], timeout=30)
        iid = running[0]["id"]
        follow = run_in_thread(lambda: real_cli("instances", "logs", iid, "--follow"))  # (in-process runs one at a time)
        r = cli("instances", "cancel", iid)
        assert r.code == 0 and "cancel requested" in r.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert f"instance {iid} was cancelled in state 'call': direktiv.cancels.api" in err.decode()
    assert deleted(record)
    follow["thread"].join(60)
    assert follow["result"].code == 0 and '[before] "about to call"' in follow["result"].stdout
    shown = cli("instances", "show", iid, "--json").json
    assert shown["status"] == "cancelled" and shown["error"]["code"] == "direktiv.cancels.api"
    assert [e["state"] for e in shown["timeline"]] == ["before", "call"]


# --------------------------------------------------------------------------- the daemon's API


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[InProcess, Path]]:
    record = tmp_path / "calls.jsonl"
    root = tmp_path / "flows"
    (root / "ns1").mkdir(parents=True)
    (root / "ns1" / "hang.yaml").write_text(hang_workflow(record))
    (root / "ns1" / "hello.yaml").write_text("states:\n- id: a\n  type: noop\n  log: hello\n  transform: 'jq({greeting: \"hi\"})'\n")
    d = InProcess(root, tmp_path / "daemon-data")
    try:
        yield d, record
    finally:
        d.stop()


def test_api_list_show_logs(daemon: tuple[InProcess, Path]) -> None:
    d, _ = daemon
    ids = [d.start("ns1", "hello").json["id"] for _ in range(3)]
    page = d.get("/api/namespaces/ns1/instances?limit=2").json
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0 and page["namespace"] == "ns1"
    assert [r["id"] for r in page["instances"]] == ids[::-1][:2]
    assert set(page["instances"][0]) >= {"id", "workflow", "status", "created", "started", "ended", "state", "error_code"}
    assert [r["id"] for r in d.get("/api/namespaces/ns1/instances?limit=2&offset=2").json["instances"]] == ids[:1]
    assert d.get("/api/namespaces/ns1/instances?status=failed").json["total"] == 0
    assert d.get("/api/namespaces/ns1/instances?workflow=hello&status=complete").json["total"] == 3
    assert d.get("/api/namespaces/ns1/instances?limit=x").status == 400
    assert d.get("/api/namespaces/ns1/instances?status=done").status == 400

    shown = d.get(f"/api/namespaces/ns1/instances/{ids[0]}").json
    assert shown["status"] == "complete" and shown["output"] == {"greeting": "hi"}
    (entry,) = shown["timeline"]
    assert entry["state"] == "a" and entry["type"] == "noop" and entry["logs"][0]["message"] == '"hello"'
    assert entry["output"] == {"greeting": "hi"} and entry["input"] == {}
    logs = d.get(f"/api/namespaces/ns1/instances/{ids[0]}/logs").json
    assert logs["logs"][0]["message"] == '"hello"' and logs["logs"][0]["state"] == "a" and logs["next"] == 1 and logs["ended"]
    assert d.get(f"/api/namespaces/ns1/instances/{ids[0]}/logs?after=1").json["logs"] == []
    assert d.get("/api/namespaces/ns1/instances/nope").status == 404
    assert d.get("/api/namespaces/ns1/instances/nope/logs").status == 404


def test_api_cancel_a_running_instance(daemon: tuple[InProcess, Path]) -> None:
    d, record = daemon
    iid = d.start("ns1", "hang", wait=False).json["id"]
    eventually(lambda: posted(record), timeout=30)
    listed = d.get("/api/namespaces/ns1/instances?status=running").json["instances"]
    assert [r["id"] for r in listed] == [iid] and listed[0]["state"] == "call"
    r = d.request("POST", f"/api/namespaces/ns1/instances/{iid}/cancel")
    assert r.status == 202 and r.json["id"] == iid
    view = eventually(lambda: (v := d.get(f"/api/namespaces/ns1/instances/{iid}").json)["status"] == "cancelled" and v, timeout=30)
    assert view["error"]["code"] == "direktiv.cancels.api" and view["error"]["state"] == "call"
    assert [e["state"] for e in view["timeline"]] == ["before", "call"]
    assert deleted(record)
    again = d.request("POST", f"/api/namespaces/ns1/instances/{iid}/cancel")
    assert again.status == 409 and "already ended" in again.json["error"]["message"]
    assert d.request("POST", "/api/namespaces/ns1/instances/nope/cancel").status == 404


def test_cli_cancels_a_daemon_instance(daemon: tuple[InProcess, Path], cli: Cli, tmp_path: Path) -> None:
    d, record = daemon
    cli.data_dir = tmp_path / "daemon-data"
    cli.env["ISOLDE_DATA_DIR"] = str(cli.data_dir)
    iid = d.start("ns1", "hang", wait=False).json["id"]
    eventually(lambda: posted(record), timeout=30)
    r = cli("instances", "cancel", iid, "-n", "ns1")
    assert r.code == 0 and "cancel requested" in r.stderr, r.stderr
    view = eventually(lambda: (v := d.get(f"/api/namespaces/ns1/instances/{iid}").json)["status"] == "cancelled" and v, timeout=30)
    assert view["error"]["code"] == "direktiv.cancels.api"
    assert deleted(record)
    assert json.loads(cli("instances", "show", iid, "-n", "ns1", "--json").stdout)["status"] == "cancelled"


def test_with_state_commit_writes_the_history_with_the_states(data_dir: Path) -> None:
    from isolde.store import Ref

    with isolde.Engine(data_dir=data_dir, config={"history": {"with_state_commit": True}}) as eng:
        res = eng.run(COUNTER)
        # in the store already, before any background round or query: it came with the setter's commit
        raw = eng.store.get(Ref("default", "instance", "~isolde-history", "i-" + res.instance_id))
        assert raw is not None and json.loads(raw.data)["status"] == "complete"
        assert [e["state"] for e in eng.history.show("default", res.instance_id)["timeline"]] == ["a", "b"]


def test_a_long_timeline_is_kept_in_chunks(engine: isolde.Engine) -> None:
    states = "".join(f"- id: s{i}\n  type: noop\n  transform: 'jq(.i += 1)'\n  transition: s{i + 1}\n" for i in range(40))
    res = engine.run("states:\n" + states + "- id: s40\n  type: noop\n", {"i": 0})
    assert res.output == {"i": 40}
    steps = engine.history.show("default", res.instance_id)["timeline"]
    assert [e["state"] for e in steps] == [f"s{i}" for i in range(41)]
    assert steps[39]["input"] == {"i": 39} and steps[39]["output"] == {"i": 40} and steps[40]["output"] == {"i": 40}
    assert engine.store.list("default", "instance", f"~isolde-timeline/{res.instance_id}")  # too long for the record


def test_instance_ids_sort_in_the_order_the_instances_started(engine: isolde.Engine) -> None:
    """Several instances start in one millisecond: their ids (the history's keys) still sort
    in the order they started, which is what the retention and the listings rely on."""
    ids = [engine.run("states:\n- id: a\n  type: noop\n").instance_id for _ in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_ended_instances_are_written_in_batches_by_the_thread_that_ends_them(data_dir: Path) -> None:
    """By default an ended instance's record waits to be written with others: queries see it
    at once (they write what waits), and the 256th instance to end writes the batch, without
    waiting for the background writer's round (an hour here)."""
    from isolde.history.service import ENDING_BATCH
    from isolde.store import Ref

    def stored(eng: isolde.Engine, iid: str) -> bool:
        return eng.store.get(Ref("default", "instance", "~isolde-history", "i-" + iid)) is not None

    with isolde.Engine(data_dir=data_dir, config={"history": {"flush_interval": 3600}}) as eng:
        wf = eng.load(COUNTER)
        first = eng.run(wf).instance_id
        assert not stored(eng, first)  # waiting for the batch
        for _ in range(ENDING_BATCH - 2):
            eng.run(wf)
        assert not stored(eng, first)
        last = eng.run(wf).instance_id  # the batch is full: written by this run's thread
        assert stored(eng, first) and stored(eng, last)
        after = eng.run(wf).instance_id
        assert not stored(eng, after)
        assert eng.history.get("default", after)["status"] == "complete"  # a query writes what waits
        assert stored(eng, after)
        assert eng.history.list("default")[1] == ENDING_BATCH + 1


def test_a_program_that_does_not_close_its_engine_still_keeps_the_history(tmp_path: Path) -> None:
    """History waits to be written in batches: a script that runs an instance and exits
    without closing the engine (or waiting for the background writer) still leaves it."""
    script = textwrap.dedent(f"""
        import isolde
        engine = isolde.Engine(data_dir={str(tmp_path / 'd')!r}, config={{"history": {{"flush_interval": 3600}}}})
        print(engine.run({str(COUNTER)!r}).instance_id)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    iid = out.stdout.strip()
    with isolde.Engine(data_dir=tmp_path / "d") as eng:
        assert eng.history.get("default", iid)["status"] == "complete"
