"""The daemon's HTTP API, route by route, with its errors, against a real ``isolde serve``.

One daemon serves the whole module (small limits so the 413s are cheap); the
token and binding rules start their own.  Requests go through ``http.client``
(and a raw socket where the protocol itself is under test).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import wait_until
from test_daemon import InProcess, Served, _Client

LIMITS = """
[limits]
max_input_bytes = 1000
max_variable_bytes = 2000
max_event_bytes = 1000
"""

FLOWS = {
    "hello.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: a
          type: noop
          log: jq("hello " + (.name // "nobody"))
          transform:
            greeting: jq("hello " + (.name // "nobody"))
            input: jq(.input)
    """,
    "sub/fails.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: boom
          type: error
          error: app.boom
          message: "it went boom"
    """,
    "broken.yaml": """
        states:
        - id: a
          type: noop
          transition: missing
    """,
    "slow.yaml": """
        direktiv_api: workflow/v1
        states:
        - id: a
          type: nap
          seconds: 1
    """,
    "on-event.yaml": """
        direktiv_api: workflow/v1
        start:
          type: event
          event:
            type: api.test
        states:
        - id: a
          type: noop
          transform:
            got: jq(.["api.test"].data)
    """,
}


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["PYTHONPATH"] = str(site)
    return env


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    base = tmp_path_factory.mktemp("api")
    root = base / "flows"
    for name, text in FLOWS.items():
        path = root / "ns1" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    (root / "ns2").mkdir()
    cfg = base / "isolde.toml"
    cfg.write_text(LIMITS)
    d = InProcess(root, base / "data", config=cfg)
    yield d
    assert d.stop() == 0


@pytest.fixture
def serve_with(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def _serve(*args: str, ready: bool = True) -> Served:
        root = tmp_path / "flows"
        (root / "ns1").mkdir(parents=True, exist_ok=True)
        (root / "ns1" / "hello.yaml").write_text(textwrap.dedent(FLOWS["hello.yaml"]).lstrip("\n"))
        s = Served(root, tmp_path / "data", args, _env(tmp_path), tmp_path)
        started.append(s)
        return s.ready() if ready else s

    yield _serve
    for s in started:
        s.stop()


def err(r: Any) -> str:
    body = r.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert r.headers["content-type"] == "application/json"
    return str(body["error"]["code"])


def raw(d: _Client, request: bytes) -> bytes:
    """Send bytes as they are; returns the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
            if b"\r\n\r\n" in out and b"Connection: close" not in out.split(b"\r\n\r\n")[0]:
                return out


# --------------------------------------------------------------------------- discovery



def test_every_route_is_documented_and_every_documented_path_is_routed(api: InProcess) -> None:
    """The router and /api/openapi.json are made from one table: check both directions."""
    import re

    from isolde.api import ROUTES, url_map

    doc = api.get("/api/openapi.json").json
    for route in ROUTES:
        path = re.sub(r"<(?:[a-z]+:)?([a-z]+)>", r"{\1}", route.rule)
        assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)
    adapter = url_map().bind("isolde")
    samples = {"ns": "ns1", "path": "sub/wf", "key": "k", "id": "abc"}
    for path, item in doc["paths"].items():
        concrete = re.sub(r"{([a-z]+)}", lambda m: samples[m.group(1)], path)
        for method in item.keys() - {"parameters"}:
            index, args = adapter.match(concrete, method=method.upper())
            assert ROUTES[index].method == method.upper() and set(args) == set(re.findall(r"{([a-z]+)}", path))
            for name in re.findall(r"{([a-z]+)}", path):
                assert any(p["name"] == name for p in item["parameters"]), (path, name)
        assert all(op.get("summary") and op.get("responses") for m, op in item.items() if m != "parameters"), path


