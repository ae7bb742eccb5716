"""The sidecar over real HTTP, on a real LMDB store (SPEC §4.4).

Every server here binds 127.0.0.1 on a free port (``port=0`` or a port a first
sidecar got), except the one test that checks the Direktiv default 8889.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde
from isolde.errors import ConfigError
from isolde.sidecar import DEFAULT_PORT, Sidecar, SidecarError, is_loopback_host
from isolde.store import LmdbStore, Ref

NS, WF, INST = "default", "wf", "inst-a"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    st = LmdbStore(tmp_path / "store")
    yield st
    st.close()


@pytest.fixture
def sidecar(store: LmdbStore) -> Iterator[Sidecar]:
    sc = Sidecar(store, port=0)
    yield sc
    sc.close()


class Log(list[str]):
    """Collects the instance-log lines one grant receives."""

    def __call__(self, line: str) -> None:
        self.append(line)


def request(sc: Sidecar | str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    address = sc if isinstance(sc, str) else sc.address
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def var_path(aid: str, key: str = "x", scope: str = "workflow") -> str:
    return f"/var?aid={aid}&scope={scope}&key={key}"


def raw_exchange(sc: Sidecar, head: bytes, timeout: float = 5) -> bytes:
    """Send a hand-made request head (no body) and return everything answered
    until the server closes or goes quiet."""
    host, port = sc.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and out.split(b"\r\n\r\n", 1)[1] and b"Connection: close" not in out:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


# --------------------------------------------------------------------------- variables


def test_get_missing_variable_is_200_and_empty(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    status, headers, body = request(sidecar, "GET", var_path(aid))
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "0"


def test_post_then_get_keeps_bytes_and_mime(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    payload = bytes(range(256)) * 3
    status, _, body = request(sidecar, "POST", var_path(aid, "blob"), payload, {"Content-Type": "image/x-test"})
    assert (status, body) == (200, b"")
    status, headers, body = request(sidecar, "GET", var_path(aid, "blob"))
    assert status == 200 and body == payload
    assert headers["content-type"] == "image/x-test"
    stored = store.get(Ref(NS, "workflow", WF, "blob"))
    assert stored is not None and stored.data == payload and stored.mime == "image/x-test"


def test_post_without_content_type_stores_octet_stream(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    host, port = sidecar.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", var_path(aid, "raw"), skip_accept_encoding=True)
    conn.putheader("Content-Length", "3")
    conn.endheaders(b"abc")
    assert conn.getresponse().status == 200
    conn.close()
    stored = store.get(Ref(NS, "workflow", WF, "raw"))
    assert stored is not None and (stored.data, stored.mime) == (b"abc", "application/octet-stream")


def test_empty_post_deletes(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    assert request(sidecar, "POST", var_path(aid), b"1")[0] == 200
    assert store.get(Ref(NS, "workflow", WF, "x")) is not None
    assert request(sidecar, "POST", var_path(aid), b"")[0] == 200
    assert store.get(Ref(NS, "workflow", WF, "x")) is None
    assert request(sidecar, "GET", var_path(aid))[2] == b""


def test_each_scope_reaches_only_its_grants_owner(sidecar: Sidecar, store: LmdbStore) -> None:
    a = sidecar.grant("ns1", "wf1", "inst-a", Log())
    b = sidecar.grant("ns1", "wf2", "inst-b", Log())  # same namespace, other workflow and instance
    c = sidecar.grant("ns2", "wf1", "inst-c", Log())  # other namespace, same workflow name
    for scope in ("instance", "workflow", "namespace"):
        assert request(sidecar, "POST", var_path(a, "k", scope), f"from-a-{scope}".encode())[0] == 200

    def read(aid: str, scope: str) -> bytes:
        status, _, body = request(sidecar, "GET", var_path(aid, "k", scope))
        assert status == 200
        return body

    assert [read(a, s) for s in ("instance", "workflow", "namespace")] == [
        b"from-a-instance", b"from-a-workflow", b"from-a-namespace"]
    assert read(b, "instance") == b"" and read(b, "workflow") == b""
    assert read(b, "namespace") == b"from-a-namespace"  # namespace scope is shared by its namespace
    assert [read(c, s) for s in ("instance", "workflow", "namespace")] == [b"", b"", b""]

    # B writing the same key lands with B's owners, leaving A's untouched.
    for scope in ("instance", "workflow"):
        assert request(sidecar, "POST", var_path(b, "k", scope), b"from-b")[0] == 200
    assert read(a, "instance") == b"from-a-instance" and read(a, "workflow") == b"from-a-workflow"
    assert store.get(Ref("ns1", "instance", "inst-b", "k")).data == b"from-b"  # type: ignore[union-attr]
    assert store.get(Ref("ns1", "workflow", "wf2", "k")).data == b"from-b"  # type: ignore[union-attr]
    assert store.get(Ref("ns1", "instance", "inst-a", "k")).data == b"from-a-instance"  # type: ignore[union-attr]
    assert store.get(Ref("ns2", "namespace", "", "k")) is None


def test_missing_scope_means_instance_and_registers_it(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    assert request(sidecar, "POST", f"/var?aid={aid}&key=k", b"v")[0] == 200
    assert store.get(Ref(NS, "instance", INST, "k")).data == b"v"  # type: ignore[union-attr]
    store.end_instance(NS, INST)  # what the engine does when the instance ends
    assert store.get(Ref(NS, "instance", INST, "k")) is None


def test_unknown_and_revoked_aid_are_404(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    assert request(sidecar, "POST", var_path(aid), b"1")[0] == 200
    sidecar.revoke(aid)
    for path in (var_path(aid), f"/log?aid={aid}&log=hi", var_path("nope"), "/var?scope=workflow&key=x"):
        status, headers, body = request(sidecar, "GET", path)
        assert status == 404 and "aid" in error_of(body)
        assert headers["content-type"] == "application/json"
    assert request(sidecar, "POST", var_path(aid), b"2")[0] == 404
    sidecar.revoke(aid)  # twice is harmless


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("scope=global&key=x", "must be one of instance, workflow, namespace"),
        ("scope=workflow&key=1x", "starts with a letter"),
        ("scope=workflow&key=a/b", "starts with a letter"),
        ("scope=workflow&key=", "starts with a letter"),
        ("scope=workflow&key=" + "a" * 256, "at most 255 bytes"),
    ],
)
def test_bad_scope_or_key_is_400_and_logged(sidecar: Sidecar, query: str, needle: str) -> None:
    log = Log()
    aid = sidecar.grant(NS, WF, INST, log)
    for method in ("GET", "POST"):
        status, _, body = request(sidecar, method, f"/var?aid={aid}&{query}", b"v" if method == "POST" else None)
        assert status == 400 and needle in error_of(body)
    assert len(log) == 2 and all(line.startswith("sidecar: ") and needle in line for line in log)


def test_oversized_content_length_is_413_without_sending_the_body(store: LmdbStore) -> None:
    log = Log()
    with Sidecar(store, port=0, max_body=1000) as sc:
        aid = sc.grant(NS, WF, INST, log)
        head = (f"POST {var_path(aid)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {1 << 40}\r\nExpect: 100-continue\r\n\r\n").encode()
        answer = raw_exchange(sc, head)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"100 Continue" not in answer  # refused before inviting the body
        assert b"1000-byte limit" in answer and b"max_body" in answer
        assert request(sc, "POST", var_path(aid), b"x" * 1000)[0] == 200  # at the limit is fine
        assert request(sc, "POST", var_path(aid), b"x" * 1001)[0] == 413
        assert store.get(Ref(NS, "workflow", WF, "x")).size == 1000  # type: ignore[union-attr]
        assert any("413" in line for line in log)


def test_oversized_chunked_body_is_413(store: LmdbStore) -> None:
    with Sidecar(store, port=0, max_body=100) as sc:
        aid = sc.grant(NS, WF, INST, Log())
        host, port = sc.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", var_path(aid), body=iter([b"a" * 60, b"b" * 60]), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413 and "at least 120 bytes" in error_of(resp.read())
        conn.close()
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("POST", var_path(aid), body=iter([b"a" * 40, b"b" * 40]), encode_chunked=True)
        assert conn.getresponse().status == 200
        conn.close()
        assert store.get(Ref(NS, "workflow", WF, "x")).data == b"a" * 40 + b"b" * 40  # type: ignore[union-attr]


def test_expect_continue_is_answered_once_accepted(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    host, port = sidecar.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"POST {var_path(aid)} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                  "Expect: 100-continue\r\n\r\n".encode())
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(1000).startswith(b"HTTP/1.1 200 OK\r\n")
    assert store.get(Ref(NS, "workflow", WF, "x")).data == b"hello"  # type: ignore[union-attr]


def test_variable_limit_from_config_caps_the_body(tmp_path: Path) -> None:
    config = {"sidecar": {"port": 0, "max_body": 1 << 20}, "limits": {"max_variable_bytes": 10}}
    with isolde.Engine(data_dir=tmp_path / "data", config=config) as engine:
        sc = engine.services.functions.get().files.sidecar
        assert engine.services.functions.get().files.sidecar is sc  # one per engine
        aid = sc.grant(NS, WF, INST, Log())
        status, _, body = request(sc, "POST", var_path(aid), b"x" * 11)
        assert status == 413 and "max_variable_bytes" in error_of(body)
        assert request(sc, "POST", var_path(aid), b"x" * 10)[0] == 200
        assert engine.variables.get("x", scope="workflow", workflow=WF).data == b"x" * 10  # type: ignore[union-attr]


# --------------------------------------------------------------------------- log


def test_log_by_post_and_by_get(sidecar: Sidecar) -> None:
    log = Log()
    aid = sidecar.grant(NS, WF, INST, log)
    assert request(sidecar, "POST", f"/log?aid={aid}", "héllo\n".encode())[0] == 200
    assert request(sidecar, "GET", f"/log?aid={aid}&log=from%20get")[0] == 200
    assert request(sidecar, "POST", f"/log?aid={aid}", b"")[0] == 200  # empty: accepted, nothing logged
    assert log == ["héllo", "from get"]


def test_revoke_waits_for_a_write_under_way(sidecar: Sidecar) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_log(line: str) -> None:
        entered.set()
        release.wait(5)

    aid = sidecar.grant(NS, WF, INST, slow_log)
    answer: list[int] = []
    client = threading.Thread(target=lambda: answer.append(request(sidecar, "GET", f"/log?aid={aid}&log=x")[0]))
    client.start()
    assert entered.wait(5)
    revoked = threading.Event()
    revoker = threading.Thread(target=lambda: (sidecar.revoke(aid), revoked.set()))
    revoker.start()
    assert not revoked.wait(0.2)  # still inside the log call
    release.set()
    assert revoked.wait(5)
    client.join(5)
    revoker.join(5)
    assert answer == [200]
    assert request(sidecar, "GET", f"/log?aid={aid}&log=x")[0] == 404


# --------------------------------------------------------------------------- browser protection, methods, paths


@pytest.mark.parametrize("host", ["example.com", "evil.example:8889", "127.0.0.1.evil.example", "10.0.0.1",
                                  "0.0.0.0", "[::2]", "localhost:x", "[::1", ""])
def test_non_loopback_host_is_403(sidecar: Sidecar, host: str) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    status, _, body = request(sidecar, "GET", var_path(aid), headers={"Host": host})
    assert status == 403 and "loopback" in error_of(body)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8889", "127.3.2.1:1", "localhost", "LOCALHOST:80",
                                  "[::1]", "[::1]:8889"])
def test_loopback_hosts_are_accepted(sidecar: Sidecar, host: str) -> None:
    assert is_loopback_host(host)
    aid = sidecar.grant(NS, WF, INST, Log())
    assert request(sidecar, "GET", var_path(aid), headers={"Host": host})[0] == 200


@pytest.mark.parametrize("header", [("Origin", "http://127.0.0.1:8889"), ("Origin", "null"),
                                    ("Sec-Fetch-Site", "cross-site")])
def test_browser_requests_are_403(sidecar: Sidecar, store: LmdbStore, header: tuple[str, str]) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    status, _, body = request(sidecar, "POST", var_path(aid), b"1", headers=dict([header]))
    assert status == 403 and "browser" in error_of(body)
    assert store.get(Ref(NS, "workflow", WF, "x")) is None


def test_other_methods_are_405_and_other_paths_404(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    for method in ("PUT", "DELETE", "PATCH", "HEAD", "BREW"):
        status, headers, _ = request(sidecar, method, var_path(aid), b"1" if method != "HEAD" else None)
        assert status == 405, method
        assert headers["allow"] == "GET, POST"
    status, _, body = request(sidecar, "GET", f"/vars?aid={aid}&scope=workflow&key=x")
    assert status == 404 and "/var and /log" in error_of(body)


def test_malformed_requests_are_400(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    path = var_path(aid)
    for head in (
        f"POST {path} HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
        f"GET {path} HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "NONSENSE\r\n\r\n",
    ):
        answer = raw_exchange(sidecar, head.encode())
        assert answer.startswith(b"HTTP/1.1 400 "), (head, answer)
    assert raw_exchange(sidecar, f"GET {path} HTTP/2.0\r\n\r\n".encode()).startswith(b"HTTP/1.1 505 ")


def test_keep_alive_serves_many_requests_on_one_connection(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    host, port = sidecar.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(50):
        conn.request("POST", var_path(aid), body=str(i).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"")
        conn.request("GET", var_path(aid))
        assert conn.getresponse().read() == str(i).encode()
    sock = conn.sock
    conn.request("GET", var_path("unknown"))
    assert conn.getresponse().status == 404
    assert conn.sock is sock  # errors on bodiless requests keep the connection
    conn.close()


# --------------------------------------------------------------------------- ports and lifecycle


def port_of(sc: Sidecar) -> int:
    return int(sc.address.rsplit(":", 1)[1])


def test_taken_port_falls_back_to_a_free_one_with_a_notice(store: LmdbStore, sidecar: Sidecar) -> None:
    taken = port_of(sidecar)
    notices: list[str] = []
    with Sidecar(store, port=taken, notice=notices.append) as second:
        aid = second.grant(NS, WF, INST, Log())
        port = port_of(second)
        assert port != taken
        assert notices == [
            f"sidecar port {taken} is taken; using 127.0.0.1:{port} "
            "(isolates learn it from Direktiv-Sidecar / DIREKTIV_SIDECAR)"
        ]
        assert request(second, "POST", var_path(aid), b"ok")[0] == 200


def test_pinned_taken_port_is_an_error(store: LmdbStore, sidecar: Sidecar) -> None:
    taken = port_of(sidecar)
    pinned = Sidecar(store, port=taken, pinned=True)
    with pytest.raises(SidecarError, match=rf"port {taken} .* is taken .*pinned = true"):
        pinned.grant(NS, WF, INST, Log())
    pinned.close()


def test_server_starts_on_first_use_and_close_frees_the_port(store: LmdbStore) -> None:
    sc = Sidecar(store, port=0)
    assert not sc.running  # nothing listens until an action needs it
    aid = sc.grant(NS, WF, INST, Log())
    port = port_of(sc)
    host, _ = sc.address.rsplit(":", 1)
    idle = socket.create_connection((host, port), timeout=5)  # an idle keep-alive client
    assert request(sc, "GET", var_path(aid))[0] == 200
    started = time.monotonic()
    sc.close()
    assert time.monotonic() - started < 1.5
    sc.close()  # idempotent
    assert idle.recv(10) == b""  # its connection was ended
    idle.close()
    with Sidecar(store, port=port, pinned=True) as again:  # the port is free again
        assert port_of(again) == port
    with pytest.raises(SidecarError, match="closed"):
        sc.grant(NS, WF, INST, Log())


def test_default_port_is_8889(store: LmdbStore) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                pytest.skip("port 8889 is in use on this machine")
            raise
    with Sidecar(store) as sc:
        assert sc.address == f"127.0.0.1:{DEFAULT_PORT}"


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"host": "0.0.0.0"}, "loopback"),
        ({"host": "192.168.1.1"}, "loopback"),
        ({"host": "example.com"}, "loopback"),
        ({"port": 70000}, "port"),
        ({"port": "8889"}, "port"),
        ({"pinned": "yes"}, "pinned"),
        ({"max_body": 0}, "max_body"),
        ({"prot": 1}, "unknown setting"),
    ],
)
def test_bad_sidecar_config_is_a_config_error(tmp_path: Path, table: dict[str, Any], needle: str) -> None:
    """Checked when the engine starts, before any workflow runs."""
    with pytest.raises(ConfigError, match=needle):
        isolde.Engine(data_dir=tmp_path / "data", config={"sidecar": table})


def test_engine_sidecar_uses_config_and_closes_with_the_engine(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {"sidecar": {"host": "localhost", "port": port, "pinned": True}}
    with isolde.Engine(data_dir=tmp_path / "data", config=config) as engine:
        sc = engine.services.functions.get().files.sidecar
        assert sc.address == f"127.0.0.1:{port}"
        log = Log()
        aid = sc.grant(NS, WF, INST, log)
        assert request(sc, "POST", var_path(aid, "n", "namespace"), b"42", {"Content-Type": "application/json"})[0] == 200
        assert engine.variables.value("n") == 42  # committed, visible at once
        store = engine.store
        with Sidecar(store, port=port, pinned=True) as other:
            with pytest.raises(SidecarError, match="taken"):
                other.grant(NS, WF, INST, Log())
    with LmdbStore(tmp_path / "other") as store2, Sidecar(store2, port=port, pinned=True) as again:
        assert port_of(again) == port  # the engine closed its sidecar: the port is free


# --------------------------------------------------------------------------- race-free updates


def test_if_match_makes_a_post_a_compare_and_set(sidecar: Sidecar, store: LmdbStore) -> None:
    log = Log()
    aid = sidecar.grant(NS, WF, INST, log)
    path = var_path(aid, "n")
    status, headers, _ = request(sidecar, "POST", path, b"1", {"If-None-Match": "*"})  # create only
    assert status == 200 and headers["etag"] == '"1"'
    status, _, body = request(sidecar, "POST", path, b"9", {"If-None-Match": "*"})
    assert status == 412 and "version 1" in error_of(body)
    status, headers, body = request(sidecar, "GET", path)
    assert (status, body, headers["etag"]) == (200, b"1", '"1"')
    status, headers, _ = request(sidecar, "POST", path, b"2", {"If-Match": '"1"'})
    assert status == 200 and headers["etag"] == '"2"'
    status, headers, body = request(sidecar, "POST", path, b"3", {"If-Match": '"1"'})  # stale
    assert status == 412 and headers["etag"] == '"2"'
    assert store.get(Ref(NS, "workflow", WF, "n")).data == b"2"  # type: ignore[union-attr]
    assert log == []  # a lost race is routine, not logged
    for bad in ({"If-Match": "*"}, {"If-Match": 'W/"2"'}, {"If-None-Match": '"2"'},
                {"If-Match": '"2"', "If-None-Match": "*"}):
        assert request(sidecar, "POST", path, b"4", bad)[0] == 400, bad
    assert request(sidecar, "POST", path, b"", {"If-Match": '"2"'})[0] == 200  # conditional delete
    assert store.get(Ref(NS, "workflow", WF, "n")) is None


def test_conditional_instance_write_is_registered(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    assert request(sidecar, "POST", var_path(aid, "k", "instance"), b"v", {"If-None-Match": "*"})[0] == 200
    store.end_instance(NS, INST)
    assert store.get(Ref(NS, "instance", INST, "k")) is None


def test_concurrent_increments_with_if_match_lose_nothing(sidecar: Sidecar) -> None:
    aids = [sidecar.grant(NS, WF, f"inst-{i}", Log()) for i in range(4)]
    path0 = var_path(aids[0], "counter")
    assert request(sidecar, "POST", path0, b"0")[0] == 200
    errors: list[BaseException] = []

    def worker(aid: str) -> None:
        try:
            host, port = sidecar.address.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            path = var_path(aid, "counter")
            for _ in range(15):
                while True:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    value, etag = int(resp.read()), resp.getheader("ETag")
                    conn.request("POST", path, body=str(value + 1).encode(), headers={"If-Match": etag or ""})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                    assert resp.status == 412
            conn.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(aid,)) for aid in aids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert request(sidecar, "GET", path0)[2] == b"60"


def test_ipv6_loopback(store: LmdbStore) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available on this machine")
    with Sidecar(store, host="::1", port=0) as sc:
        aid = sc.grant(NS, WF, INST, Log())
        assert sc.address.startswith("[::1]:")
        assert request(sc, "POST", var_path(aid), b"v6")[0] == 200
        assert request(sc, "GET", var_path(aid))[2] == b"v6"


def test_non_loopback_bind_address_is_refused(store: LmdbStore) -> None:
    with pytest.raises(SidecarError, match="not a loopback address"):
        Sidecar(store, host="0.0.0.0")


def test_http_10_gets_one_request_per_connection(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    answer = raw_exchange(sidecar, f"GET {var_path(aid)} HTTP/1.0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" in answer


# --------------------------------------------------------------------------- hostile clients (issue 12)


def open_hostile(sc: Sidecar, count: int) -> list[socket.socket]:
    """``count`` connections that each sent part of a request head and then hold."""
    host, port = sc.address.rsplit(":", 1)
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"POST /var?aid=x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ")
        socks.append(s)
    return socks


def test_slow_connections_cannot_lock_the_live_action_out(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    host, port = sidecar.address.rsplit(":", 1)
    kept = http.client.HTTPConnection(host, int(port), timeout=10)  # the isolate's kept-alive connection
    kept.request("POST", var_path(aid, "a"), body=b"1")
    assert kept.getresponse().read() == b""
    hostile = open_hostile(sidecar, 300)  # more than the 256-connection cap
    try:
        kept.request("POST", var_path(aid, "a"), body=b"2")
        assert kept.getresponse().status == 200
        status, _, body = request(sidecar, "POST", var_path(aid, "b"), b"3")  # a new connection too
        assert status == 200, body
        assert store.get(Ref(NS, "workflow", WF, "a")).data == b"2"  # type: ignore[union-attr]
        assert store.get(Ref(NS, "workflow", WF, "b")).data == b"3"  # type: ignore[union-attr]
    finally:
        kept.close()
        for s in hostile:
            s.close()


def test_a_dripping_request_times_out_as_a_whole(store: LmdbStore) -> None:
    with Sidecar(store, port=0, request_timeout=0.3) as sc:
        aid = sc.grant(NS, WF, INST, Log())
        host, port = sc.address.rsplit(":", 1)
        pace = threading.Event()  # never set: paces the drip, synchronises nothing
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"POST {var_path(aid)} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ".encode())
            answer = b""
            for _ in range(200):  # a byte every 50 ms, each well within any per-read timeout
                try:
                    s.sendall(b"a")
                except OSError:
                    break
                pace.wait(0.05)
                s.setblocking(False)
                try:
                    answer += s.recv(65536)
                except BlockingIOError:
                    pass
                except OSError:
                    break
                finally:
                    s.setblocking(True)
                if answer:
                    break
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"request_timeout" in answer
        assert request(sc, "GET", var_path(aid))[0] == 200  # the server serves on


def test_request_timeout_is_a_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="request_timeout"):
        isolde.Engine(data_dir=tmp_path / "data", config={"sidecar": {"request_timeout": 0}})
    config = {"sidecar": {"port": 0, "request_timeout": 2.5}}
    with isolde.Engine(data_dir=tmp_path / "data", config=config) as engine:
        assert engine.services.functions.get().files.sidecar.request_timeout == 2.5


def test_a_large_body_is_stored_exactly_without_being_held_in_memory(sidecar: Sidecar, store: LmdbStore) -> None:
    import tracemalloc

    aid = sidecar.grant(NS, WF, INST, Log())
    payload = bytes(range(256)) * (128 << 10)  # 32 MiB
    tracemalloc.start()
    try:
        status, _, _ = request(sidecar, "POST", var_path(aid, "big"), payload, {"Content-Type": "application/x-big"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200
    assert peak < 8 << 20, f"peak {peak} bytes while receiving a {len(payload)}-byte body"
    stored = store.get(Ref(NS, "workflow", WF, "big"))
    assert stored is not None and stored.size == len(payload) and stored.mime == "application/x-big"
    assert stored.data == payload


def test_a_chunked_body_over_the_spool_threshold_is_stored_exactly(sidecar: Sidecar, store: LmdbStore) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    parts = [bytes([i]) * 300_000 for i in range(8)]  # 2.4 MB in chunks: spooled part way through
    host, port = sidecar.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", var_path(aid, "chunked"), body=iter(parts), encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert store.get(Ref(NS, "workflow", WF, "chunked")).data == b"".join(parts)  # type: ignore[union-attr]


def test_a_key_too_long_with_its_namespace_is_400(store: LmdbStore, sidecar: Sidecar) -> None:
    log = Log()
    aid = sidecar.grant("n" * 200, "w" * 100, INST, log)
    key = "k" * 250  # legal alone (at most 255 bytes)
    for method in ("GET", "POST"):
        status, _, body = request(sidecar, method, var_path(aid, key), b"v" if method == "POST" else None)
        assert status == 400, body
        assert "too long" in error_of(body) and "shorter namespace, workflow id or key" in error_of(body)
    assert len(log) == 2 and "too long" in log[0]


def test_etag_is_a_strong_validator_matched_exactly(sidecar: Sidecar) -> None:
    aid = sidecar.grant(NS, WF, INST, Log())
    path = var_path(aid, "n")
    assert request(sidecar, "POST", path, b"1")[0] == 200
    status, headers, _ = request(sidecar, "GET", path)
    tag = headers["etag"]
    assert status == 200 and tag.startswith('"') and tag.endswith('"') and len(tag) > 2
    for near in (tag[1:-1], f"0{tag[1:-1]}", f'"0{tag[1:-1]}"', f"{tag}, {tag}", f"W/{tag}"):
        status, _, body = request(sidecar, "POST", path, b"2", {"If-Match": near})
        assert status == 400 and "exactly the ETag" in error_of(body), near
    status, headers, _ = request(sidecar, "POST", path, b"2", {"If-Match": tag})
    assert status == 200 and headers["etag"] != tag
    assert request(sidecar, "GET", path)[1]["etag"] == headers["etag"]
