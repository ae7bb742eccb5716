"""Metrics, structured logs and terminal progress (issue 13), through their public surfaces:
``engine.metrics``, ``GET /metrics`` of a real daemon, ``--log-format json`` of ``isolde run``
and ``isolde serve``, the progress line of ``isolde run`` on a pseudo-terminal, and Ctrl-C
of a real ``isolde serve``."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import isolde
from test_daemon import InProcess, Served

HERE = Path(__file__).resolve().parent


def work(data: Any, request: Any) -> Any:
    """A ``type: python`` function: fails for ``{"fail": true}``, waits for a file when
    ``{"wait_for": PATH}`` (polled, bounded), else echoes its input."""
    if data.get("fail"):
        raise isolde.WorkflowError("test.failed", "asked to fail")
    path = data.get("wait_for")
    if path:
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline and not request.cancelled.is_set():
            time.sleep(0.01)
    return data


FUNCTIONS = "functions:\n- id: work\n  type: python\n  call: test_metrics_logs:work\n"

FLOW = FUNCTIONS + """\
states:
- id: each
  type: foreach
  array: 'jq([.items[] | {n: .}])'
  action:
    function: work
  transition: save
- id: save
  type: setter
  variables:
  - key: seen
    scope: namespace
    value: 'jq(.return | length)'
  transition: try
- id: try
  type: action
  action:
    function: work
    input: {fail: true}
  catch:
  - error: test.*
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


# --------------------------------------------------------------------------- engine.metrics


def test_engine_metrics_count_instances_states_actions_and_commits(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    failing = "states:\n- id: a\n  type: error\n  error: app.bad\n  message: no\n"
    with isolde.Engine(data_dir=tmp_path / "a", config={}) as engine, \
            isolde.Engine(data_dir=tmp_path / "b", config={}) as other:
        metrics = engine.metrics
        assert engine.metrics is metrics  # one per engine
        other.metrics  # a second engine in the same process has registries of its own
        for _ in range(2):
            assert engine.run(flow, {"items": [1, 2, 3]}, namespace="ns").ok
        assert engine.run(failing, workflow_id="bad").status == "failed"
        found = samples(metrics.exposition()[0].decode())
        theirs = samples(other.metrics.exposition()[0].decode())

    assert value(found, "isolde_instances_started_total", namespace="ns", workflow="flow") == 2
    assert value(found, "isolde_instances_ended_total", namespace="ns", workflow="flow", status="complete") == 2
    assert value(found, "isolde_instances_ended_total", namespace="default", workflow="bad", status="failed") == 1
    assert value(found, "isolde_instances_running") == 0
    for kind, count in (("foreach", 2), ("setter", 2), ("action", 2), ("error", 1)):
        assert value(found, "isolde_state_duration_seconds_count", type=kind) == count, kind
    # 3 foreach items + 1 failing action per run, each call timed; errors by function and code
    assert value(found, "isolde_action_duration_seconds_count", function="work") == 8
    assert value(found, "isolde_action_errors_total", function="work", code="test.failed") == 2
    assert value(found, "isolde_store_commit_seconds_count") == 2  # the setter's commit of each run
    assert value(found, "isolde_build_info", version=isolde.__version__) == 1
    assert value(theirs, "isolde_instances_started_total", namespace="ns", workflow="flow") == 0
    assert not any(name.startswith("isolde_") for name in REGISTRY._names_to_collectors)  # never the global one


def test_an_instance_stopped_by_the_engine_closing_counts_as_cancelled(tmp_path: Path) -> None:
    engine = isolde.Engine(data_dir=tmp_path, config={})
    metrics = engine.metrics
    waits = "states:\n- id: w\n  type: delay\n  duration: PT1H\n"
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(engine.run(waits, workflow_id="waits")))
    t.start()
    deadline = time.monotonic() + 60
    while value(samples(metrics.exposition()[0].decode()), "isolde_instances_running") < 1:
        assert time.monotonic() < deadline, "the instance never started"
        time.sleep(0.01)
    engine.close()
    t.join(60)
    assert result and result[0].status == "failed"
    found = samples(metrics.exposition()[0].decode())
    assert value(found, "isolde_instances_ended_total", namespace="default", workflow="waits", status="cancelled") == 1


def test_an_engine_without_metrics_has_no_observer(tmp_path: Path) -> None:
    with isolde.Engine(data_dir=tmp_path, config={}) as engine:
        assert engine.run("states:\n- id: a\n  type: noop\n").ok
        assert engine.services.observer is None  # nobody asked: nothing on the hot path


