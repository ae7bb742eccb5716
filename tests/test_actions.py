"""Action states and isolates, through ``isolde.Engine`` and the CLI, with real isolate processes.

The isolate is ``tests/isolates/probe.py``, a stdlib HTTP server that does what
its input's ``op`` says and records every request it gets in a JSON-lines file
(``$RECORD``), so a test can tell whether it was called and got its ``DELETE``.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import wait_until

import isolde

HERE = Path(__file__).resolve().parent
PROBE = HERE / "isolates" / "probe.py"
EXAMPLES = HERE.parent / "examples"
CORPUS = Path(os.environ.get("ISOLDE_CORPUS", HERE.parent.parent / "shared" / "corpus"))


# --------------------------------------------------------------------------- helpers


def probe_function(record: Path, fid: str = "probe", **extra: Any) -> str:
    """A ``functions:`` entry (YAML flow) that runs the probe as a process isolate."""
    fn = {"id": fid, "type": "process", "command": [sys.executable, str(PROBE)], "env": {"RECORD": str(record)}, **extra}
    return "- " + json.dumps(fn)


def workflow(functions: str, states: list[dict[str, Any]]) -> str:
    return "functions:\n" + functions + "\nstates:\n" + "".join("- " + json.dumps(s) + "\n" for s in states)


def action(sid: str, input: Any, fid: str = "probe", **more: Any) -> dict[str, Any]:
    act = {"function": fid, "input": input}
    state: dict[str, Any] = {"id": sid, "type": "action", "action": act}
    for key in ("files", "retries", "secrets"):
        if key in more:
            act[key] = more.pop(key)
    state.update(more)
    return state


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tar_bytes(members: dict[str, str], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # a hang guard: far above what a loaded machine needs
    while time.monotonic() < deadline:
        assert proc.poll() is None, "probe exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("probe did not listen")


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


def make_engine(data_dir: Path, **config: Any) -> isolde.Engine:
    return isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, **config})


@pytest.fixture
def eng(data_dir: Path) -> Iterator[isolde.Engine]:
    with make_engine(data_dir) as engine:
        yield engine


# --------------------------------------------------------------------------- the call


def test_every_call_gets_a_fresh_folder_and_a_closed_engine_leaves_none(tmp_path: Path, data_dir: Path, record: Path) -> None:
    """Folders are made ahead for the next calls (off the call's path), yet each call gets one
    no call had before: empty but for ``out/<scope>/``, and a path of its own.  Closing the
    engine removes the used ones and those made ahead."""
    base = tmp_path / "actions"
    base.mkdir()
    fn = probe_function(record)
    empty = {"out": "<dir>", "out/instance": "<dir>", "out/workflow": "<dir>", "out/namespace": "<dir>"}
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, "actions": {"temp_dir": str(base)}}) as eng:
        for _ in range(3):  # a call that leaves files behind, then one that looks
            res = eng.run(workflow(fn, [action("a", {"op": "out", "files": {"instance/a": "x", "workflow/b": "y"}},
                                               transition="b"), action("b", {"op": "tree"})]))
            assert res.ok, res.error
            assert res.output["return"]["tree"] == empty
        dirs = []
        for _ in range(6):
            res = eng.run(workflow(fn, [action("a", {"op": "echo"})]))
            assert res.ok, res.error
            dirs.append(res.output["return"]["headers"]["Direktiv-TempDir"])
        assert len(set(dirs)) == 6
    assert [p.name for p in base.iterdir()] == []  # used, made ahead or staging: all gone


def test_call_sends_direktivs_headers_and_returns_json(eng: isolde.Engine, record: Path) -> None:
    wf = workflow(probe_function(record), [action("a", {"op": "echo", "n": 1})])
    res = eng.run(wf, input={"x": 1})
    assert res.ok, res.error
    ret = res.output["return"]
    assert res.output["x"] == 1 and ret["input"] == {"op": "echo", "n": 1}
    h = ret["headers"]
    assert h["Content-Type"] == "application/json"
    assert h["Direktiv-InstanceID"] == res.instance_id
    assert h["Direktiv-Namespace"] == "default"
    assert len(h["Direktiv-ActionID"]) >= 32
    folder = Path(h["Direktiv-TempDir"])
    assert folder.name.startswith("isolde-action-")
    wait_until(lambda: not folder.exists())  # removed after the action, in the background
    assert h["Direktiv-Sidecar"].startswith("127.0.0.1:")
    assert h["Direktiv-Step"].isdigit() and h["Direktiv-Iterator"] == "0"
    assert time.strptime(h["Direktiv-Deadline"], "%Y-%m-%dT%H:%M:%SZ")


def test_without_input_the_whole_state_data_is_sent(eng: isolde.Engine, record: Path) -> None:
    wf = workflow(probe_function(record), [{"id": "a", "type": "action", "action": {"function": "probe"}}])
    res = eng.run(wf, input={"op": "echo", "who": "me"})
    assert res.output["return"]["input"] == {"op": "echo", "who": "me"}


def test_non_json_body_is_returned_as_base64(eng: isolde.Engine, record: Path) -> None:
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "text"})]))
    assert base64.b64decode(res.output["return"]) == b"hello, not json"


def test_error_code_is_caught_by_catch(eng: isolde.Engine, record: Path) -> None:
    states = [
        action("a", {"op": "error", "code": "probe.bad", "msg": "no good"},
               catch=[{"error": "other.*"}, {"error": "probe.*", "transition": "handled"}]),
        {"id": "handled", "type": "noop", "transform": "jq({caught: .error})"},
    ]
    res = eng.run(workflow(probe_function(record), states))
    assert res.ok, res.error
    assert res.output == {"caught": {"code": "probe.bad", "msg": "no good"}}


def test_uncaught_error_code_fails_the_instance_with_that_code(eng: isolde.Engine, record: Path) -> None:
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "error", "code": "probe.bad", "msg": "x"})]))
    assert not res.ok and (res.error.code, res.error.message, res.error.state) == ("probe.bad", "x", "a")


def test_message_without_code_fails_the_instance_even_with_catch(eng: isolde.Engine, record: Path) -> None:
    states = [action("a", {"op": "message", "msg": "disk on fire"}, catch=[{"error": "*", "transition": "b"}]),
              {"id": "b", "type": "noop"}]
    res = eng.run(workflow(probe_function(record), states))
    assert not res.ok and "disk on fire" in res.error.message


def test_non_2xx_without_error_headers_fails_naming_the_status(eng: isolde.Engine, record: Path) -> None:
    states = [action("a", {"op": "status", "status": 503}, catch=[{"error": "*", "transition": "b"}]),
              {"id": "b", "type": "noop"}]
    res = eng.run(workflow(probe_function(record), states))
    assert not res.ok and "503" in res.error.message and "something went wrong" in res.error.message


def test_hung_isolate_is_cut_off_by_its_timeout_and_gets_delete(eng: isolde.Engine, record: Path) -> None:
    # the first call starts the isolate, so the timed one measures the call, not a start-up under load
    states = [{**action("warm", {"op": "echo"}), "transition": "a"},
              action("a", {"op": "hang", "seconds": 20}, timeout="PT0.5S",
                     catch=[{"error": "direktiv.cancels.timeout.soft", "transition": "late"}]),
              {"id": "late", "type": "noop", "transform": "jq({code: .error.code})"}]
    res = eng.run(workflow(probe_function(record), states))
    assert res.ok and res.output == {"code": "direktiv.cancels.timeout.soft"}  # not the 20 s hang's reply
    calls = records(record)
    post = next(c for c in calls if c["method"] == "POST" and c["op"] == "hang")
    deadline = time.monotonic() + 30  # only bounds a failing test: the DELETE is normally there already
    while not any(c["method"] == "DELETE" for c in calls) and time.monotonic() < deadline:
        time.sleep(0.02)
        calls = records(record)
    assert {"method": "DELETE", "aid": post["aid"]} in calls


def test_retries_call_again_then_report_exceeded(eng: isolde.Engine, record: Path) -> None:
    retries = {"max_attempts": 2, "delay": "PT0.01S", "multiplier": 2, "codes": ["probe\\..*"]}
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "error", "code": "probe.flaky"}, retries=retries)]))
    assert not res.ok and res.error.code == "direktiv.retries.exceeded"
    assert [c["op"] for c in records(record)] == ["error"] * 3  # the first call and two retries
    record.unlink()
    retries["codes"] = ["other"]
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "error", "code": "probe.flaky"}, retries=retries)]))
    assert res.error.code == "probe.flaky" and len(records(record)) == 1


def test_secrets_are_available_to_the_input(data_dir: Path, record: Path) -> None:
    with make_engine(data_dir, secrets={"token": "s3cret"}) as engine:
        wf = workflow(probe_function(record), [action("a", {"op": "echo", "t": "jq(.secrets.token)"}, secrets=["token"])])
        res = engine.run(wf)
        assert res.output["return"]["input"]["t"] == "s3cret" and "secrets" not in res.output
        wf = workflow(probe_function(record), [action("a", {"op": "echo"}, secrets=["nope"])])
        assert engine.run(wf).error.code == "direktiv.secrets.notFound"


# --------------------------------------------------------------------------- files and out/


def test_every_file_type_with_and_without_as(eng: isolde.Engine, record: Path) -> None:
    v = eng.variables
    v.set("p", b"plain bytes", scope="namespace")
    v.set("b", "aGVsbG8gYmFzZTY0", mime="text/plain", scope="namespace")
    v.set("t", tar_bytes({"one.txt": "1", "d/two.txt": "2"}, gz=False), scope="namespace")
    v.set("tg", tar_bytes({"/abs.txt": "A", "x/y/z.txt": "Z"}, gz=True), scope="namespace")
    v.set("fnfile", "from the function", mime="text/plain", scope="namespace")
    files = [
        {"key": "p", "scope": "namespace"},
        {"key": "p", "scope": "namespace", "as": "copy/p.txt"},
        {"key": "b", "scope": "namespace", "type": "base64"},
        {"key": "b", "scope": "namespace", "type": "base64", "as": "decoded.bin"},
        {"key": "t", "scope": "namespace", "type": "tar"},
        {"key": "t", "scope": "namespace", "type": "tar", "as": "tdir"},
        {"key": "tg", "scope": "namespace", "type": "tar.gz"},
        {"key": "tg", "scope": "namespace", "type": "tar.gz", "as": "sub/tgdir"},
        {"key": "missing"},
        {"key": "missingdir", "type": "tar.gz"},
    ]
    fn = probe_function(record, files=[{"key": "fnfile", "scope": "namespace", "as": "fn.txt"}])
    res = eng.run(workflow(fn, [action("a", {"op": "tree"}, files=files)]))
    assert res.ok, res.error
    tree = res.output["return"]["tree"]
    expected = {
        "fn.txt": "from the function",  # function-level files (v0.3 era) come too
        "p": "plain bytes", "copy/p.txt": "plain bytes",
        "b": "hello base64", "decoded.bin": "hello base64",
        "t/one.txt": "1", "t/d/two.txt": "2", "tdir/one.txt": "1", "tdir/d/two.txt": "2",
        "tg/abs.txt": "A", "tg/x/y/z.txt": "Z", "sub/tgdir/abs.txt": "A", "sub/tgdir/x/y/z.txt": "Z",
        "missing": "", "missingdir": "<dir>",
        "out": "<dir>", "out/instance": "<dir>", "out/workflow": "<dir>", "out/namespace": "<dir>",
    }
    for name, content in expected.items():
        assert tree.get(name) == content, (name, tree.get(name))


def test_scope_file_reads_a_file_beside_the_workflow(eng: isolde.Engine, record: Path, tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text("beside")
    path = tmp_path / "wf.yaml"
    path.write_text(workflow(probe_function(record), [action("a", {"op": "tree"}, files=[
        {"key": "/e.yaml", "as": "e", "scope": "file"}, {"key": "nothere.txt", "scope": "file"}])]))
    tree = eng.run(path).output["return"]["tree"]
    assert tree["e"] == "beside" and tree["nothere.txt"] == ""


def test_unsafe_tar_fails_before_the_isolate_is_called(eng: isolde.Engine, record: Path) -> None:
    eng.variables.set("evil", tar_bytes({"../escape.txt": "x"}, gz=True), scope="namespace")
    states = [action("a", {"op": "echo"}, files=[{"key": "evil", "scope": "namespace", "type": "tar.gz"}])]
    res = eng.run(workflow(probe_function(record), states))
    assert not res.ok and res.error.code == "isolde.archive.unsafe", res.error
    assert not any(c["method"] == "POST" for c in records(record))


def test_as_leaving_the_folder_is_rejected_at_validation(eng: isolde.Engine, record: Path) -> None:
    wf = workflow(probe_function(record), [action("a", {}, files=[{"key": "x", "as": "../x"}])])
    problems = eng.validate(wf)
    assert problems and "unsafe path" in str(problems[0])


def test_out_files_and_directories_become_variables(eng: isolde.Engine, record: Path) -> None:
    states = [
        action("a", {"op": "out", "files": {"instance/n": "5", "workflow/w": "hello"},
                     "dirs": {"namespace/report": {"README": "r", "parts/p.txt": "p"}}}, transition="b"),
        {"id": "b", "type": "getter", "variables": [{"key": "n", "scope": "instance"}, {"key": "w", "scope": "workflow"}]},
    ]
    res = eng.run(workflow(probe_function(record), states), workflow_id="outs")
    assert res.ok, res.error
    assert res.output["var"] == {"n": 5, "w": "aGVsbG8="}  # text that is not JSON reads back as base64 (SPEC §3)
    report = eng.variables.get("report", scope="namespace")
    assert report is not None and report.mime == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(report.data), mode="r:gz") as tf:
        assert tf.getnames() == ["README", "parts", "parts/p.txt"]
    assert eng.variables.value("w", scope="workflow", workflow="outs") == "hello"
    assert eng.variables.get("n", scope="instance", instance=res.instance_id) is None  # gone with the instance


def test_invalid_out_name_fails_the_action_and_commits_nothing(eng: isolde.Engine, record: Path) -> None:
    states = [action("a", {"op": "out", "files": {"namespace/good": "1", "namespace/bad name": "2"}})]
    res = eng.run(workflow(probe_function(record), states))
    assert not res.ok and res.error.code == "direktiv.var.invalidKey"
    assert eng.variables.get("good", scope="namespace") is None


def test_out_symlink_is_refused_not_followed(eng: isolde.Engine, record: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("do not read")
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "symlink", "scope": "namespace", "name": "leak",
                                                                  "target": str(tmp_path / "secret")})]))
    assert not res.ok and "leak" in res.error.message
    assert eng.variables.get("leak", scope="namespace") is None


def test_out_is_committed_with_a_catchable_error(eng: isolde.Engine, record: Path) -> None:
    states = [action("a", {"op": "out", "files": {"namespace/partial": "1"}, "code": "probe.half"},
                     catch=[{"error": "probe.*"}])]
    res = eng.run(workflow(probe_function(record), states))
    assert res.ok and res.output["error"]["code"] == "probe.half"
    assert eng.variables.value("partial", scope="namespace") == 1


def test_timeout_commits_nothing_from_out(eng: isolde.Engine, tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(
        "import os, sys, time\n"
        f"sys.path.insert(0, {str(PROBE.parent)!r})\n"
        "import probe\n"
        "class H(probe.Handler):\n"
        "    def do_POST(self):\n"
        "        self.rfile.read(int(self.headers['Content-Length']))\n"
        "        open(os.path.join(self.headers['Direktiv-TempDir'], 'out', 'namespace', 'late'), 'w').write('1')\n"
        "        time.sleep(5)\n"
        "probe.Handler = H\n"
        "probe.main()\n"
    )
    fn = "- " + json.dumps({"id": "slow", "type": "process", "command": [sys.executable, str(script)]})
    res = eng.run(workflow(fn, [action("a", {}, fid="slow", timeout="PT0.5S")]))
    assert res.error.code == "direktiv.cancels.timeout.soft"
    assert eng.variables.get("late", scope="namespace") is None


# --------------------------------------------------------------------------- sidecar


def test_sidecar_var_and_log_from_an_isolate(eng: isolde.Engine, record: Path) -> None:
    eng.variables.set("old", 1, scope="namespace")
    eng.variables.set("gone", 2, scope="namespace")
    calls = [
        ["GET", "/var?scope=namespace&key=old", None],
        ["POST", "/var?scope=workflow&key=made", "made by the isolate"],
        ["POST", "/var?scope=instance&key=inst", "7"],
        ["POST", "/var?scope=namespace&key=gone", ""],
        ["POST", "/log", "hello from the isolate"],
        ["GET", "/log?log=second+line", None],
    ]
    states = [
        action("a", {"op": "sidecar", "calls": calls}, transition="b"),
        {"id": "b", "type": "getter", "variables": [{"key": "made", "scope": "workflow"}, {"key": "inst", "scope": "instance"},
                                                    {"key": "gone", "scope": "namespace"}]},
    ]
    res = eng.run(workflow(probe_function(record), states), workflow_id="side")
    assert res.ok, res.error
    assert [r[0] for r in res.output["return"]["results"]] == [200] * 6
    assert res.output["return"]["results"][0][1] == "1"
    # text that is not JSON reads back as base64 (SPEC §3)
    assert res.output["var"] == {"made": "bWFkZSBieSB0aGUgaXNvbGF0ZQ==", "inst": 7, "gone": None}
    assert "hello from the isolate" in res.log and "second line" in res.log
    assert eng.variables.get("inst", scope="instance", instance=res.instance_id) is None  # ended with the instance


def test_action_id_is_dead_after_its_action(eng: isolde.Engine, record: Path) -> None:
    res = eng.run(workflow(probe_function(record), [action("a", {"op": "sidecar", "calls": []})]))
    aid, address = res.output["return"]["aid"], res.output["return"]["env"]
    assert address  # DIREKTIV_SIDECAR is set for process isolates
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", f"/var?aid={aid}&scope=namespace&key=x")
    assert conn.getresponse().status == 404
    conn.close()


def test_other_instances_and_namespaces_are_unreachable(eng: isolde.Engine, record: Path) -> None:
    eng.variables.set("shared", "default ns", scope="namespace")
    fn = probe_function(record)
    mine = [{"id": "s", "type": "setter", "variables": [{"key": "mine", "scope": "instance", "value": 42}], "transition": "a"},
            action("a", {"op": "sidecar", "calls": [["GET", "/var?scope=instance&key=mine", None]]})]
    first = eng.run(workflow(fn, mine))
    assert first.output["return"]["results"] == [[200, "42"]]
    reader = [action("a", {"op": "sidecar", "calls": [["GET", "/var?scope=instance&key=mine", None],
                                                       ["GET", "/var?scope=namespace&key=shared", None]]})]
    other = eng.run(workflow(fn, reader), namespace="other")
    assert other.output["return"]["results"] == [[200, ""], [200, ""]]


# --------------------------------------------------------------------------- runners


def test_process_isolate_is_reused_and_stopped_at_engine_close(data_dir: Path, record: Path) -> None:
    wf = workflow(probe_function(record), [action("a", {"op": "echo"})])
    with make_engine(data_dir) as engine:
        pids = {engine.run(wf).output["return"]["pid"] for _ in range(3)}
        assert len(pids) == 1
        pid = pids.pop()
        assert alive(pid)
    assert not alive(pid)


def test_concurrent_instances_share_one_process(eng: isolde.Engine, record: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    wf = eng.load(workflow(probe_function(record), [action("a", {"op": "echo", "n": "jq(.n)"})]))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: eng.run(wf, input={"n": n}), range(40)))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.output["return"]["input"]["n"] for r in results] == list(range(40))
    assert len({r.output["return"]["pid"] for r in results}) == 1


def test_a_process_that_exits_or_never_listens_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    quits = "- " + json.dumps({"id": "q", "type": "process", "command": [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"]})
    mute = "- " + json.dumps({"id": "m", "type": "process", "command": [sys.executable, "-c", "import time; time.sleep(30)"]})
    with make_engine(data_dir, actions={"startup_timeout": 0.5}) as engine:
        res = engine.run(workflow(quits, [action("a", {}, fid="q")]))
        assert res.error.code == "isolde.isolate.unavailable"
        assert "exited with code 3" in res.error.message and "bad config" in res.error.message
        start = time.monotonic()
        res = engine.run(workflow(mute, [action("a", {}, fid="m")]))
        assert time.monotonic() - start < 5
        assert "did not listen" in res.error.message and "startup_timeout" in res.error.message


def test_http_function_against_an_isolate_the_test_started(eng: isolde.Engine, record: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(PROBE)], env={**os.environ, "PORT": str(port), "RECORD": str(record)})
    try:
        wait_listening(port, proc)
        fn = "- " + json.dumps({"id": "probe", "type": "http", "url": f"http://127.0.0.1:{port}/"})
        res = eng.run(workflow(fn, [action("a", {"op": "echo"}), ]))
        assert res.ok and res.output["return"]["pid"] == proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def test_image_mapped_in_isolde_toml_to_a_command(cli: Any, tmp_path: Path, record: Path) -> None:
    (tmp_path / "isolde.toml").write_text(
        f'[sidecar]\nport = 0\n[images."example/probe"]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(PROBE))}]\n'
        f'env = {{ RECORD = {json.dumps(str(record))} }}\n'
    )
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow("- " + json.dumps({"id": "probe", "type": "knative-workflow", "image": "example/probe:v2"}),
                           [action("a", {"op": "echo"})]))
    out = cli("run", str(wf))
    assert out.code == 0, out.stderr
    assert out.json["return"]["input"] == {"op": "echo"}


def test_unmapped_image_validates_and_fails_saying_how_to_map_it(eng: isolde.Engine, cli: Any, tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(workflow("- " + json.dumps({"id": "g", "type": "reusable", "image": "direktiv/greeting:v4"}),
                           [action("a", {}, fid="g")]))
    assert cli("validate", str(wf)).code == 0
    res = eng.run(wf)
    assert res.error.code == "isolde.image.unmapped"
    assert '[images."direktiv/greeting:v4"]' in res.error.message and "command = [" in res.error.message


def test_python_function_gets_the_same_protocol(eng: isolde.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE / "isolates"))
    fns = "\n".join("- " + json.dumps({"id": n, "type": "python", "call": f"pyfuncs:{n}"}) for n in ("greet", "fail", "crash", "wait"))
    res = eng.run(workflow(fns, [action("a", {"name": "Ada"}, fid="greet")]))
    assert res.ok, res.error
    ret = res.output["return"]
    assert ret["greeting"] == "Hello Ada" and ret["files"] == ["out"] and ret["sidecar"].startswith("127.0.0.1:")
    assert eng.variables.get("greeted", scope="instance", instance=res.instance_id) is None
    states = [action("a", {"name": "Bob"}, fid="fail", catch=[{"error": "py.*"}])]
    assert eng.run(workflow(fns, states)).output["error"] == {"code": "py.failed", "msg": "cannot handle Bob"}
    crashed = eng.run(workflow(fns, [action("a", {}, fid="crash", catch=[{"error": "*"}])]))
    assert not crashed.ok and "RuntimeError: boom" in crashed.error.message
    slow = eng.run(workflow(fns, [action("a", {}, fid="wait", timeout="PT0.2S")]))
    assert slow.error.code == "direktiv.cancels.timeout.soft"


def test_unknown_function_field_gets_did_you_mean(eng: isolde.Engine) -> None:
    wf = workflow("- " + json.dumps({"id": "p", "type": "process", "comand": ["x"]}), [action("a", {}, fid="p")])
    text = "\n".join(str(d) for d in eng.validate(wf))
    assert "did you mean 'command'" in text


# --------------------------------------------------------------------------- subflows


def test_corpus_catch_of_a_failing_subflow(cli: Any, tmp_path: Path) -> None:
    if not CORPUS.is_dir():
        pytest.skip("Direktiv corpus not found")
    for name in ("catch.yaml", "error.yaml"):
        (tmp_path / name).write_bytes((CORPUS / "v06-v10-knative" / name).read_bytes())
    out = cli("run", str(tmp_path / "catch.yaml"))
    assert out.code == 0, out.stderr
    assert out.json == {"error": {"code": "testcode", "msg": "this is a test error"}}


def test_subflow_output_is_the_return_and_depth_is_limited(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("states:\n- id: c\n  type: noop\n  transform: 'jq({doubled: (.n * 2)})'\n")
    (tmp_path / "parent.yaml").write_text(workflow(
        "- " + json.dumps({"id": "child", "type": "subflow", "workflow": "child"}),
        [action("a", {"n": 21}, fid="child")]))
    (tmp_path / "loop.yaml").write_text(workflow(
        "- " + json.dumps({"id": "me", "type": "subflow", "workflow": "/loop.yaml"}), [action("a", {}, fid="me")]))
    with make_engine(data_dir, limits={"max_subflow_depth": 3}) as engine:
        assert engine.run(tmp_path / "parent.yaml").output == {"return": {"doubled": 42}}
        res = engine.run(tmp_path / "loop.yaml")
        assert res.error.code == "direktiv.limits.depth" and "max_subflow_depth" in res.error.message


def test_async_subflow_runs_in_the_background(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(
        "states:\n- id: s\n  type: setter\n  variables:\n  - key: bg\n    scope: namespace\n    value: 'jq(.v)'\n")
    (tmp_path / "parent.yaml").write_text(workflow(
        "- " + json.dumps({"id": "child", "type": "subflow", "workflow": "child.yaml"}),
        [action("a", {"v": "done"}, fid="child", **{"async": True})]))
    with make_engine(data_dir) as engine:
        res = engine.run(tmp_path / "parent.yaml")
        assert res.ok and res.output == {}
    with make_engine(data_dir) as engine:  # the engine waited for the child when it closed
        assert engine.variables.value("bg", scope="namespace") == "done"


# --------------------------------------------------------------------------- the examples, through the CLI


def test_examples_run_as_documented(cli: Any) -> None:
    cli.cwd = EXAMPLES  # picks up examples/isolde.toml, as the docs show
    out = cli("run", "greeter.yaml", "--input", '{"name": "Trent"}')
    assert out.code == 0, out.stderr
    assert out.json == {"greeting": "Welcome to Direktiv, Trent!"}
    out = cli("run", "greeter.yaml", "--input", "{}")
    assert out.code == 0 and out.json["greeting"] == "Hello, whoever you are"

    out = cli("run", "files.yaml")
    assert out.code == 0, out.stderr
    assert out.json["words"] == 6 and out.json["stored"]["wordcount"] == 6
    with isolde.Engine(data_dir=cli.data_dir, config={}) as engine:
        report = engine.variables.get("report", scope="namespace")
    assert report is not None
    with tarfile.open(fileobj=io.BytesIO(report.data), mode="r:gz") as tf:
        assert tf.getnames() == ["README", "parts", "parts/templates.txt"]

    for n in (1, 2):
        out = cli("run", "sidecar.yaml", "--input", '{"name": "Ada"}')
        assert out.code == 0, out.stderr
        assert out.json["var"]["visits"] == n
        assert f"visit {n}: Ada" in out.stderr  # the isolate's /log line is in the instance log on stderr


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"images": {"x": {"command": ["a"], "url": "http://127.0.0.1:1/"}}}, "exactly one of command"),
        ({"images": {"x": {"comand": ["a"]}}}, "unknown setting 'comand'"),
        ({"images": {"x": {"url": "ftp://host/"}}}, "http://127.0.0.1:8080/"),
        ({"actions": {"timout": 5}}, "unknown setting [actions] 'timout'"),
        ({"actions": {"timeout": "soon"}}, "ISO-8601"),
    ],
)
def test_bad_isolate_settings_fail_at_engine_start(data_dir: Path, config: dict[str, Any], needle: str) -> None:
    with pytest.raises(isolde.ConfigError) as err:
        isolde.Engine(data_dir=data_dir, config=config)
    assert needle in str(err.value)


def test_actions_timeout_setting_is_the_default_deadline(data_dir: Path, record: Path) -> None:
    with make_engine(data_dir, actions={"timeout": "PT0.3S"}) as engine:
        res = engine.run(workflow(probe_function(record), [action("a", {"op": "hang", "seconds": 10})]))
        assert res.error.code == "direktiv.cancels.timeout.soft" and "0.3s" in res.error.message


def _pids_running(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def test_process_isolates_die_with_a_killed_isolde(tmp_path: Path, data_dir: Path) -> None:
    """kill -9 of isolde must not leave its isolates running (they are supervised)."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / f"greeter-{os.getpid()}-orphan.py"
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "isolates" / "greeter.py", script)
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "functions:\n- id: g\n  type: process\n"
        # through a wrapper shell: the real server is a grandchild of the supervisor
        f"  command: [bash, -c, {json.dumps(sys.executable + ' ' + str(script) + '; echo exited')}]\n"
        "states:\n- id: a\n  type: action\n  action:\n    function: g\n    input: {name: x}\n  transition: b\n"
        "- id: b\n  type: delay\n  duration: PT60S\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["ISOLDE_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "run", str(wf)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _pids_running(script.name):
            assert time.monotonic() < deadline and proc.poll() is None, "the isolate never started"
            time.sleep(0.05)
        time.sleep(0.3)  # the action has been answered; the instance sits in its delay
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _pids_running(script.name):
            assert time.monotonic() < deadline, "isolate outlived isolde"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _pids_running(script.name):
            os.kill(pid, 9)