def test_openapi_document_lists_every_route(api: InProcess) -> None:
    r = api.get("/api/openapi.json")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    doc = r.json
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/metrics",
        "/api/openapi.json",
        "/api/status",
        "/api/namespaces",
        "/api/namespaces/{ns}/workflows",
        "/api/namespaces/{ns}/workflows/{path}/instances",
        "/api/namespaces/{ns}/instances",
        "/api/namespaces/{ns}/instances/{id}",
        "/api/namespaces/{ns}/instances/{id}/logs",
        "/api/namespaces/{ns}/instances/{id}/cancel",
        "/api/namespaces/{ns}/variables",
        "/api/namespaces/{ns}/variables/{key}",
        "/api/namespaces/{ns}/workflows/{path}/variables",
        "/api/namespaces/{ns}/workflows/{path}/variables/{key}",
        "/api/namespaces/{ns}/events",
        "/api/namespaces/{ns}/workflows/{path}/graph",
        "/api/namespaces/{ns}/instances/{id}/variables",
        "/api/namespaces/{ns}/instances/{id}/variables/{key}",
    }
    assert set(doc["paths"]["/api/namespaces/{ns}/variables/{key}"]) >= {"get", "put", "delete"}
    refs = {m.group(0) for m in __import__("re").finditer(r"#/components/\w+/\w+", r.body.decode())}
    for ref in refs:  # every $ref resolves
        _, _, kind, name = ref.split("/")
        assert name in doc["components"][kind], ref


def test_status_and_namespaces(api: InProcess) -> None:
    assert api.get("/api/namespaces").json == {"namespaces": [{"name": "ns1", "workflows": 5}, {"name": "ns2", "workflows": 0}]}
    status = api.get("/api/status").json
    assert status["workflows"] == 5 and status["invalid"] == 1 and status["namespaces"] == 2


def test_workflows_with_validation_status(api: InProcess) -> None:
    r = api.get("/api/namespaces/ns1/workflows")
    assert r.status == 200
    wfs = {w["path"]: w for w in r.json["workflows"]}
    assert sorted(wfs) == ["broken", "hello", "on-event", "slow", "sub/fails"]
    assert wfs["hello"]["valid"] and wfs["hello"]["errors"] == [] and wfs["hello"]["start"] == "default"
    assert wfs["on-event"]["start"] == "event"
    assert not wfs["broken"]["valid"] and not wfs["broken"]["serving"]
    assert "broken.yaml:4:15" in wfs["broken"]["errors"][0] and "missing" in wfs["broken"]["errors"][0]
    assert api.get("/api/namespaces/ns2/workflows").json["workflows"] == []
    r = api.get("/api/namespaces/nope/workflows")
    assert r.status == 404 and err(r) == "isolde.namespace.notFound"


# --------------------------------------------------------------------------- instances


def test_start_and_wait(api: InProcess) -> None:
    r = api.start("ns1", "hello", {"name": "Ada"})
    assert r.status == 200
    assert r.json["status"] == "complete" and r.json["output"] == {"greeting": "hello Ada", "input": None}
    assert r.json["error"] is None and r.headers["location"] == f"/api/namespaces/ns1/instances/{r.json['id']}"
    # non-object JSON and non-JSON bodies become .input, as in SPEC 2.2
    assert api.start("ns1", "hello", [1, 2]).json["output"]["input"] == [1, 2]
    r = api.request("POST", "/api/namespaces/ns1/workflows/hello/instances?wait=true", b"\xff\x00bin")
    assert r.json["output"]["input"] == base64.b64encode(b"\xff\x00bin").decode()
    assert api.request("POST", "/api/namespaces/ns1/workflows/hello/instances?wait=1").json["output"]["greeting"] == "hello nobody"
    # Direktiv-style path with a leading slash segment and extension
    assert api.request("POST", "/api/namespaces/ns1/workflows/hello.yaml/instances?wait=true").status == 200


def test_start_without_waiting_then_poll(api: InProcess) -> None:
    r = api.start("ns1", "slow", wait=False)
    assert r.status == 202 and r.json["status"] in ("pending", "running")
    iid = r.json["id"]
    # 202 answers before a worker thread has taken the instance: it may still be pending
    wait_until(lambda: api.get(f"/api/namespaces/ns1/instances/{iid}").json["status"] != "pending")
    running = api.get(f"/api/namespaces/ns1/instances/{iid}").json
    assert running["status"] == "running" and running["state"] == "a" and running["workflow"] == "slow"
    listed = {i["id"]: i for i in api.get("/api/namespaces/ns1/instances").json["instances"]}
    assert listed[iid]["status"] == "running"
    r = api.request("POST", "/api/namespaces/ns1/workflows/slow/instances?wait=true&timeout=0.1")
    assert r.status == 202 and r.json["status"] == "running"  # gave up waiting, still runs
    done = api.done("ns1", iid)
    assert done["output"] == {"naps": 1} and done["ended"] >= done["started"] >= done["created"]