# --------------------------------------------------------------------------- GET /metrics


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    base = tmp_path_factory.mktemp("metrics")
    root = base / "flows"
    (root / "ns1").mkdir(parents=True)
    (root / "ns1" / "hello.yaml").write_text("states:\n- id: a\n  type: noop\n")
    (root / "ns1" / "broken.yaml").write_text("states:\n- id: a\n  type: noop\n  transition: nowhere\n")
    d = InProcess(root, base / "data")
    yield d
    assert d.stop() == 0


def test_metrics_endpoint_serves_the_text_format_with_the_daemon_gauges(daemon: InProcess) -> None:
    assert daemon.start("ns1", "hello").status == 200
    r = daemon.get("/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(r.body.decode())
    assert value(found, "isolde_daemon_up") == 1
    assert value(found, "isolde_namespaces") == 1
    assert value(found, "isolde_workflows", valid="true") == 1
    assert value(found, "isolde_workflows", valid="false") == 1
    assert value(found, "isolde_queue_instances", state="pending") == 0
    assert ("isolde_queue_instances", (("state", "running"),)) in found
    assert value(found, "isolde_instances_ended_total", namespace="ns1", workflow="hello", status="complete") >= 1
    assert value(found, "isolde_isolate_processes") == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in found) or sys.platform != "linux"


def test_metrics_endpoint_speaks_openmetrics_when_asked(daemon: InProcess) -> None:
    r = daemon.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status == 200 and r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.body.rstrip().endswith(b"# EOF")


def test_metrics_is_in_the_openapi_document_and_refuses_browsers(daemon: InProcess) -> None:
    doc = daemon.get("/api/openapi.json").json
    assert "get" in doc["paths"]["/metrics"]
    assert daemon.get("/metrics", headers={"Origin": "http://evil.example"}).status == 403
    assert daemon.request("POST", "/metrics").status == 405


def test_metrics_needs_the_token_when_the_daemon_has_one(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    (root / "ns1").mkdir(parents=True)
    cfg = tmp_path / "isolde.toml"
    cfg.write_text('[daemon]\ntoken = "s3cret"\n')
    d = InProcess(root, tmp_path / "data", config=cfg)
    try:
        assert d.get("/metrics").status == 401
        r = d.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status == 200 and b"isolde_daemon_up 1.0" in r.body
    finally:
        d.stop()


# --------------------------------------------------------------------------- JSON logs


def _objects(text: str) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in text.splitlines() if line.strip()]
    for obj in out:
        assert {"time", "level", "logger", "message"} <= set(obj), obj
        assert obj["time"].endswith("Z") and "T" in obj["time"]
    return out


def test_run_with_json_logs_writes_one_object_per_line(cli: Any, tmp_path: Path) -> None:
    flow = tmp_path / "logs.yaml"
    flow.write_text("states:\n- id: first\n  type: noop\n  log: 'jq(\"two\\nlines\")'\n  transition: bad\n"
                    "- id: bad\n  type: error\n  error: app.bad\n  message: it broke\n")
    res = cli("run", str(flow), "-n", "team", "--log-format", "json")
    assert res.code == 1 and res.stdout == ""
    lines = _objects(res.stderr)
    log, failed = lines
    assert log["logger"] == "isolde.instance" and log["level"] == "info" and log["message"] == '"two\\nlines"'
    assert (log["namespace"], log["workflow"], log["state"]) == ("team", "logs", "first")
    assert failed["level"] == "error" and failed["state"] == "bad" and failed["code"] == "app.bad"
    assert failed["instance"] == log["instance"] and failed["workflow"] == "logs"
    assert "it broke" in failed["message"]


def test_log_format_comes_from_the_config_and_errors_follow_it(cli: Any, tmp_path: Path) -> None:
    flow = tmp_path / "ok.yaml"
    flow.write_text("states:\n- id: a\n  type: noop\n  log: hi\n")
    cfg = tmp_path / "isolde.toml"
    cfg.write_text('[log]\nformat = "json"\n')
    res = cli("run", str(flow))
    assert res.code == 0, res.stderr
    (line,) = _objects(res.stderr)
    assert line["message"] == '"hi"' and line["state"] == "a"
    assert cli("run", str(flow), "--log-format", "text").stderr == '[a] "hi"\n'
    (err,) = _objects(cli("run", str(tmp_path / "missing.yaml"), "--log-format", "json").stderr)
    assert err["level"] == "error" and "no such file" in err["message"]
    cfg.write_text('[log]\nformat = "xml"\n')
    bad = cli("run", str(flow))
    assert bad.code == 2 and '[log] format must be "text" or "json"' in bad.stderr


