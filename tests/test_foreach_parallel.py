"""``foreach`` and ``parallel``: several actions of one state, through ``isolde.Engine`` and the CLI.

Most calls go to ``work`` below, an in-process ``type: python`` isolate (it gets
the same action folder, ``out/`` collection and ``Direktiv-*`` request as an
HTTP isolate), so a test can see how many calls ran at once and in which order;
one test goes through the CLI to the probe isolate over real HTTP.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde
from conftest import Cli

HERE = Path(__file__).resolve().parent
PROBE = HERE / "isolates" / "probe.py"


class Tracker:
    """What the in-process isolate saw: calls, how many ran at once, attempts per item."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls: list[Any] = []
        self.attempts: dict[str, int] = {}


TRACK = Tracker()


def work(data: Any, request: Any) -> Any:
    """A test isolate driven by its input: ``sleep`` seconds, ``fail`` with a code (or
    ``fail_first`` once per ``id``), ``crash``, write ``out`` files, then answer."""
    item = data if isinstance(data, dict) else {"value": data}
    with TRACK.lock:
        TRACK.running += 1
        TRACK.peak = max(TRACK.peak, TRACK.running)
        TRACK.calls.append(item.get("id", item.get("value")))
        n = TRACK.attempts[str(item.get("id"))] = TRACK.attempts.get(str(item.get("id")), 0) + 1
    try:
        if item.get("sleep"):
            request.cancelled.wait(float(item["sleep"]))
        for name, text in (item.get("out") or {}).items():
            (Path(request.temp_dir) / "out" / name).write_text(text)
        if item.get("crash"):
            raise RuntimeError("the isolate crashed")
        if item.get("fail") or (item.get("fail_first") and n == 1):
            raise isolde.WorkflowError(item.get("fail") or item["fail_first"], f"item {item.get('id')} failed")
        return {"item": item.get("id", item.get("value")), "iterator": request.iterator,
                "header": request.headers()["Direktiv-Iterator"]}
    finally:
        with TRACK.lock:
            TRACK.running -= 1


FUNCTIONS = "functions:\n- id: work\n  type: python\n  call: test_foreach_parallel:work\n"


def foreach(array: Any, *, input: Any = "jq(.)", extra: str = "", **state: Any) -> str:
    body = {"id": "each", "type": "foreach", "array": array, "action": {"function": "work", "input": input}, **state}
    return FUNCTIONS + extra + "states:\n- " + json.dumps(body) + "\n"


def parallel(*actions: Any, mode: str | None = None, **state: Any) -> str:
    body: dict[str, Any] = {"id": "par", "type": "parallel", "actions": [{"function": "work", "input": a} for a in actions], **state}
    if mode:
        body["mode"] = mode
    return FUNCTIONS + "states:\n- " + json.dumps(body) + "\n"


@pytest.fixture(autouse=True)
def tracker() -> Iterator[Tracker]:
    global TRACK
    TRACK = Tracker()
    yield TRACK


def make(data_dir: Path, **limits: Any) -> isolde.Engine:
    return isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, **({"limits": limits} if limits else {})})


@pytest.fixture
def eng(data_dir: Path) -> Iterator[isolde.Engine]:
    with make(data_dir) as engine:
        yield engine


# --------------------------------------------------------------------------- foreach


def test_results_are_in_item_order_with_the_iterator_of_each(eng: isolde.Engine) -> None:
    items = [{"id": i, "sleep": 0.02 * (4 - i)} for i in range(5)]  # the last ones finish first
    res = eng.run(foreach("jq(.items)"), input={"items": items})
    assert res.ok, res.error
    assert [r["item"] for r in res.output["return"]] == [0, 1, 2, 3, 4]
    assert [(r["iterator"], r["header"]) for r in res.output["return"]] == [(i, str(i)) for i in range(5)]
    assert res.output["items"] == items  # the state data is kept around .return


