"""Tests of the LMDB variable store against a real environment in tmp_path.

Multi-process behaviour (orphan sweep, concurrent writers, map growth seen by
another process, durability after ``kill -9``) is exercised with real child
processes, because that is where LMDB's locking and map handling matter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Any
from pathlib import Path

import pytest

from isolde.store import (
    KEY_RE,
    SCOPES,
    InvalidKey,
    LmdbStore,
    Put,
    Ref,
    StoreError,
    StoreFull,
    Variable,
    check_key,
    check_scope,
)


# Children import the store the way the engine does.
PRELUDE = textwrap.dedent(
    """
    import os, sys
    import isolde.store as st
    """
)


def run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a child Python process that has the store module as ``st``."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def store(tmp_path: Path) -> LmdbStore:
    s = LmdbStore(tmp_path / "vars")
    yield s  # type: ignore[misc]
    s.close()


def wf(key: str, workflow: str = "wf", ns: str = "ns") -> Ref:
    return Ref(ns, "workflow", workflow, key)


def last_txnid(s: LmdbStore) -> int:
    return int(s._sh.env.info()["last_txnid"])  # type: ignore[union-attr]


# --------------------------------------------------------------------------- validation


def test_scopes_and_key_rule() -> None:
    assert SCOPES == ("instance", "workflow", "namespace")
    for good in ("a", "ab", "a1", "a.b-c_d9", "x" * 255):
        check_key(good)
    for bad in ("", "1a", "a-", "a.", "_a", "a b", "a\n", "é", "a" * 256, "a/b"):
        with pytest.raises(InvalidKey) as ei:
            check_key(bad)
        assert ei.value.code == "direktiv.var.invalidKey"
        assert "starts with a letter" in str(ei.value)
    with pytest.raises(InvalidKey):
        check_key(5)  # type: ignore[arg-type]
    assert KEY_RE.fullmatch("abc")
    check_scope("namespace")
    with pytest.raises(StoreError, match="instance, workflow, namespace"):
        check_scope("global")


def test_invalid_refs_rejected(store: LmdbStore) -> None:
    with pytest.raises(InvalidKey):
        store.get(wf("bad key"))
    with pytest.raises(InvalidKey):
        store.get(wf(["a"]))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="scope"):
        store.get(Ref("ns", "global", "", "k"))
    with pytest.raises(StoreError, match="NUL"):
        store.write([Put(Ref("n\x00s", "namespace", "", "k"), b"1")])
    with pytest.raises(StoreError, match="NUL"):
        store.write([Put(Ref("ns", "workflow", "w\x00", "k"), b"1")])
    with pytest.raises(StoreError, match="owner"):
        store.write([Put(Ref("ns", "instance", "", "k"), b"1")])
    with pytest.raises(StoreError, match="namespace"):
        store.get(Ref("", "namespace", "", "k"))
    with pytest.raises(StoreError, match="bytes"):
        store.write([Put(wf("k"), "text")])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- basic operations


def test_put_get_delete(store: LmdbStore) -> None:
    ref = wf("counter")
    assert store.get(ref) is None
    store.write([Put(ref, b"1")])
    v1 = store.get(ref)
    assert isinstance(v1, Variable)
    assert (v1.data, v1.mime, v1.size, v1.version) == (b"1", "application/json", 1, 1)
    assert v1.created == v1.updated
    store.write([Put(ref, b"hello", "text/plain")])
    v2 = store.get(ref)
    assert v2 is not None
    assert (v2.data, v2.mime, v2.size, v2.version) == (b"hello", "text/plain", 5, 2)
    assert v2.created == v1.created and v2.updated >= v1.updated
    assert "hello" not in repr(v2)  # data never dumped into logs
    store.write([Put(ref, None)])
    assert store.get(ref) is None
    store.write([Put(ref, None)])  # deleting a missing variable is fine
    store.write([Put(ref, b"")])
    empty = store.get(ref)
    # a version is never given out twice, not even after a delete (a strong ETag)
    assert empty is not None and (empty.data, empty.size, empty.version) == (b"", 0, 3)


def test_variable_from_store_is_a_plain_frozen_variable(store: LmdbStore) -> None:
    store.write([Put(wf("k"), b"7", "text/plain")])
    v = store.get(wf("k"))
    assert v is not None
    assert v == Variable(b"7", "text/plain", 1, v.created, v.updated, 1)
    assert hash(v) == hash(Variable(b"7", "text/plain", 1, v.created, v.updated, 1))
    with pytest.raises(AttributeError):
        v.data = b"8"  # type: ignore[misc]


def test_values_of_every_size_roundtrip(store: LmdbStore) -> None:
    blobs = {f"k{i}": bytes(range(256)) * n for i, n in enumerate((0, 1, 16, 400, 4096))}
    store.write([Put(wf(k), v, "application/octet-stream") for k, v in blobs.items()])
    for k, v in blobs.items():
        got = store.get(wf(k))
        assert got is not None and got.data == v and got.size == len(v)


def test_get_many(store: LmdbStore) -> None:
    store.write([Put(wf("a"), b"1"), Put(wf("c"), b"3")])
    got = store.get_many([wf("c"), wf("b"), wf("a")])
    assert [g.data if g else None for g in got] == [b"3", None, b"1"]
    assert store.get_many([]) == []
    with pytest.raises(InvalidKey):
        store.get_many([wf("a"), wf("-")])


def test_batch_is_all_or_nothing(store: LmdbStore) -> None:
    store.write([Put(wf("keep"), b"0")])
    with pytest.raises(InvalidKey):
        store.write([Put(wf("a"), b"1"), Put(wf("keep"), None), Put(wf("bad key"), b"2")])
    assert store.get(wf("a")) is None
    assert store.get(wf("keep")) is not None
    with pytest.raises(StoreError):
        store.write([Put(wf("a"), b"1"), Put(Ref("ns", "bogus", "x", "b"), b"2")])
    assert store.get(wf("a")) is None
    before = last_txnid(store)
    store.write([])
    assert last_txnid(store) == before
    store.write([Put(wf("a"), b"1"), Put(wf("b"), b"2"), Put(wf("a"), b"3")])
    a = store.get(wf("a"))
    assert a is not None and a.data == b"3" and a.version == 4  # one version per put, never reused
    assert last_txnid(store) == before + 1  # one transaction for the batch


def test_namespace_scope_ignores_owner(store: LmdbStore) -> None:
    store.write([Put(Ref("ns", "namespace", "some-workflow", "k"), b"1")])
    got = store.get(Ref("ns", "namespace", "", "k"))
    assert got is not None and got.data == b"1"
    assert [k for k, _ in store.list("ns", "namespace")] == ["k"]


def test_scopes_are_separate(store: LmdbStore) -> None:
    store.write([
        Put(Ref("ns", "namespace", "", "k"), b"n"),
        Put(Ref("ns", "workflow", "w", "k"), b"w"),
        Put(Ref("ns", "instance", "w", "k"), b"i"),
    ])
    assert store.get(Ref("ns", "namespace", "", "k")).data == b"n"  # type: ignore[union-attr]
    assert store.get(Ref("ns", "workflow", "w", "k")).data == b"w"  # type: ignore[union-attr]
    assert store.get(Ref("ns", "instance", "w", "k")).data == b"i"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- race-free updates


def test_update_semantics(store: LmdbStore) -> None:
    ref = wf("counter")

    def incr(cur: Variable | None) -> tuple[bytes | None, str]:
        n = 0 if cur is None else int(cur.data)
        return str(n + 1).encode(), "application/json"

    v = store.update(ref, incr)
    assert v is not None and (v.data, v.version) == (b"1", 1)
    v = store.update(ref, incr)
    assert v is not None and (v.data, v.version) == (b"2", 2)
    assert store.get(ref) == v

    before = last_txnid(store)
    same = store.update(ref, lambda cur: None)
    assert same == v and last_txnid(store) == before  # no change, no commit

    def boom(cur: Variable | None) -> tuple[bytes | None, str]:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError):
        store.update(ref, boom)
    assert store.get(ref) == v

    assert store.update(ref, lambda cur: (None, "application/json")) is None
    assert store.get(ref) is None
    assert store.update(ref, lambda cur: (None, "application/json")) is None
    with pytest.raises(InvalidKey):
        store.update(wf("no good"), incr)


def test_compare_and_set(store: LmdbStore) -> None:
    ref = wf("lock")
    assert store.compare_and_set(ref, None, b"a") == 1  # the new version
    assert store.compare_and_set(ref, None, b"b") == 0  # nothing written
    assert store.get(ref).data == b"a"  # type: ignore[union-attr]
    assert store.compare_and_set(ref, 2, b"b") == 0
    assert store.compare_and_set(ref, 1, b"b", "text/plain") == 2
    v = store.get(ref)
    assert v is not None and (v.data, v.mime, v.version) == (b"b", "text/plain", 2)
    assert store.compare_and_set(ref, 1, b"c") == 0
    assert store.compare_and_set(ref, 1, None) == 0
    assert store.compare_and_set(ref, 2, None) > 0
    assert store.get(ref) is None
    assert store.compare_and_set(ref, 5, b"x") == 0
    assert store.compare_and_set(ref, None, None) > 0  # already absent
    assert store.compare_and_set(ref, 0, b"z") == 3  # 0 also means "must not exist"; 1 and 2 are never reused
    assert store.compare_and_set(ref, 1, b"stale") == 0  # an ETag of deleted content never matches again
    with pytest.raises(StoreError):
        store.compare_and_set(ref, -1, b"z")


def test_update_is_race_free_across_threads(tmp_path: Path) -> None:
    # A tiny map makes the map grow while the threads run.
    s = LmdbStore(tmp_path / "v", durable=False, map_size=256 << 10)
    ref = wf("counter")
    big = b"x" * 20_000

    def worker(t: int) -> None:
        for i in range(100):
            s.update(ref, lambda cur: (str(int(cur.data) + 1 if cur else 1).encode(), "application/json"))
            s.write([Put(wf(f"t{t}-{i}"), big)])
            assert s.get(ref) is not None

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert s.get(ref).data == b"400"  # type: ignore[union-attr]
    assert len(s.list("ns", "workflow", "wf")) == 401
    assert s.map_size > 256 << 10
    s.close()


# --------------------------------------------------------------------------- exact deletion


def test_deletion_is_exact_never_by_prefix(store: LmdbStore) -> None:
    puts = []
    for ns in ("foo", "foobar", "fo"):
        puts += [
            Put(Ref(ns, "namespace", "", "k"), b"1"),
            Put(Ref(ns, "workflow", "counter", "k"), b"1"),
            Put(Ref(ns, "workflow", "counter2", "k"), b"1"),
            Put(Ref(ns, "instance", "i1", "k"), b"1"),
            Put(Ref(ns, "instance", "i10", "k"), b"1"),
        ]
    store.write(puts)
    assert store.delete_workflow("foo", "counter") == 1
    assert store.workflows("foo") == ["counter2"]
    assert store.workflows("foobar") == ["counter", "counter2"]
    assert store.delete_scope("foo", "instance", "i1") == 1
    assert [k for k, _ in store.list("foo", "instance", "i10")] == ["k"]
    assert store.delete_scope("foo", "instance", "i1") == 0
    assert store.delete_namespace("foo") == 3
    assert store.namespaces() == ["fo", "foobar"]
    assert len(store.list("foobar", "workflow", "counter")) == 1
    assert len(store.list("fo", "instance", "i1")) == 1
    assert store.delete_namespace("nothing-here") == 0


def test_list_namespaces_workflows_sorted(store: LmdbStore) -> None:
    assert store.namespaces() == [] and store.workflows("ns") == []
    store.write([
        Put(Ref("b", "workflow", "zeta", "y"), b"1"),
        Put(Ref("b", "workflow", "zeta", "x"), b"2"),
        Put(Ref("b", "workflow", "alpha", "k"), b"3"),
        Put(Ref("b", "instance", "i", "k"), b"4"),
        Put(Ref("a", "namespace", "", "k"), b"5"),
        Put(Ref("c", "instance", "i", "k"), b"6"),
    ])
    assert store.namespaces() == ["a", "b", "c"]
    assert store.workflows("b") == ["alpha", "zeta"]
    assert store.workflows("a") == [] and store.workflows("c") == []
    listed = store.list("b", "workflow", "zeta")
    assert [(k, v.data) for k, v in listed] == [("x", b"2"), ("y", b"1")]


def test_rename_workflow(store: LmdbStore) -> None:
    store.write([Put(wf("a", "old"), b"1"), Put(wf("b", "old"), b"2"), Put(wf("c", "old2"), b"3")])
    store.write([Put(wf("a", "old"), b"1b")])
    store.write([Put(wf("stale", "new"), b"x")])
    assert store.rename_workflow("ns", "old", "new") == 2
    assert store.workflows("ns") == ["new", "old2"]
    a = store.get(wf("a", "new"))
    assert a is not None and (a.data, a.version) == (b"1b", 4)
    assert store.get(wf("stale", "new")) is None  # destination replaced, like os.rename
    assert store.get(wf("a", "old")) is None
    assert store.rename_workflow("ns", "missing", "other") == 0
    assert store.rename_workflow("ns", "new", "new") == 2
    assert store.workflows("ns") == ["new", "old2"]


# --------------------------------------------------------------------------- instances


def test_end_instance(store: LmdbStore) -> None:
    iref = Ref("ns", "instance", "inst-1", "x")
    store.write([Put(iref, b"1")], register_instance=("ns", "inst-1"))
    store.write([Put(Ref("ns", "instance", "inst-10", "x"), b"1")], register_instance=("ns", "inst-10"))
    store.end_instance("ns", "inst-1")
    assert store.get(iref) is None
    assert store.get(Ref("ns", "instance", "inst-10", "x")) is not None

    before = last_txnid(store)
    for _ in range(50):
        store.end_instance("ns", "never-wrote")
    store.end_instance("ns", "inst-1")  # already ended
    assert last_txnid(store) == before  # no write transaction, no fsync

    # Instance variables written without a registration still end with the instance.
    store.write([Put(Ref("ns", "instance", "unregistered", "x"), b"1")])
    store.end_instance("ns", "unregistered")
    assert store.list("ns", "instance", "unregistered") == []


def test_end_instance_registered_by_another_handle(tmp_path: Path) -> None:
    run_child(
        """
        s = st.LmdbStore(sys.argv[1])
        s.write([st.Put(st.Ref("ns", "instance", "i1", "x"), b"1")], register_instance=("ns", "i1"))
        s.close()
        """,
        str(tmp_path / "v"),
    )
    with LmdbStore(tmp_path / "v") as s:
        s.end_instance("ns", "i1")
        assert s.list("ns", "instance", "i1") == []


def test_sweep_orphans(store: LmdbStore, tmp_path: Path) -> None:
    # This process owns a live instance: never swept.
    store.write([Put(Ref("ns", "instance", "mine", "x"), b"1")], register_instance=("ns", "mine"))
    # A child registers two instances and exits without ending them.
    run_child(
        """
        s = st.LmdbStore(sys.argv[1])
        for iid in ("dead-1", "dead-2"):
            s.write([st.Put(st.Ref("ns", "instance", iid, "a"), b"1"),
                     st.Put(st.Ref("ns", "instance", iid, "b"), b"2")],
                    register_instance=("ns", iid))
        s.write([st.Put(st.Ref("ns", "workflow", "w", "keep"), b"1")])
        """,
        str(tmp_path / "vars"),
    )
    assert len(store.list("ns", "instance", "dead-1")) == 2
    assert store.sweep_orphans() == 2
    assert store.list("ns", "instance", "dead-1") == []
    assert store.list("ns", "instance", "dead-2") == []
    assert store.get(Ref("ns", "instance", "mine", "x")) is not None
    assert store.get(wf("keep", "w")) is not None
    assert store.sweep_orphans() == 0
    store.end_instance("ns", "mine")
    assert store.sweep_orphans() == 0


# --------------------------------------------------------------------------- map growth


def test_map_grows_automatically(tmp_path: Path) -> None:
    s = LmdbStore(tmp_path / "v", durable=False, map_size=256 << 10)
    chunk = os.urandom(100_000)
    for i in range(40):
        s.write([Put(wf(f"k{i}"), chunk)])
    s.write([Put(wf(f"batch{i}"), chunk) for i in range(10)])  # 1 MB in one txn
    assert s.map_size >= 5_000_000
    for i in range(40):
        assert s.get(wf(f"k{i}")).data == chunk  # type: ignore[union-attr]
    assert len(s.list("ns", "workflow", "wf")) == 50
    s.close()
    with LmdbStore(tmp_path / "v", map_size=256 << 10) as again:
        assert again.map_size >= 5_000_000  # adopts the grown size
        assert again.get(wf("batch9")).data == chunk  # type: ignore[union-attr]


def test_store_full_when_growth_is_capped(tmp_path: Path) -> None:
    # A threshold above the value keeps it in LMDB (it would go to a blob file otherwise).
    s = LmdbStore(tmp_path / "v", durable=False, map_size=256 << 10, max_map_size=1 << 20, blob_threshold=4 << 20)
    with pytest.raises(StoreFull):
        s.write([Put(wf("big"), os.urandom(2 << 20))])
    assert s.get(wf("big")) is None
    s.write([Put(wf("small"), b"1")])  # still usable
    s.close()


def test_map_growth_by_another_process_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "v"
    s = LmdbStore(path, durable=False, map_size=256 << 10)
    s.write([Put(wf("mine"), b"1")])
    assert s.map_size == 256 << 10
    run_child(
        """
        s = st.LmdbStore(sys.argv[1], durable=False, map_size=256 << 10)
        blob = bytes(100_000)
        for i in range(40):
            s.write([st.Put(st.Ref("ns", "workflow", "wf", f"c{i}"), blob)])
        s.close()
        """,
        str(path),
    )
    got = s.get(wf("c39"))  # MapResizedError inside, adopted, retried
    assert got is not None and got.size == 100_000
    assert s.map_size > 256 << 10
    s.write([Put(wf("after"), bytes(200_000))])
    assert len(s.list("ns", "workflow", "wf")) == 42
    s.close()


# --------------------------------------------------------------------------- processes


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = str(tmp_path / "v")
    go = tmp_path / "go"
    code = """
        import time
        s = st.LmdbStore(sys.argv[1], durable=False, map_size=256 << 10)
        me = sys.argv[2]
        while not os.path.exists(sys.argv[3]):  # start together
            time.sleep(0.001)
        ref = st.Ref("ns", "namespace", "", "counter")
        for i in range(150):
            s.write([st.Put(st.Ref("ns", "workflow", me, f"k{i}"), bytes(3000))])
            s.update(ref, lambda cur: (str(int(cur.data) + 1 if cur else 1).encode(), "application/json"))
        s.close()
    """
    procs = [start_child(code, path, name, str(go)) for name in ("p1", "p2")]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with LmdbStore(path) as s:
        assert len(s.list("ns", "workflow", "p1")) == 150
        assert len(s.list("ns", "workflow", "p2")) == 150
        assert s.get(Ref("ns", "namespace", "", "counter")).data == b"300"  # type: ignore[union-attr]
        assert s.workflows("ns") == ["p1", "p2"]


def test_open_while_another_process_grows_the_map(tmp_path: Path) -> None:
    # Opening races with growth (MapResizedError inside LMDB's open and our
    # first transaction); every open must still succeed.
    path = str(tmp_path / "v")
    LmdbStore(path, durable=False, map_size=64 << 10).close()
    grower = start_child(
        """
        s = st.LmdbStore(sys.argv[1], durable=False, map_size=64 << 10)
        for i in range(2000):
            s.write([st.Put(st.Ref("ns", "workflow", "g", f"k{i}"), bytes(20_000))])
        """,
        path,
    )
    opens = 0
    while grower.poll() is None or opens == 0:
        with LmdbStore(path, durable=False, map_size=64 << 10) as s:
            s.get(wf("k1", "g"))
            s.write([Put(wf("x", "o"), bytes(30_000))])
        opens += 1
    _, err = grower.communicate(timeout=30)
    assert grower.returncode == 0, err
    with LmdbStore(path) as s:
        assert len(s.list("ns", "workflow", "g")) == 2000


def test_committed_writes_survive_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "v")
    child = start_child(
        """
        s = st.LmdbStore(sys.argv[1])
        ref = st.Ref("ns", "workflow", "wf", "n")
        n = 0
        while True:
            n += 1
            s.write([st.Put(ref, str(n).encode())])
            print(n, flush=True)
        """,
        path,
    )
    last = 0
    try:
        assert child.stdout is not None
        while last < 300:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            last = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with LmdbStore(path) as s:
        v = s.get(wf("n"))
        assert v is not None and int(v.data) >= last and v.version == int(v.data)


# --------------------------------------------------------------------------- lifecycle


def test_close_and_sharing(tmp_path: Path) -> None:
    path = tmp_path / "v"
    a = LmdbStore(path)
    b = LmdbStore(path)  # same directory in one process: shares the environment
    a.write([Put(wf("k"), b"1")])
    assert b.get(wf("k")) is not None
    with pytest.raises(StoreError, match="durable"):
        LmdbStore(path, durable=False)
    a.close()
    a.close()
    with pytest.raises(StoreError, match="closed"):
        a.get(wf("k"))
    assert b.get(wf("k")) is not None
    b.close()
    with pytest.raises(StoreError, match="closed"):
        b.write([Put(wf("k"), b"2")])
    with LmdbStore(path, durable=False) as c:
        assert c.get(wf("k")) is not None
    assert (os.stat(path).st_mode & 0o777) == 0o700


def test_readonly(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        LmdbStore(tmp_path / "missing", readonly=True)
    with LmdbStore(tmp_path / "v") as s:
        s.write([Put(wf("k"), b"1")])
    with LmdbStore(tmp_path / "v", readonly=True) as r:
        assert r.get(wf("k")).data == b"1"  # type: ignore[union-attr]
        with pytest.raises(StoreError, match="read-only"):
            r.write([Put(wf("k"), b"2")])


def test_read_into_streams_chunks(store: LmdbStore) -> None:
    blob = os.urandom(300_000)
    store.write([Put(wf("tar"), blob, "application/gzip")])
    chunks: list[bytes] = []
    meta = store.read_into(wf("tar"), lambda mv: chunks.append(bytes(mv)), chunk_size=64 << 10)
    assert meta is not None and meta.size == len(blob) and meta.mime == "application/gzip"
    assert meta.data == b"" and b"".join(chunks) == blob and len(chunks) == 5
    assert store.read_into(wf("none"), chunks.append) is None


# --------------------------------------------------------------------------- hardening (issue 12)


def test_reader_killed_inside_a_read_does_not_pin_pages(tmp_path: Path) -> None:
    """A process SIGKILLed inside a read transaction leaves its reader slot; with
    another process keeping the environment open, the snapshot it pinned would
    keep every overwritten page from being reused.  Opening the store clears it."""
    path = tmp_path / "vars"
    holder = LmdbStore(path, durable=False)  # keeps the lock file's reader table alive
    try:
        holder.write([Put(wf("v"), bytes(3000))])
        reader = start_child(
            """
            import signal
            s = st.LmdbStore(sys.argv[1], durable=False)
            def stay(chunk):
                print("reading", flush=True)
                signal.pause()  # inside the read transaction until killed
            s.read_into(st.Ref("ns", "workflow", "wf", "v"), stay)
            """,
            str(path),
        )
        with reader:
            assert reader.stdout is not None and reader.stderr is not None
            assert reader.stdout.readline().strip() == "reading", reader.stderr.read()
            reader.kill()
        before = (path / "data.mdb").stat().st_size
        run_child(
            """
            s = st.LmdbStore(sys.argv[1], durable=False)
            for i in range(3000):
                s.write([st.Put(st.Ref("ns", "workflow", "wf", "v"), os.urandom(3000))])
            """,
            str(path),
        )
        grown = (path / "data.mdb").stat().st_size - before
        assert grown < 2 << 20, f"the data file grew by {grown} bytes"
    finally:
        holder.close()


def test_too_long_address_is_an_invalid_key_for_every_operation(store: LmdbStore) -> None:
    """Each part is legal, together they exceed LMDB's key size: InvalidKey
    (direktiv.var.invalidKey) naming the lengths and the limit, never an lmdb error."""
    ns, owner = "n" * 200, "w" * 200
    ref = Ref(ns, "workflow", owner, "k" * 200)
    calls: list[Any] = [
        lambda: store.get(ref), lambda: store.get_many([ref]), lambda: store.open(ref),
        lambda: store.read_into(ref, lambda mv: None), lambda: store.write([Put(ref, b"1")]),
        lambda: store.update(ref, lambda cur: (b"1", "application/json")),
        lambda: store.compare_and_set(ref, None, b"1"),
        lambda: store.list("x" * 600, "namespace"), lambda: store.delete_scope("x" * 600, "namespace"),
        lambda: store.delete_namespace("x" * 600), lambda: store.workflows("x" * 600),
        lambda: store.rename_workflow(ns, "a", "b" * 400), lambda: store.end_instance(ns, "i" * 400),
        lambda: store.write([], register_instance=(ns, "i" * 400)),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(InvalidKey) as ei:
            call()
        assert ei.value.code == "direktiv.var.invalidKey", i
        assert "too long" in str(ei.value) and "at most 511" in str(ei.value), str(ei.value)
    with pytest.raises(InvalidKey, match=r"take 604 bytes .* at most 511"):
        store.get(ref)


def test_sidecar_too_long_address_is_400(store: LmdbStore) -> None:
    from isolde.sidecar import Sidecar

    sc = Sidecar(store, port=0)
    try:
        aid = sc.grant("n" * 200, "w" * 200, "inst", lambda line: None)
        for method, body in (("GET", None), ("POST", b"1")):
            status, text = _http(sc.address, method, f"/var?aid={aid}&scope=workflow&key={'k' * 200}", body)
            assert status == 400 and "too long" in text, (status, text)
    finally:
        sc.close()


def _http(address: str, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str]:
    import http.client

    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        etag = resp.getheader("ETag") or ""
        return resp.status, etag + resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_sidecar_etag_never_matches_different_content(store: LmdbStore) -> None:
    """Deleting and re-creating a variable must not bring an old ETag back:
    a stale If-Match then overwrote content its sender never saw."""
    from isolde.sidecar import Sidecar

    sc = Sidecar(store, port=0)
    try:
        aid = sc.grant("ns", "wf", "inst", lambda line: None)
        path = f"/var?aid={aid}&scope=workflow&key=doc"
        assert _http(sc.address, "POST", path, b"mine")[0] == 200
        status, got = _http(sc.address, "GET", path)
        assert status == 200 and got.endswith("mine")
        etag = got[: -len("mine")]
        assert _http(sc.address, "POST", path, b"")[0] == 200  # deleted ...
        assert _http(sc.address, "POST", path, b"theirs")[0] == 200  # ... and created again by someone else
        status, _ = _http(sc.address, "POST", path, b"stale write", {"If-Match": etag})
        assert status == 412
        assert store.get(Ref("ns", "workflow", "wf", "doc")).data == b"theirs"  # type: ignore[union-attr]
        status, got = _http(sc.address, "GET", path)
        current = got[: -len("theirs")]
        status, answered = _http(sc.address, "POST", path, b"next", {"If-Match": current})
        assert status == 200
        status, got = _http(sc.address, "GET", path)
        assert got == answered + "next"  # the ETag a conditional POST answers is the one a GET gives
    finally:
        sc.close()


# -- isolde's own records in a database of their own ------------------------------------

COUNTER_YAML = (Path(__file__).parent.parent / "examples" / "counter.yaml").read_text()
RECORD_KEY = b"default\x00i\x00~isolde-history\x00i-0190a0b0-0000-7000-8000-000000000001"


def _depth_and_entries(path: Path, name: bytes) -> tuple[int, int]:
    import lmdb

    env = lmdb.open(str(path), readonly=True, max_dbs=8, lock=False)
    try:
        db = env.open_db(name, create=False)
        with env.begin() as txn:
            stat = txn.stat(db)
        return stat["depth"], stat["entries"]
    finally:
        env.close()


def test_instance_history_stays_out_of_the_variables_btree(tmp_path: Path) -> None:
    """A thousand instance records among the variables made their B-tree three levels deep,
    and every commit of a variable then wrote a path of three pages: the records are kept in
    a database of their own, and the variables' tree of the counter stays one page."""
    import isolde

    with isolde.Engine(data_dir=tmp_path / "d", config={"history": {"keep": 2000}}) as engine:
        for _ in range(1200):
            engine.run(COUNTER_YAML)
        engine.history.flush()
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 1200
        listed, total = engine.history.list("default")
        assert total == 1200
        iid = listed[0]["id"]
        assert engine.history.show("default", iid)["status"] == "complete"
        keys = {k for k, _ in engine.store.list("default", "instance", "~isolde-history")}
        assert len(keys) == 1200 and f"i-{iid}" in keys
        assert engine.namespaces() == ["default"]
    depth, entries = _depth_and_entries(tmp_path / "d", b"vars")
    assert (depth, entries) == (1, 2)  # the version sequence and x
    depth, entries = _depth_and_entries(tmp_path / "d", b"reserved")
    assert entries == 1200 and depth >= 2