def test_an_isolate_dying_mid_call_is_reported_with_its_exit_code_and_output(data_dir: Path, tmp_path: Path) -> None:
    import sys

    script = tmp_path / "dies.py"
    script.write_text(
        "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n        print('about to die: diag-42', flush=True)\n        os._exit(3)\n"
        "    def log_message(self, *a):\n        pass\n"
        "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    fn = "- " + json.dumps({"id": "d", "type": "process", "command": [sys.executable, str(script)]})
    with make_engine(data_dir) as engine:
        res = engine.run(workflow(fn, [action("a", {}, fid="d")]))
    assert res.error is not None and res.error.code == "isolde.isolate.unavailable"
    assert "exited with code 3" in res.error.message and "diag-42" in res.error.message


# --------------------------------------------------------------------------- containment (issue 12)


ENV_ISOLATE = (
    "import json, os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
    "class H(BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    "        self.rfile.read(int(self.headers.get('Content-Length') or 0))\n"
    "        body = json.dumps(sorted(os.environ)).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *a):\n        pass\n"
    "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
)


def test_an_isolate_process_gets_a_minimal_environment_not_isoldes(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISOLDE_API_TOKEN", "api-token")
    monkeypatch.setenv("ISOLDE_SECRET_DB", "hunter2")
    monkeypatch.setenv("SOME_TOOL_SETTING", "passed on by name")
    script = tmp_path / "env.py"
    script.write_text(ENV_ISOLATE)
    fn = "- " + json.dumps({"id": "e", "type": "process", "command": [sys.executable, str(script)],
                            "env": {"MINE": "1"}})
    with make_engine(data_dir, actions={"pass_env": ["SOME_TOOL_SETTING"]}) as engine:
        res = engine.run(workflow(fn, [action("a", {}, fid="e")]))
    assert res.ok, res.error
    names = set(res.output["return"])
    assert not {n for n in names if n.startswith("ISOLDE_")}, names
    assert {"PORT", "DIREKTIV_SIDECAR", "MINE", "PATH", "SOME_TOOL_SETTING"} <= names
    assert names <= {"PORT", "DIREKTIV_SIDECAR", "MINE", "SOME_TOOL_SETTING", *isolde_base_env()}, names


def isolde_base_env() -> set[str]:
    from isolde.isolates.settings import BASE_ENVIRONMENT

    return {*BASE_ENVIRONMENT, *(k for k in os.environ if k.startswith("LC_"))}


def test_an_isolate_that_dies_mid_action_commits_none_of_its_out_files(data_dir: Path, tmp_path: Path) -> None:
    """Only a reply commits out/: a process that wrote a file and then died without answering
    (a crash, SIGKILL) leaves nothing behind, even where a catch handles the error."""
    script = tmp_path / "dies.py"
    script.write_text(
        "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        "        d = self.headers['Direktiv-TempDir']\n"
        "        with open(os.path.join(d, 'out', 'workflow', 'half'), 'w') as f:\n            f.write('partial')\n"
        "        os._exit(9)\n"
        "    def log_message(self, *a):\n        pass\n"
        "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"
    )
    fn = "- " + json.dumps({"id": "d", "type": "process", "command": [sys.executable, str(script)]})
    states = [action("a", {}, fid="d", catch=[{"error": "*", "transition": "handled"}]),
              {"id": "handled", "type": "noop"}]
    with make_engine(data_dir) as engine:
        res = engine.run(workflow(fn, states), namespace="ns")
        assert res.ok and res.output["error"]["code"] == "isolde.isolate.unavailable", res
        assert engine.variables.get("half", scope="workflow", workflow="workflow", namespace="ns") is None


def test_an_error_reply_still_commits_the_out_files(data_dir: Path, record: Path) -> None:
    """The other side of the rule: an isolate that answered with Direktiv-ErrorCode finished,
    so what it left in out/ is kept (and a catch sees the error)."""
    states = [action("a", {"op": "out", "files": {"workflow/kept": "yes"}, "code": "probe.failed"}, fid="probe",
                     catch=[{"error": "*", "transition": "handled"}]),
              {"id": "handled", "type": "noop"}]
    with make_engine(data_dir) as engine:
        res = engine.run(workflow(probe_function(record), states), namespace="ns")
        assert res.ok, res.error
        var = engine.variables.get("kept", scope="workflow", workflow="workflow", namespace="ns")
        assert var is not None and var.data == b"yes"