def test_input_is_evaluated_against_each_item(eng: isolde.Engine) -> None:
    wf = foreach("jq(.names[] | {name: .})", input={"id": "jq(.name)", "value": "jq(.name)"})
    res = eng.run(wf, input={"names": ["Ada", "Bob"]})
    assert [r["item"] for r in res.output["return"]] == ["Ada", "Bob"]


def test_concurrency_is_bounded_by_the_limit(data_dir: Path, tracker: Tracker) -> None:
    with make(data_dir, foreach_concurrency=2) as engine:
        res = engine.run(foreach("jq(.items)"), input={"items": [{"id": i, "sleep": 0.05} for i in range(6)]})
    assert res.ok, res.error
    assert tracker.peak == 2
    assert tracker.calls == [0, 1, 2, 3, 4, 5] or sorted(tracker.calls) == [0, 1, 2, 3, 4, 5]


def test_items_run_side_by_side_by_default(eng: isolde.Engine, tracker: Tracker) -> None:
    res = eng.run(foreach("jq(.items)"), input={"items": [{"id": i, "sleep": 0.3} for i in range(12)]})
    assert res.ok
    assert 2 <= tracker.peak <= 10  # side by side, up to the default [limits] foreach_concurrency


@pytest.mark.parametrize(
    ("array", "given", "count"),
    [
        ("jq(.names[] | {value: .})", {"names": ["a", "b", "c"]}, 3),  # every result of the query
        ("jq(.names[] | {value: .})", {"names": ["a"]}, 1),  # one result that is not an array: one item
        ("jq(.names)", {"names": ["a", "b"]}, 2),  # the only result is an array: its items
        ("jq(.names[])", {"names": []}, 0),  # no results
        ("jq([])", {}, 0),
        ([1, 2, 3], {}, 3),  # a literal array
        (["jq(.a)", "jq(.b)"], {"a": 1, "b": 2}, 2),  # a template that is an array
    ],
)
def test_what_array_loops_over(eng: isolde.Engine, array: Any, given: Any, count: int, tracker: Tracker) -> None:
    res = eng.run(foreach(array), input=given)
    assert res.ok, res.error
    assert len(res.output["return"]) == count
    assert len(tracker.calls) == count
    if count == 0:
        assert res.output["return"] == []


@pytest.mark.parametrize(
    ("array", "given", "what"),
    [
        ("jq(.missing)", {}, "gave null"),
        ("just text", {}, "got a string"),
        ({"a": "jq(.a)"}, {"a": 1}, "got an object"),
        (5, {}, "got a number"),
    ],
)
def test_bad_array_is_a_catchable_error(eng: isolde.Engine, array: Any, given: Any, what: str) -> None:
    res = eng.run(foreach(array), input=given)
    assert res.error.code == "direktiv.foreach.badArray" and what in res.error.message
    caught = eng.run(foreach(array, catch=[{"error": "direktiv.foreach.*"}]), input=given)
    assert caught.ok and caught.output["error"]["code"] == "direktiv.foreach.badArray"


def test_raw_jq_document_loops_over_every_result(eng: isolde.Engine) -> None:
    wf = FUNCTIONS.replace("functions:", "id: raw\nfunctions:") + (
        "states:\n- id: each\n  type: foreach\n  array: '.names[] | {value: .}'\n"
        "  action:\n    function: work\n    input: '.'\n  transform: '{got: [.return[].item]}'\n"
    )
    assert eng.run(wf, input={"names": ["x", "y"]}).output == {"got": ["x", "y"]}


def test_first_failing_item_fails_the_state_and_later_items_do_not_start(data_dir: Path, tracker: Tracker) -> None:
    items = [{"id": 0}, {"id": 1, "fail": "item.bad"}, {"id": 2}, {"id": 3}]
    with make(data_dir, foreach_concurrency=1) as engine:
        res = engine.run(foreach("jq(.items)"), input={"items": items})
        assert (res.error.code, res.error.message, res.error.state) == ("item.bad", "item 1 failed", "each")
        assert tracker.calls == [0, 1]
        assert "foreach: item 1 failed with item.bad" in res.log
        caught = engine.run(foreach("jq(.items)", catch=[{"error": "item.*", "transition": "after"}],
                                    extra="") + "- id: after\n  type: noop\n", input={"items": items})
        assert caught.ok and caught.output["error"] == {"code": "item.bad", "msg": "item 1 failed"}
        assert "return" not in caught.output