def _old_layout(path: Path) -> None:
    """An environment as isolde wrote it before the ``reserved`` database: an instance
    record among the variables, next to a workflow variable."""
    import lmdb

    from isolde.store.codec import hdr_pack

    record = json.dumps({"v": 1, "id": RECORD_KEY.decode().rsplit("i-", 1)[1], "workflow": "counter",
                         "status": "complete", "state": None, "trigger": "run", "created": 1.0e9,
                         "started": 1.0e9, "ended": 1.0e9 + 1, "input": {}, "input_truncated": False,
                         "output": {"var": {"x": 1}}, "error": None, "chunks": 0}).encode()
    mime = b"application/json"
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 24)
    with env.begin(write=True) as txn:
        vars_db = env.open_db(b"vars", txn=txn)
        env.open_db(b"inst", txn=txn)
        env.open_db(b"blobs", txn=txn)
        txn.put(RECORD_KEY, hdr_pack(1, 1.0e9, 1.0e9, len(mime)) + mime + record, db=vars_db)
        txn.put(b"default\x00w\x00counter\x00x", hdr_pack(2, 1.0e9, 1.0e9, len(mime)) + mime + b"1", db=vars_db)
    env.close()


def test_a_store_written_before_the_reserved_database_is_read_and_moved(tmp_path: Path) -> None:
    import isolde

    path = tmp_path / "d"
    path.mkdir(parents=True)
    _old_layout(path)
    # read-only (no write to move anything): the record is found where it is
    with LmdbStore(path, readonly=True) as old:
        ref = Ref("default", "instance", "~isolde-history", RECORD_KEY.decode().rsplit("\x00", 1)[1])
        got = old.get(ref)
        assert got is not None and json.loads(got.data)["status"] == "complete"
        assert [k for k, _ in old.list("default", "instance", "~isolde-history")] == [ref.key]
    # a writable open moves it, once, and nothing is lost
    with isolde.Engine(data_dir=tmp_path / "d") as engine:
        iid = ref.key[2:]
        assert engine.history.show("default", iid)["output"] == {"var": {"x": 1}}
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 1
        engine.run(COUNTER_YAML)
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 2
        assert engine.store.get(Ref("default", "workflow", "counter", "x")).version > 2  # the sequence went on
    assert _depth_and_entries(path, b"vars")[1] == 2
    assert _depth_and_entries(path, b"reserved")[1] >= 2  # the old record and the new one's
    with isolde.Engine(data_dir=tmp_path / "d") as engine:
        _, total = engine.history.list("default")
        assert total == 2