def test_failed_instance_and_logs(api: InProcess) -> None:
    r = api.start("ns1", "sub/fails")
    assert r.status == 200 and r.json["status"] == "failed"
    assert r.json["error"] == {"code": "app.boom", "message": "it went boom", "state": "boom"}
    ok = api.start("ns1", "hello", {"name": "Bo"}).json["id"]
    logs = api.get(f"/api/namespaces/ns1/instances/{ok}/logs").json
    assert logs["id"] == ok and [(x["state"], x["message"]) for x in logs["logs"]] == [("a", '"hello Bo"')]  # JSON text
    assert isinstance(logs["logs"][0]["time"], float)


def test_instance_errors(api: InProcess) -> None:
    r = api.start("ns1", "nope")
    assert r.status == 404 and err(r) == "isolde.workflow.notFound"
    r = api.start("ghost", "hello")
    assert r.status == 404 and err(r) == "isolde.namespace.notFound"
    r = api.start("ns1", "broken")
    assert r.status == 409 and err(r) == "isolde.workflow.invalid" and "missing" in r.json["error"]["message"]
    r = api.request("POST", "/api/namespaces/ns1/workflows/hello/instances", b"x" * 1001)
    assert r.status == 413 and err(r) == "isolde.api.tooLarge" and "max_input_bytes" in r.json["error"]["message"]
    r = api.request("POST", "/api/namespaces/ns1/workflows/hello/instances?wait=true&timeout=soon")
    assert r.status == 400 and "timeout" in r.json["error"]["message"]
    r = api.get("/api/namespaces/ns1/workflows/hello/instances")
    assert r.status == 405 and r.headers["allow"] == "POST" and err(r) == "isolde.api.methodNotAllowed"
    for path in ("/api/namespaces/ns1/instances/no-such-id", "/api/namespaces/ns1/instances/no-such-id/logs"):
        r = api.get(path)
        assert r.status == 404 and err(r) == "isolde.instance.notFound"
    iid = api.start("ns1", "hello").json["id"]
    assert api.get(f"/api/namespaces/ns2/instances/{iid}").status == 404  # another namespace's instance
    assert api.get("/api/namespaces/ghost/instances").status == 404


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize("base", ["/api/namespaces/ns1", "/api/namespaces/ns1/workflows/hello"])
def test_variables_put_get_list_delete(api: InProcess, base: str) -> None:
    url = f"{base}/variables/greeting.txt"
    assert api.get(url).status == 404
    r = api.request("PUT", url, b"hi there", {"Content-Type": "text/plain; charset=utf-8"})
    assert r.status == 201 and r.json["key"] == "greeting.txt" and r.json["size"] == 8
    first = r.json["version"]
    r = api.request("PUT", url, b"hello", {"Content-Type": "text/plain"})
    version = r.json["version"]  # unique in the data directory, so not simply 2
    assert r.status == 200 and version > first
    r = api.get(url)
    assert r.status == 200 and r.body == b"hello" and r.headers["content-type"] == "text/plain" and r.headers["etag"] == f'"{version}"'
    head = api.request("HEAD", url)
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "5"
    api.request("PUT", f"{base}/variables/blob", b"\x00\x01")  # no Content-Type: octet-stream
    assert api.get(f"{base}/variables/blob").headers["content-type"] == "application/octet-stream"
    listed = api.get(f"{base}/variables").json["variables"]
    assert [(v["key"], v["size"], v["mime"]) for v in listed] == [
        ("blob", 2, "application/octet-stream"), ("greeting.txt", 5, "text/plain")]
    assert api.request("DELETE", url).status == 204
    r = api.request("DELETE", url)
    assert r.status == 404 and err(r) == "isolde.variable.notFound"
    assert api.request("DELETE", f"{base}/variables/blob").status == 204
    assert api.get(f"{base}/variables").json["variables"] == []


def test_variables_are_what_workflows_see(api: InProcess, tmp_path: Path) -> None:
    api.request("PUT", "/api/namespaces/ns1/workflows/hello/variables/n", b"41", {"Content-Type": "application/json"})
    assert api.get("/api/namespaces/ns1/variables/n").status == 404  # scopes are exact