def test_a_failure_does_not_wait_for_slow_items(eng: isolde.Engine) -> None:
    items = [{"id": 0, "sleep": 5}, {"id": 1, "fail": "item.bad"}]
    started = time.monotonic()
    res = eng.run(foreach("jq(.items)"), input={"items": items})
    assert res.error.code == "item.bad"
    assert time.monotonic() - started < 4


def test_uncatchable_failure_of_an_item_fails_the_instance_despite_catch(eng: isolde.Engine) -> None:
    wf = foreach("jq(.items)", catch=[{"error": "*"}])
    res = eng.run(wf, input={"items": [{"id": 0}, {"id": 1, "crash": True}]})
    assert res.status == "failed"
    assert res.error.code == "isolde.isolate.failed" and "the isolate crashed" in res.error.message


def test_retries_apply_to_each_item(eng: isolde.Engine, tracker: Tracker) -> None:
    body = {"id": "each", "type": "foreach", "array": "jq(.items)",
            "action": {"function": "work", "retries": {"max_attempts": 2, "delay": "PT0S", "codes": ["flaky"]}}}
    res = eng.run(FUNCTIONS + "states:\n- " + json.dumps(body) + "\n",
                  input={"items": [{"id": "a", "fail_first": "flaky"}, {"id": "b"}]})
    assert res.ok, res.error
    assert tracker.attempts == {"a": 2, "b": 1}


def test_out_files_of_all_items_commit_with_the_state(eng: isolde.Engine) -> None:
    items = [{"id": i, "out": {f"workflow/k{i}": str(i)}} for i in range(3)]
    res = eng.run(foreach("jq(.items)"), input={"items": items}, workflow_id="outs")
    assert res.ok, res.error
    assert [eng.variables.value(f"k{i}", scope="workflow", workflow="outs") for i in range(3)] == [0, 1, 2]


def test_a_failed_foreach_stores_no_out_file_of_its_successful_items(data_dir: Path) -> None:
    items = [{"id": 0, "out": {"workflow/good": "1"}}, {"id": 1, "sleep": 0.1, "out": {"workflow/bad": "2"}, "fail": "item.bad"}]
    with make(data_dir, foreach_concurrency=1) as engine:
        res = engine.run(foreach("jq(.items)"), input={"items": items}, workflow_id="outs")
        assert res.error.code == "item.bad"
        assert engine.variables.get("good", scope="workflow", workflow="outs") is None
        # the failing call's own out/ is stored at once, as for an action state
        assert engine.variables.value("bad", scope="workflow", workflow="outs") == 2


def test_state_timeout_bounds_the_whole_foreach(eng: isolde.Engine) -> None:
    started = time.monotonic()
    res = eng.run(foreach("jq(.items)", timeout="PT0.3S"), input={"items": [{"id": i, "sleep": 5} for i in range(3)]})
    assert res.error.code == "direktiv.cancels.timeout.soft"
    assert time.monotonic() - started < 3


def test_secrets_need_object_items(data_dir: Path) -> None:
    body = {"id": "each", "type": "foreach", "array": "jq(.items)",
            "action": {"function": "work", "secrets": ["token"], "input": {"value": "jq(.secrets.token)"}}}
    wf = FUNCTIONS + "states:\n- " + json.dumps(body) + "\n"
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, "secrets": {"token": "t0k"}}) as engine:
        assert [r["item"] for r in engine.run(wf, input={"items": [{}, {}]}).output["return"]] == ["t0k", "t0k"]
        # Direktiv 0.8.5+: a non-object item is evaluated as {} (so its secrets are there too)
        assert [r["item"] for r in engine.run(wf, input={"items": ["plain"]}).output["return"]] == ["t0k"]
        del body["action"]["input"]  # without input the item itself is sent: it must be an object
        res = engine.run(FUNCTIONS + "states:\n- " + json.dumps(body) + "\n", input={"items": ["plain"]})
        assert res.error.code == "direktiv.foreach.badArray" and "must be an object" in res.error.message