def test_deleting_a_namespace_deletes_its_reserved_records(store: LmdbStore) -> None:
    rec = Ref("ns1", "instance", "~isolde-history", "i-a")
    other = Ref("ns2", "instance", "~isolde-history", "i-b")
    store.write([Put(rec, b"{}"), Put(other, b"{}"), Put(Ref("ns1", "namespace", "", "k"), b"1")])
    assert store.namespaces() == ["ns1", "ns2"]
    assert store.delete_namespace("ns1") == 2
    assert store.get(rec) is None and store.get(other) is not None
    assert store.namespaces() == ["ns2"]  # a namespace holding only isolde's records is still one
    assert store.delete_keys("ns2", "instance", [("~isolde-history", ["i-b"])]) == 1
    assert store.namespaces() == []


def _last_txn(path: Path) -> int:
    import lmdb

    env = lmdb.open(str(path), readonly=True, max_dbs=8, lock=False)
    try:
        return int(env.info()["last_txnid"])
    finally:
        env.close()


def test_delete_keys_with_writes_is_one_transaction_writes_first(tmp_path: Path) -> None:
    """The history's batch and the retention it makes due: one commit; a record written and
    deleted in it ends deleted."""
    ref = lambda key: Ref("ns", "instance", "~isolde-history", key)  # noqa: E731
    with LmdbStore(tmp_path) as s:
        s.write([Put(ref("i-old"), b"{}")])
    before = _last_txn(tmp_path)
    with LmdbStore(tmp_path) as s:
        n = s.delete_keys("ns", "instance", [("~isolde-history", ["i-old", "i-gone"])],
                          writes=[Put(ref("i-new"), b"{}"), Put(ref("i-gone"), b"{}")])
        assert n == 2
        assert s.get(ref("i-old")) is None and s.get(ref("i-gone")) is None and s.get(ref("i-new")) is not None
    assert _last_txn(tmp_path) == before + 1