def test_variable_errors(api: InProcess) -> None:
    r = api.request("PUT", "/api/namespaces/ns1/variables/1bad", b"x")
    assert r.status == 400 and err(r) == "direktiv.var.invalidKey"
    r = api.request("PUT", "/api/namespaces/ns1/variables/big", b"x" * 2001)
    assert r.status == 413 and "max_variable_bytes" in r.json["error"]["message"]
    r = api.request("POST", "/api/namespaces/ns1/variables/k", b"x")
    assert r.status == 405 and r.headers["allow"] == "GET, PUT, DELETE"
    r = api.request("PUT", "/api/namespaces/ns1/workflows/ghost/variables/k", b"x")
    assert r.status == 404 and err(r) == "isolde.workflow.notFound"
    r = api.get("/api/namespaces/ns1/workflows/ghost/variables")
    assert r.status == 404 and err(r) == "isolde.workflow.notFound"
    r = api.get("/api/namespaces/ghost/variables")
    assert r.status == 404 and err(r) == "isolde.namespace.notFound"
    r = api.request("DELETE", "/api/namespaces/ns1/variables")
    assert r.status == 405 and r.headers["allow"] == "GET"


def test_chunked_and_expect_continue(api: InProcess) -> None:
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    out = raw(api, b"PUT /api/namespaces/ns1/variables/chunky HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 201"), out
    assert api.get("/api/namespaces/ns1/variables/chunky").body == b"hello world"
    # an oversized body is refused before it is sent (no "100 Continue")
    out = raw(api, b"PUT /api/namespaces/ns1/variables/big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Length: 999999\r\nExpect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413"), out
    out = raw(api, b"PUT /api/namespaces/ns1/variables/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"Content-Length" in out, out


def test_answers_small_and_large_arrive_whole(api: InProcess) -> None:
    """A small answer goes out with its head in one write, a large one after it: both whole,
    with their length; HEAD gets the head alone."""
    from isolde.store import Put, Ref

    for size in (10, 70_000, 3 << 20):  # (over this server's upload limit: written to its store)
        data = os.urandom(size)
        api.engine.store.write([Put(Ref("ns1", "namespace", "", f"blob{size}"), data, "application/octet-stream")])
        r = api.get(f"/api/namespaces/ns1/variables/blob{size}")
        assert r.status == 200 and r.body == data and r.headers["content-length"] == str(size)
    out = raw(api, b"HEAD /api/namespaces/ns1/variables/blob70000 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"Content-Length: 70000" in out and out.endswith(b"\r\n\r\n"), out[:300]


def test_request_heads_are_parsed_strictly_and_read_in_any_case(api: InProcess) -> None:
    """The API parses request heads by the sidecar's rules (isolde.httphead): what request
    smuggling needs is refused with 400 and the connection closed; names read in any case."""
    head = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for bad, status, says in [
        (head + b"X-Long: a\r\n  folded\r\n\r\n", b"400", b"malformed header line 3"),
        (head + b"Host: 127.0.0.1\r\n\r\n", b"400", b"duplicate host"),
        (head + b"Bad Name: x\r\n\r\n", b"400", b"malformed header line 2"),
        (head + b"Transfer-Encoding: gzip\r\n\r\n", b"400", b"Transfer-Encoding"),
        (head + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", b"400", b"not both"),
        (head + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", b"431", b"more than 100"),
        (head + b"X-Big: " + b"y" * 70000 + b"\r\n\r\n", b"431", b"longer than"),
        (b"GET /api/status HTTP/2.0\r\n\r\n", b"505", b"HTTP/1.1"),
        (b"GET /api/status\r\n\r\n", b"400", b"malformed request line"),
    ]:
        out = raw(api, bad)
        assert out.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in out and says in out, (bad[:80], out)
    # lower- and upper-case names, an HTTP/1.0 request closed after its answer unless kept alive
    out = raw(api, b"PUT /api/namespaces/ns1/variables/cased HTTP/1.0\r\nhost: 127.0.0.1\r\n"
                   b"CONTENT-LENGTH: 2\r\ncontent-type: text/plain\r\n\r\nhi")
    assert out.startswith(b"HTTP/1.1 201") and b"Connection: close" in out, out  # (the server speaks 1.1)
    assert api.get("/api/namespaces/ns1/variables/cased").body == b"hi"
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        for _ in range(2):  # the same connection twice: kept alive
            s.sendall(b"GET /api/status HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200") and b"Connection: close" not in got, got


# --------------------------------------------------------------------------- events


def test_events(api: InProcess) -> None:
    r = api.request("POST", "/api/namespaces/ns1/events", json.dumps({"type": "api.test", "source": "t", "data": {"x": 1}}))
    assert r.status == 202 and r.json["type"] == "api.test" and r.json["id"]
    [iid] = r.json["instances"]
    done = api.done("ns1", iid)
    assert done["output"] == {"got": {"x": 1}} and done["trigger"] == "event"
    # binary mode: attributes in ce-* headers, the body is the data
    r = api.request("POST", "/api/namespaces/ns1/events", b'{"y": 2}',
                    {"ce-specversion": "1.0", "ce-type": "api.test", "ce-source": "t", "ce-id": "e-1", "Content-Type": "application/json"})
    assert r.status == 202 and r.json["id"] == "e-1"
    [iid] = r.json["instances"]
    assert api.done("ns1", iid)["output"] == {"got": {"y": 2}}
    # an event nobody starts from is accepted all the same
    assert api.request("POST", "/api/namespaces/ns2/events", json.dumps({"type": "other", "source": "t"})).json["instances"] == []


def test_event_errors(api: InProcess) -> None:
    r = api.request("POST", "/api/namespaces/ns1/events", b"{not json")
    assert r.status == 400 and err(r) == "isolde.event.invalid"
    r = api.request("POST", "/api/namespaces/ns1/events", json.dumps({"source": "t"}))
    assert r.status == 400 and "type" in r.json["error"]["message"]
    r = api.request("POST", "/api/namespaces/ns1/events", json.dumps([1]))
    assert r.status == 400
    r = api.request("POST", "/api/namespaces/ns1/events", json.dumps({"type": "t", "source": "s", "data": "x" * 1000}))
    assert r.status == 413 and "max_event_bytes" in r.json["error"]["message"]
    r = api.request("POST", "/api/namespaces/ghost/events", json.dumps({"type": "t", "source": "s"}))
    assert r.status == 404
    r = api.get("/api/namespaces/ns1/events")
    assert r.status == 405 and r.headers["allow"] == "POST"


# --------------------------------------------------------------------------- protocol and security


def test_unknown_paths(api: InProcess) -> None:
    for path in ("/api", "/api/", "/api/nothing", "/api/namespaces/ns1", "/api/namespaces/ns1/other",
                 "/api/namespaces/ns1/workflows/hello", "/api/namespaces/ns1/instances/x/y/z"):
        r = api.get(path)
        assert r.status == 404 and err(r) == "isolde.api.notFound", path
    r = api.request("DELETE", "/api/namespaces")
    assert r.status == 405 and r.headers["allow"] == "GET"


def test_browser_and_rebinding_requests_are_refused(api: InProcess) -> None:
    r = api.get("/api/namespaces", headers={"Origin": "http://evil.example"})
    assert r.status == 403 and err(r) == "isolde.api.forbidden"
    r = api.get("/api/namespaces", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status == 403
    r = api.get("/api/namespaces", headers={"Host": "evil.example:8890"})
    assert r.status == 403 and "loopback" in r.json["error"]["message"]
    assert api.get("/api/namespaces", headers={"Host": "localhost:1"}).status == 200


def test_token(serve_with: Callable[..., Served]) -> None:
    d = serve_with("--token", "s3cret")
    r = d.get("/api/namespaces")
    assert r.status == 401 and err(r) == "isolde.api.unauthorized" and r.headers["www-authenticate"].startswith("Bearer")
    assert d.get("/api/namespaces", headers={"Authorization": "Bearer wrong"}).status == 401
    assert d.get("/api/openapi.json", headers={"Authorization": "Bearer s3cret"}).status == 200
    r = d.request("POST", "/api/namespaces/ns1/workflows/hello/instances?wait=true", headers={"Authorization": "bearer s3cret"})
    assert r.status == 200 and r.json["status"] == "complete"


def test_beyond_loopback_needs_a_token(serve_with: Callable[..., Served]) -> None:
    d = serve_with("--api", "0.0.0.0:0", ready=False)
    assert d.proc.wait(30) == 2
    d._close()
    assert "without a token" in "\n".join(d.lines)
    d = serve_with("--api", "0.0.0.0:0", "--token", "t")
    assert d.url.startswith("http://0.0.0.0:")
    # beyond loopback the Host check is off (the token protects); the token is still needed
    assert d.get("/api/namespaces", headers={"Host": "box.example"}).status == 401
    assert d.get("/api/namespaces", headers={"Host": "box.example", "Authorization": "Bearer t"}).status == 200


def test_port_taken_is_a_clear_error(serve_with: Callable[..., Served], api: InProcess) -> None:
    d = serve_with("--api", f"127.0.0.1:{api.port}", ready=False)
    assert d.proc.wait(30) == 2
    d._close()
    assert "cannot serve the API on 127.0.0.1" in "\n".join(d.lines)