def test_foreach_validation_is_located(eng: isolde.Engine) -> None:
    wf = FUNCTIONS + "states:\n- id: each\n  type: foreach\n  array: 'jq(.x'\n  action:\n    function: nope\n"
    text = [str(d) for d in eng.validate(wf)]
    assert any(":8:11: state 'each': invalid jq" in t for t in text), text
    assert any(":10:15: state 'each': function 'nope' is not declared" in t for t in text), text
    missing = FUNCTIONS + "states:\n- id: each\n  type: foreach\n  action:\n    function: work\n"
    assert "missing required field 'array' in state type 'foreach'" in str(eng.validate(missing)[0])


def test_foreach_through_the_cli_sends_direktiv_iterator_over_http(cli: Cli, tmp_path: Path) -> None:
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(PROBE)]}
    wf = tmp_path / "each.yaml"
    wf.write_text(
        "functions:\n- " + json.dumps(fn) + "\nstates:\n- id: each\n  type: foreach\n  array: 'jq(.xs)'\n"
        "  action:\n    function: probe\n    input:\n      op: echo\n      x: 'jq(.v)'\n"
        "  transform: 'jq({seen: [.return[] | [.input.x, .headers[\"Direktiv-Iterator\"]]]})'\n"
    )
    (tmp_path / "isolde.toml").write_text("[sidecar]\nport = 0\n")
    out = cli("run", str(wf), "--input", '{"xs": [{"v": "a"}, {"v": "b"}, {"v": "c"}]}')
    assert out.code == 0, out.stderr
    assert out.json == {"seen": [["a", "0"], ["b", "1"], ["c", "2"]]}
    assert "foreach: 3 item(s)" in out.stderr


# --------------------------------------------------------------------------- parallel


def test_and_mode_waits_for_all_and_keeps_their_order(eng: isolde.Engine) -> None:
    res = eng.run(parallel({"id": "a", "sleep": 0.1}, {"id": "b"}, {"id": "c", "sleep": 0.05}))
    assert res.ok, res.error
    assert [(r["item"], r["header"]) for r in res.output["return"]] == [("a", "0"), ("b", "1"), ("c", "2")]


def test_and_mode_is_the_default_and_runs_the_actions_at_once(eng: isolde.Engine, tracker: Tracker) -> None:
    res = eng.run(parallel(*({"id": i, "sleep": 0.2} for i in range(4))))
    assert res.ok
    assert tracker.peak >= 2


def test_and_mode_fails_with_the_first_error_to_arrive(eng: isolde.Engine) -> None:
    res = eng.run(parallel({"id": "slow", "sleep": 0.3, "fail": "slow.failed"}, {"id": "ok"}, {"id": "fast", "fail": "fast.failed"}))
    assert (res.error.code, res.error.message) == ("fast.failed", "item fast failed")
    assert "parallel (and): action 2 failed with fast.failed" in res.log


def test_and_mode_with_every_action_failing_is_the_first_error_and_catchable(eng: isolde.Engine) -> None:
    wf = parallel({"id": 0, "sleep": 0.2, "fail": "a.failed"}, {"id": 1, "fail": "b.failed"},
                  catch=[{"error": "b.*"}])
    res = eng.run(wf)
    assert res.ok and res.output["error"] == {"code": "b.failed", "msg": "item 1 failed"}


def test_or_mode_takes_the_first_success_without_waiting_for_the_rest(eng: isolde.Engine) -> None:
    started = time.monotonic()
    res = eng.run(parallel({"id": "slow", "sleep": 60}, {"id": "broken", "fail": "x.failed"}, {"id": "quick", "sleep": 0.05}, mode="or"))
    assert res.ok, res.error
    assert time.monotonic() - started < 30  # the slow one was cancelled, not waited for
    ret = res.output["return"]
    assert ret[0] is None and ret[1] is None and ret[2]["item"] == "quick"
    assert "parallel (or): action 2 answered first" in res.log