def test_serve_with_json_logs(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    (root / "ns1").mkdir(parents=True)
    (root / "ns1" / "hello.yaml").write_text("states:\n- id: a\n  type: noop\n  log: hello\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    s = Served(root, tmp_path / "data", ("--log-format", "json", "--verbose"), env, tmp_path)
    try:
        ready = json.loads(s.wait_log('"daemon ready"', timeout=60))
        s.url = ready["api"]
        iid = s.start("ns1", "hello").json["id"]
        line = json.loads(s.wait_log('"message":"\\"hello\\""'))
        assert (line["namespace"], line["workflow"], line["instance"], line["state"]) == ("ns1", "hello", iid, "a")
        assert line["logger"] == "isolde.daemon" and line["level"] == "debug"
    finally:
        assert s.stop() == 0
    _objects("\n".join(s.lines))  # every line is an object


# --------------------------------------------------------------------------- Ctrl-C of serve


def test_second_ctrl_c_stops_the_daemon_at_once(tmp_path: Path) -> None:
    root = tmp_path / "flows"
    (root / "ns1").mkdir(parents=True)
    (root / "ns1" / "waits.yaml").write_text("states:\n- id: w\n  type: delay\n  duration: PT1H\n")
    cfg = tmp_path / "isolde.toml"
    cfg.write_text("[daemon]\nstop_grace = 3600\n")  # a graceful stop would wait for the delay
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    s = Served(root, tmp_path / "data", ("--config", str(cfg), "--verbose"), env, tmp_path).ready()
    try:
        iid = s.start("ns1", "waits", wait=False).json["id"]
        s.wait_log("instance started", f"id={iid}")
        s.proc.send_signal(signal.SIGINT)
        first = s.wait_log("stopping gracefully")
        assert "Ctrl-C again to stop at once" in first
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(60) == 130
        s.wait_log("stopping at once")
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        s._close()


# --------------------------------------------------------------------------- progress


PROGRESS_FLOW = FUNCTIONS + """\
states:
- id: each
  type: foreach
  array: 'jq([range(5) | {n: .}] + [{wait_for: $release}])'
  action:
    function: work
"""


def test_progress_line_on_a_terminal_is_drawn_and_erased(tmp_path: Path) -> None:
    release = tmp_path / "release"
    flow = tmp_path / "progress.yaml"
    flow.write_text(PROGRESS_FLOW.replace("$release", json.dumps(str(release))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "100"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "run", str(flow), "--data-dir", str(tmp_path / "d")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"foreach 'each': 5/6 done" not in seen:  # five items done, the sixth waits for us
            assert time.monotonic() < deadline and proc.poll() is None, seen
            if select.select([master], [], [], 1.0)[0]:
                seen += os.read(master, 4096)
        release.write_bytes(b"")
        out, _ = proc.communicate(timeout=60)
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other side closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    assert proc.returncode == 0
    assert len(json.loads(out)["return"]) == 6
    text = seen.decode()
    assert "foreach 'each': 0/6 done" in text
    assert "\r\x1b[K" in text
    last = text.rsplit("\r\x1b[K", 1)[1]
    assert "done" not in last  # the line was erased at the end; what follows is no progress
    assert "[each] foreach: 6 item(s)" in text

    # [log] progress = false: the same run on the same terminal draws nothing
    (tmp_path / "isolde.toml").write_text("[log]\nprogress = false\n")
    master, slave = pty.openpty()
    quiet = subprocess.run([sys.executable, "-m", "isolde.cli", "run", str(flow), "--data-dir", str(tmp_path / "d")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path,
                           timeout=60)
    os.close(slave)
    drawn = b""
    while select.select([master], [], [], 0)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert quiet.returncode == 0 and b"foreach: 6 item(s)" in drawn and b"\x1b[K" not in drawn, drawn


def test_no_progress_when_stderr_is_not_a_terminal(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = tmp_path / "plain.yaml"
    flow.write_text(FUNCTIONS + "states:\n- id: each\n  type: foreach\n  array: 'jq([1,2,3] | map({n: .}))'\n"
                    "  action:\n    function: work\n")
    res = cli("run", str(flow))
    assert res.code == 0, res.stderr
    assert res.stderr == "[each] foreach: 3 item(s), at most 10 at a time\n"
