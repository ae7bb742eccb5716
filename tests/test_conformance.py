"""Conformance: every document of the Direktiv corpus (``../shared/corpus``, MANIFEST.md).

Each file is validated or rejected as the manifest says, and every file with a
stated result is run and must give it.  The container images the corpus calls
are played by the stand-ins of ``tests/isolates/standins.py``, mapped exactly as
a user maps a real image: an ``[images."NAME"]`` table of isolde.toml whose
``command`` isolde starts as a real process (once per engine: the engine and its
processes live for the whole module).  Workflows that call each other are laid
out as the manifest's running notes say (``catch.yaml`` beside ``/error.yaml``,
``a.yaml`` with ``/e.yaml`` stored beside it for its second run, ...), one
namespace folder per scenario.

``VERDICTS`` lists every corpus file with what this suite does with it, so a
file added to the corpus without a decision fails ``test_every_file_has_a_verdict``.
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde
from conftest import CORPUS, Cli
from helpers import wait_until

STANDINS = Path(__file__).resolve().parent / "isolates" / "standins.py"
RAW, STRUCT, KN, BAD = "v03-raw-jq", "v04-v06-structured", "v06-v10-knative", "invalid"

# image (as the corpus names it, tag stripped) -> stand-in
IMAGES = {
    "direktiv/bash": "bash",
    "/bash.yaml": "bash",  # files-a.yaml's knative-namespace service
    "direktiv/greeting": "greeting",
    "vorteil/greeting": "greeting",
    "direktiv/fastapi-example": "fastapi",
    "direktiv/request": "request",
    "vorteil/request": "request",
    "direktiv/solve": "solve",
}

# file -> "run" (a scenario below checks its stated result) or why it is only validated
VERDICTS: dict[str, str] = {
    f"{RAW}/helloworld.yaml": "run",
    f"{RAW}/eventgreeting.yaml": "run",
    f"{RAW}/template-parallel.yaml": "run",
    f"{RAW}/template-event-and.yaml": "no stated result (its `input: .greetingcloudevent` is a literal string)",
    f"{RAW}/template-event-xor.yaml": "no stated result",
    f"{RAW}/go-build.yaml": "no stated result (needs the direktiv/go image)",
    f"{STRUCT}/counter.yaml": "run",
    f"{STRUCT}/vars-loop-namespace.yaml": "run",
    f"{STRUCT}/vars-loop-workflow.yaml": "run",
    f"{STRUCT}/vars-loop-instance.yaml": "run",
    f"{STRUCT}/fastapi.yaml": "run",
    f"{STRUCT}/template-error.yaml": "run",
    f"{STRUCT}/excel-reader-files.yaml": "no stated result (needs the vmware-powercli image)",
    f"{KN}/getter-setter-test.yaml": "run",
    f"{KN}/getter-setter-test2.yaml": "run",
    f"{KN}/getter-setter-nuller.yaml": "run",
    f"{KN}/noop.yaml": "run",
    f"{KN}/simple-chain.yaml": "run",
    f"{KN}/simple-loop.yaml": "run",
    f"{KN}/instance-data.yaml": "run",
    f"{KN}/error.yaml": "run",
    f"{KN}/catch.yaml": "run",
    f"{KN}/files-a.yaml": "run",
    f"{KN}/generate-event.yaml": "run",
    f"{KN}/simple-listener.yaml": "run",
    f"{KN}/events-and-wait.yaml": "run",
    f"{KN}/events-xor-wait.yaml": "run",
    f"{KN}/mime-json.yaml": "run",
    f"{KN}/mime-text-plain.yaml": "run",
    f"{KN}/mime-octet-stream.yaml": "run",
    f"{KN}/greeting.yaml": "run",
    f"{KN}/counter-persistent-data.yaml": "run",
    f"{KN}/workflow-scope.yaml": "run",
    f"{BAD}/dangling-transition.yaml": "rejected",
    f"{BAD}/undeclared-function.yaml": "rejected",
    f"{BAD}/unparsable.yaml": "rejected",
}

# invalid/ file -> (line, column, state or None, text in the message)
REJECTIONS = {
    f"{BAD}/dangling-transition.yaml": (20, 15, "getter", "transition to unknown state 'check'"),
    f"{BAD}/undeclared-function.yaml": (9, 15, "gh", "function 'scp' is not declared"),
    f"{BAD}/unparsable.yaml": (28, 32, None, "mapping values are not allowed"),
}


# --------------------------------------------------------------------------- the site: config, engine, namespaces


class Site:
    """A folder with isolde.toml mapping the corpus images to the stand-ins, an engine on
    it, and one namespace folder per scenario (copies of corpus files under the names
    the manifest gives them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "isolde.toml"
        lines = ["[sidecar]", "port = 0", ""]
        for image, app in IMAGES.items():
            lines += [f"[images.{json.dumps(image)}]", f"command = [{json.dumps(sys.executable)}, {json.dumps(str(STANDINS))}, {json.dumps(app)}]", ""]
        self.config.write_text("\n".join(lines))
        self.engine = isolde.Engine(data_dir=root / "data", config=self.config)

    def namespace(self, name: str, files: dict[str, str]) -> Path:
        """``DIR/<name>/`` holding corpus files under new names: {"a.yaml": "v06-v10-knative/files-a.yaml"}."""
        folder = self.root / "namespaces" / name
        folder.mkdir(parents=True, exist_ok=True)
        for dst, src in files.items():
            shutil.copyfile(CORPUS / src, folder / dst)
        return folder

    def run(self, path: Path, ns: str, input: Any = None, **kw: Any) -> isolde.Result:
        return self.engine.run(path, input=input, namespace=ns, **kw)

    def value(self, key: str, ns: str, **where: Any) -> Any:
        return self.engine.variables.value(key, namespace=ns, **where)

    def stored(self, key: str, ns: str, **where: Any) -> tuple[bytes, str] | None:
        var = self.engine.variables.get(key, namespace=ns, **where)
        return None if var is None else (bytes(var.data), var.mime)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not CORPUS.is_dir():
        pytest.skip(f"Direktiv corpus not found at {CORPUS} (set ISOLDE_CORPUS)")
    s = Site(tmp_path_factory.mktemp("conformance"))
    with s.engine:
        yield s


def corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return sorted(VERDICTS)
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.yaml"))


# --------------------------------------------------------------------------- validation of every file


def test_every_file_has_a_verdict() -> None:
    if not CORPUS.is_dir():
        pytest.skip("Direktiv corpus not found")
    assert set(corpus_files()) == set(VERDICTS)
    assert {f for f, v in VERDICTS.items() if v == "rejected"} == set(REJECTIONS)


@pytest.mark.parametrize("name", corpus_files())
def test_file_validates_or_is_rejected_as_the_manifest_says(site: Site, name: str) -> None:
    diagnostics = site.engine.validate(CORPUS / name)
    if name not in REJECTIONS:
        assert [str(d) for d in diagnostics] == []
        return
    line, col, state, text = REJECTIONS[name]
    hits = [d for d in diagnostics if text in d.message]
    assert hits, [str(d) for d in diagnostics]
    assert (hits[0].line, hits[0].col, hits[0].state) == (line, col, state)


def test_the_cli_validates_the_corpus_with_located_errors_only_for_invalid(cli: Cli) -> None:
    if not CORPUS.is_dir():
        pytest.skip("Direktiv corpus not found")
    files = [str(CORPUS / f) for f in corpus_files()]
    res = cli("validate", *files)
    assert res.code == 2 and "Traceback" not in res.stderr
    # warnings (image: functions with no [images] mapping) are located too, but do not flag a file
    flagged = {line.split(":", 1)[0] for line in res.stderr.splitlines()[:-1] if ": warning: " not in line}
    assert flagged == {str(CORPUS / f) for f in REJECTIONS}
    assert res.stderr.splitlines()[-1].endswith(f"{len(REJECTIONS)} of {len(files)} file(s) invalid")


# --------------------------------------------------------------------------- raw-jq era


def test_helloworld_raw_jq(site: Site, cli: Cli) -> None:
    res = site.run(CORPUS / RAW / "helloworld.yaml", "hello", None)
    assert res.output == {"result": "Hello World!"}
    out = cli("run", str(CORPUS / RAW / "helloworld.yaml"))
    assert (out.code, out.json) == (0, {"result": "Hello World!"})


def test_eventgreeting_with_an_event_sent_through_the_bus(site: Site) -> None:
    """The event carries the source's example payload.  Every Direktiv engine placed an
    event at ``.<type>`` (isolde: the whole CloudEvent), so the source's
    ``{ name: .greet.name }`` finds no name there; with the name also in the
    instance input the source's stated output comes out (docs/differences.md)."""
    wf = CORPUS / RAW / "eventgreeting.yaml"
    event = {"type": "greetingEventType", "source": "greetingEventSource", "data": {"greet": {"name": "Trent"}}}
    site.engine.events.publish("eventgreeting", {**event, "source": "someone-else"})  # filtered out by context
    site.engine.events.publish("eventgreeting", event)
    res = site.run(wf, "eventgreeting")
    assert res.ok, res.error
    assert res.output == {"greeting": "Welcome to Direktiv, !"}
    site.engine.events.publish("eventgreeting", event)
    res = site.run(wf, "eventgreeting", {"greet": {"name": "Trent"}})
    assert res.output == {"greeting": "Welcome to Direktiv, Trent!"}
    assert site.engine.events.pending("eventgreeting")[0]["source"] == "someone-else"


def test_template_parallel_solves_all_four(site: Site) -> None:
    res = site.run(CORPUS / RAW / "template-parallel.yaml", "parallel")
    assert res.ok, res.error
    assert res.output == {"return": [20, 0, 8, 12]}


# --------------------------------------------------------------------------- structured era


@pytest.mark.parametrize(
    ("name", "wid", "key"),
    [(f"{STRUCT}/counter.yaml", "getter-and-setter", "ExampleVariableCounter"),
     (f"{KN}/counter-persistent-data.yaml", "counter-persistent-data", "counter")],
)
def test_counters(site: Site, name: str, wid: str, key: str) -> None:
    ns = "counter-" + wid
    for n in (1, 2, 3):
        assert site.run(CORPUS / name, ns).output == {"newCounter": n, "var": {key: None if n == 1 else n - 1}}
    assert site.stored(key, ns, scope="workflow", workflow=wid) == (b"3", "application/json")


def test_vars_loops(site: Site) -> None:
    ns = "t2"
    folder = site.namespace(ns, {"testwf1.yaml": f"{STRUCT}/vars-loop-namespace.yaml",
                                 "testwf2.yaml": f"{STRUCT}/vars-loop-namespace.yaml"})
    assert site.run(folder / "testwf1.yaml", ns).ok
    assert site.stored("x", ns) == (b"5", "application/json")
    assert site.run(folder / "testwf2.yaml", ns).ok
    assert site.stored("x", ns) == (b"10", "application/json")
    for expected in (b"5", b"10"):
        assert site.run(CORPUS / STRUCT / "vars-loop-workflow.yaml", ns).ok
        assert site.stored("x", ns, scope="workflow", workflow="vars-loop-workflow") == (expected, "application/json")
    for _ in range(2):
        res = site.run(CORPUS / STRUCT / "vars-loop-instance.yaml", ns)
        assert res.output["var"] == {"x": 5}  # the instance variable reached 5, then ended with the instance
        assert site.engine.variables.list(scope="instance", instance=res.instance_id, namespace=ns) == []


@pytest.mark.parametrize(
    ("given", "output", "error"),
    [
        ({"name": "Alice"}, {"msg": "Hello Alice"}, None),
        ({"names": ["Alice", "Bobby"]}, {"msg": "Hello Alice, Hello Bobby"}, None),
        ({"name": "Al"}, None, ("greeter.shortname", "greeter")),
        ({}, None, ("greeter.nonames", "no-names")),
    ],
)
def test_fastapi(site: Site, given: Any, output: Any, error: tuple[str, str] | None) -> None:
    res = site.run(CORPUS / STRUCT / "fastapi.yaml", "fastapi", given)
    if error is None:
        assert res.ok, res.error
        assert res.output == output
    else:
        assert (res.error.code, res.error.state) == error


def test_fastapi_through_the_cli_logs_what_the_isolate_sent_the_sidecar(site: Site, cli: Cli) -> None:
    out = cli("run", "--config", str(site.config), str(CORPUS / STRUCT / "fastapi.yaml"), "--input", '{"names": ["Alice", "Bobby"]}')
    assert out.code == 0, out.stderr
    assert out.json == {"msg": "Hello Alice, Hello Bobby"}
    assert "I got the name Alice" in out.stderr and "I got the name Bobby" in out.stderr
    short = cli("run", "--config", str(site.config), str(CORPUS / STRUCT / "fastapi.yaml"), "--input", '{"name": "Al"}')
    assert short.code == 1 and "greeter.shortname" in short.stderr


def test_template_error_fails_with_the_schema_code(site: Site) -> None:
    res = site.run(CORPUS / STRUCT / "template-error.yaml", "error")
    assert (res.status, res.error.code, res.error.state) == ("failed", "direktiv.schema.*", "email-not-valid")


# --------------------------------------------------------------------------- Knative era and later


def test_t1_getter_setter_sequence(site: Site) -> None:
    ns = "t1"
    folder = site.namespace(ns, {"test.yaml": f"{KN}/getter-setter-test.yaml", "test2.yaml": f"{KN}/getter-setter-test2.yaml",
                                 "nuller.yaml": f"{KN}/getter-setter-nuller.yaml"})
    expected = [("test", {"nsx": 1, "wfx": 10, "inx": 100}), ("test", {"nsx": 2, "wfx": 20, "inx": 100}),
                ("test2", {"nsx": 3, "wfx": 10, "inx": 100}), ("nuller", {}), ("test", {"nsx": 1, "wfx": 30, "inx": 100})]
    for name, output in expected:
        res = site.run(folder / f"{name}.yaml", ns)
        assert res.ok, res.error
        assert res.output == output, name
    assert site.value("x", ns) == 1


@pytest.mark.parametrize(
    ("name", "output"),
    [("noop.yaml", {"result": "x"}), ("simple-chain.yaml", {"a": "x", "b": "y", "c": "z"}),
     ("simple-loop.yaml", {"i": 0, "result": [5, 4, 3, 2, 1]})],
)
def test_engine_tests_outputs(site: Site, name: str, output: Any) -> None:
    assert site.run(CORPUS / KN / name, "engine").output == output


@pytest.mark.parametrize(
    ("given", "output"),
    [(None, {}), (b'{"x": 5}', {"x": 5}), (b"[1, 2, 3]", {"input": [1, 2, 3]}),
     (b"Hello, world!", {"input": "SGVsbG8sIHdvcmxkIQ=="})],
)
def test_instance_data(site: Site, given: bytes | None, output: Any) -> None:
    assert site.run(CORPUS / KN / "instance-data.yaml", "data", given).output == output


def test_error_state_and_catch_of_a_failing_subflow(site: Site, cli: Cli) -> None:
    res = site.run(CORPUS / KN / "error.yaml", "t4")
    assert (res.status, res.error.code, res.error.message) == ("failed", "testcode", "this is a test error")
    folder = site.namespace("t4", {"error.yaml": f"{KN}/error.yaml", "catch.yaml": f"{KN}/catch.yaml"})
    expected = {"error": {"code": "testcode", "msg": "this is a test error"}}
    assert site.run(folder / "catch.yaml", "t4").output == expected
    out = cli("run", "--config", str(site.config), str(folder / "catch.yaml"))
    assert (out.code, out.json) == (0, expected)


def test_files_a_two_runs_with_a_namespace_file_stored_before_the_second(site: Site) -> None:
    ns = "t5"
    folder = site.namespace(ns, {"a.yaml": f"{KN}/files-a.yaml"})
    first = site.run(folder / "a.yaml", ns)
    assert first.ok, first.error
    assert first.output["var"] == {"a": 5, "b": 7, "c": 11, "d": 13, "e": None}
    results = [r["result"] for r in first.output["return"]["bash"]]
    assert (results[0], results[2], results[4], results[6], results[8]) == ("", "", 11, "", "")
    assert all(r["success"] for r in first.output["return"]["bash"])
    e_yaml = b"\n" + (CORPUS / KN / "noop.yaml").read_bytes()  # the manifest: a newline, then noop.yaml's bytes
    (folder / "e.yaml").write_bytes(e_yaml)
    second = site.run(folder / "a.yaml", ns)
    assert second.ok, second.error
    results = [r["result"] for r in second.output["return"]["bash"]]
    assert (results[0], results[2], results[4], results[6]) == (5, 7, 11, "")
    assert results[8] and results[8] == e_yaml.decode().strip()
    assert second.output["var"]["e"] == "CnN0YXRlczoKLSBpZDogYQogIHR5cGU6IG5vb3AKICB0cmFuc2Zvcm06CiAgICByZXN1bHQ6IHg="
    assert base64.b64decode(second.output["var"]["e"]) == e_yaml


def test_files_a_through_the_cli(site: Site, cli: Cli, tmp_path: Path) -> None:
    shutil.copyfile(CORPUS / KN / "files-a.yaml", tmp_path / "a.yaml")
    (tmp_path / "e.yaml").write_bytes(b"\n" + (CORPUS / KN / "noop.yaml").read_bytes())
    out = cli("run", "--config", str(site.config), str(tmp_path / "a.yaml"), "-n", "t5")
    assert out.code == 0, out.stderr
    assert out.json["var"]["e"].startswith("CnN0YXRlczoK") and out.json["var"]["c"] == 11
    assert cli("vars", "get", "a", "-n", "t5").stdout == "5"
    assert cli("vars", "get", "b", "-n", "t5", "-w", "a").stdout == "7"


def test_generate_event_emits_after_its_delay(site: Site) -> None:
    started = time.monotonic()
    res = site.run(CORPUS / KN / "generate-event.yaml", "events")
    assert res.ok and time.monotonic() - started >= 1.0
    [kept] = site.engine.events.pending("events")
    assert (kept["type"], kept["source"]) == ("test.simple", "generate-event")
    listener = "states:\n- id: l\n  type: consumeEvent\n  timeout: PT1S\n  event:\n    type: test.simple\n"
    assert site.run(listener, "events").ok  # takes the kept event


def test_simple_listener_spins_off_the_generator(site: Site) -> None:
    folder = site.namespace("listener", {"simple-listener.yaml": f"{KN}/simple-listener.yaml",
                                         "generate-event.yaml": f"{KN}/generate-event.yaml"})
    res = site.run(folder / "simple-listener.yaml", "listener")
    assert res.ok, res.error
    assert res.output["result"] == "x"


def _waiting(site: Site, wf: Path, ns: str) -> tuple[threading.Thread, list[isolde.Result]]:
    out: list[isolde.Result] = []
    t = threading.Thread(target=lambda: out.append(site.run(wf, ns)))
    t.start()
    wait_until(lambda: site.engine.events.waiting(ns) != [])
    return t, out


def test_events_and_waits_for_both(site: Site) -> None:
    t, out = _waiting(site, CORPUS / KN / "events-and-wait.yaml", "and")
    site.engine.events.publish("and", {"type": "eventtype1", "source": "test", "hello": "world1"})
    # an event is offered to the waits inside publish(): one still listed did not complete
    assert site.engine.events.waiting("and") and not out  # still pending after the first
    site.engine.events.publish("and", {"type": "eventtype2", "source": "test", "hello": "world2"})
    t.join(60)
    assert out[0].output["eventtype1"]["hello"] == "world1" and out[0].output["eventtype2"]["hello"] == "world2"


def test_events_xor_takes_the_first(site: Site) -> None:
    t, out = _waiting(site, CORPUS / KN / "events-xor-wait.yaml", "xor")
    site.engine.events.publish("xor", {"type": "eventtype1", "source": "test", "hello": "world1"})
    t.join(60)
    assert out[0].output["eventtype1"]["hello"] == "world1"


@pytest.mark.parametrize(
    ("name", "key", "data", "mime"),
    [("mime-json", "StringVar", b'"hello\\nworld"', "application/json"),
     ("mime-text-plain", "StringVar", b"hello\nworld", "text/plain"),
     ("mime-octet-stream", "MessageVar", b"hello from direktiv", "application/octet-stream")],
)
def test_setter_mime_types(site: Site, name: str, key: str, data: bytes, mime: str) -> None:
    assert site.run(CORPUS / KN / f"{name}.yaml", "mime").ok
    assert site.stored(key, "mime", scope="workflow", workflow=name) == (data, mime)


def test_greeting(site: Site, cli: Cli) -> None:
    res = site.run(CORPUS / KN / "greeting.yaml", "greeting", {"name": "Trent"})
    assert res.output == {"greeting": "Welcome to Direktiv, Trent!"}
    bad = site.run(CORPUS / KN / "greeting.yaml", "greeting", {"nom": "Trent"})
    assert bad.error.code == "direktiv.schema.failed"
    out = cli("run", "--config", str(site.config), str(CORPUS / KN / "greeting.yaml"), "--input", '{"name": "Trent"}')
    assert (out.code, out.json) == (0, {"greeting": "Welcome to Direktiv, Trent!"})


def test_workflow_scope_with_a_bash_command_writing_out(site: Site) -> None:
    res = site.run(CORPUS / KN / "workflow-scope.yaml", "scope")
    assert res.ok, res.error
    assert res.output == {"my-x": "This is my value", "my-y": "my fn value"}
    assert site.stored("y", "scope", scope="workflow", workflow="workflow-scope") == (b'"my fn value"\n', "application/octet-stream")


# --------------------------------------------------------------------------- the request stand-in (manifest D10)


WEBSITE_CHANGE = """\
description: Has a web page changed since the last run? (after the manifest's D10, written for this test)
functions:
- id: request
  image: direktiv/request:v4
  type: reusable
states:
- id: last
  type: getter
  variables:
  - key: etag
    scope: workflow
  - key: lastModified
    scope: workflow
  transition: fetch
- id: fetch
  type: action
  action:
    function: request
    input:
      method: GET
      url: jq(.url)
  transition: headers
- id: headers
  type: switch
  conditions:
  - condition: 'jq(.return.headers.["Etag"] or .return.headers.["Last-Modified"])'
    transition: compare
    transform: 'jq(.etag = .return.headers.["Etag"][0] | .lastModified = .return.headers.["Last-Modified"][0] | del(.return))'
  defaultTransition: unsupported
- id: compare
  type: noop
  transform: 'jq(.siteChanged = (.etag != .var.etag or .lastModified != .var.lastModified) | del(.url))'
  transition: remember
- id: remember
  type: setter
  variables:
  - key: etag
    scope: workflow
    value: jq(.etag)
  - key: lastModified
    scope: workflow
    value: jq(.lastModified)
- id: unsupported
  type: error
  error: unsupported.site
  message: 'the site sends neither Etag nor Last-Modified'
"""


@pytest.fixture
def website() -> Iterator[tuple[str, dict[str, str]]]:
    headers: dict[str, str] = {"Etag": '"x"', "Last-Modified": "d"}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", headers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_website_change_with_the_request_stand_in(site: Site, website: tuple[str, dict[str, str]]) -> None:
    url, headers = website
    wf = site.root / "website-change.yaml"
    wf.write_text(WEBSITE_CHANGE)
    first = site.run(wf, "d10", {"url": url})
    assert first.ok, first.error
    assert first.output["siteChanged"] is True and first.output["var"] == {"etag": None, "lastModified": None}
    second = site.run(wf, "d10", {"url": url})
    assert second.output == {"etag": '"x"', "lastModified": "d", "siteChanged": False,
                             "var": {"etag": '"x"', "lastModified": "d"}}
    headers.clear()
    third = site.run(wf, "d10", {"url": url})
    assert (third.status, third.error.code) == ("failed", "unsupported.site")