def test_or_mode_with_every_action_failing_is_all_failed(eng: isolde.Engine) -> None:
    res = eng.run(parallel({"id": 0, "fail": "a.failed"}, {"id": 1, "sleep": 0.05, "fail": "b.failed"}, mode="or"))
    assert res.error.code == "direktiv.parallel.allFailed"
    assert "action 0: a.failed" in res.error.message and "action 1: b.failed" in res.error.message
    caught = eng.run(parallel({"id": 0, "fail": "a.failed"}, mode="or", catch=[{"error": "direktiv.parallel.*"}]))
    assert caught.ok and caught.output["error"]["code"] == "direktiv.parallel.allFailed"


def test_or_mode_stores_only_the_winners_out_files(eng: isolde.Engine) -> None:
    wf = parallel({"id": "w", "out": {"workflow/winner": "1"}},
                  {"id": "l", "sleep": 0.3, "out": {"workflow/loser": "2"}}, mode="or")
    res = eng.run(wf, workflow_id="race")
    assert res.ok
    time.sleep(0.5)  # the loser finished meanwhile; its files were dropped
    assert eng.variables.value("winner", scope="workflow", workflow="race") == 1
    assert eng.variables.get("loser", scope="workflow", workflow="race") is None


def test_uncatchable_failure_in_a_branch_fails_the_instance(eng: isolde.Engine) -> None:
    res = eng.run(parallel({"id": 0, "crash": True}, {"id": 1, "sleep": 2}, mode="or", catch=[{"error": "*"}]))
    assert res.status == "failed" and res.error.code == "isolde.isolate.failed"


def test_parallel_state_timeout(eng: isolde.Engine) -> None:
    res = eng.run(parallel({"id": 0, "sleep": 5}, {"id": 1}, timeout="PT0.2S"))
    assert res.error.code == "direktiv.cancels.timeout.soft"


def test_parallel_validation(eng: isolde.Engine) -> None:
    assert "needs at least one action" in str(eng.validate(FUNCTIONS + "states:\n- id: p\n  type: parallel\n  actions: []\n")[0])
    bad_mode = eng.validate(parallel({}, mode="xor"))
    assert '"xor" is not one of "and", "or"' in bad_mode[0].message
    undeclared = FUNCTIONS + "states:\n- id: p\n  type: parallel\n  actions:\n  - function: work\n  - function: other\n"
    [d] = eng.validate(undeclared)
    assert (d.line, d.col, d.state) == (10, 15, "p") and "function 'other' is not declared" in d.message


def test_parallel_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(PROBE)]}
    wf = tmp_path / "par.yaml"
    wf.write_text(
        "functions:\n- " + json.dumps(fn) + "\nstates:\n- id: p\n  type: parallel\n  actions:\n"
        "  - function: probe\n    input: {op: echo, n: 1}\n  - function: probe\n    input: {op: error, code: my.code, msg: nope}\n"
    )
    (tmp_path / "isolde.toml").write_text("[sidecar]\nport = 0\n")
    out = cli("run", str(wf))
    assert out.code == 1
    assert "my.code: nope" in out.stderr and "'p'" in out.stderr


def late_writer(data: Any, request: Any) -> Any:
    """Fails at once for ``fail``; otherwise waits (or is cancelled) and then tries to
    write instance and workflow variables through the sidecar."""
    import http.client

    if data.get("fail"):
        SLOW_STARTED.wait(60)  # (a call that had not started when the state was decided is never made)
        raise isolde.WorkflowError("x.y", "failed first")
    SLOW_STARTED.set()
    request.cancelled.wait(60)  # the failing item decides the foreach: then this call is cancelled
    codes = []
    for scope, key in (("instance", "leak"), ("workflow", "late")):
        host, port = request.sidecar.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("POST", f"/var?aid={request.action_id}&scope={scope}&key={key}", b"1")
        codes.append(conn.getresponse().status)
        conn.close()
    LATE.append((request.cancelled.is_set(), codes))
    return {"ok": True}


LATE: list[Any] = []
SLOW_STARTED = threading.Event()


def test_calls_left_running_by_a_decided_state_cannot_write_after_it(data_dir: Path) -> None:
    """A failing item decides the foreach; the slower item is cancelled, and its late
    sidecar writes are refused, so nothing outlives the instance."""
    wf = (
        "functions:\n- id: lw\n  type: python\n  call: test_foreach_parallel:late_writer\n"
        "states:\n- id: each\n  type: foreach\n  array: 'jq(.items)'\n  action:\n    function: lw\n    input: 'jq(.)'\n"
    )
    LATE.clear()
    SLOW_STARTED.clear()
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}}) as engine:
        res = engine.run(wf, {"items": [{"slow": True}, {"fail": True}]})
        assert res.error is not None and res.error.code == "x.y"
        deadline = time.monotonic() + 120
        while not LATE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert LATE and LATE[0][0], "the slow call was not cancelled"
        assert LATE[0][1] == [404, 404], LATE
        assert engine.variables.list(scope="instance", instance=res.instance_id) == []
        assert engine.variables.get("late", scope="workflow", workflow="workflow") is None


def test_state_timeout_bounds_retries_too(eng: isolde.Engine) -> None:
    body = {
        "id": "each", "type": "foreach", "array": "jq(.items)", "timeout": "PT1S",
        "action": {"function": "work", "input": "jq(.)",
                   "retries": {"max_attempts": 5, "delay": "PT3S", "codes": ["x.*"]}},
    }
    start = time.monotonic()
    res = eng.run(FUNCTIONS + "states:\n- " + json.dumps(body) + "\n", {"items": [{"id": "r", "fail": "x.y"}]})
    assert res.error is not None and res.error.code == "direktiv.cancels.timeout.soft", res.error
    assert time.monotonic() - start < 10  # the retries alone would wait 12 s


ATTEMPTS: list[bool] = []
FIRST_FAILED = threading.Event()


def retried_after_the_answer(data: Any, request: Any) -> Any:
    """``fail``: waits for the other item's first attempt to fail, then decides the
    foreach.  Otherwise: the first attempt fails with a retried code; a later attempt
    waits to be cancelled and records whether it was."""
    if data.get("fail"):
        FIRST_FAILED.wait(60)
        raise isolde.WorkflowError("x.decides", "decides the foreach")
    if not FIRST_FAILED.is_set():
        FIRST_FAILED.set()
        raise isolde.WorkflowError("x.retry", "try again")
    ATTEMPTS.append(request.cancelled.wait(30))
    return {}


def test_a_retry_due_after_the_state_was_decided_is_not_made(data_dir: Path) -> None:
    """A branch's retry that comes after another branch decided the foreach must not
    start a call nobody cancels (it would run to its end and could write through the
    sidecar after the state moved on): it is not made, or it is cancelled."""
    wf = (
        "functions:\n- id: f\n  type: python\n  call: test_foreach_parallel:retried_after_the_answer\n"
        "states:\n- id: each\n  type: foreach\n  array: 'jq(.items)'\n  action:\n    function: f\n    input: 'jq(.)'\n"
        "    retries:\n      max_attempts: 3\n      delay: PT0.2S\n      codes: [x.retry]\n"
    )
    ATTEMPTS.clear()
    FIRST_FAILED.clear()
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}}) as engine:
        res = engine.run(wf, {"items": [{"retry": True}, {"fail": True}]})
        assert res.error is not None and res.error.code == "x.decides", res.error
        for thread in threading.enumerate():  # the branches' threads end after their last attempt
            if thread.name.startswith(f"isolde-branch-{res.instance_id[:8]}"):
                thread.join(120)
    assert all(ATTEMPTS), ATTEMPTS  # every later attempt made was cancelled (usually none is made)
