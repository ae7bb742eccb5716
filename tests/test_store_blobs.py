"""Large values kept as blob files beside the LMDB store (core/store.py, "Large values").

Everything runs against real LMDB environments in tmp_path; crashes and
concurrent writers are real child processes.  Thresholds are small (a few KB)
so the tests stay fast, except for the streaming test, which needs a value big
enough to show in a child's peak memory.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolde.store import LmdbStore, Put, Ref, StoreError, StoreFull, Variable

T = 4096  # blob threshold used by most tests

PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    import isolde.store as st
    T = 4096
    def peak_reset():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    def status(field):
        with open("/proc/self/status") as f:
            for ln in f:
                if ln.startswith(field + ":"):
                    return int(ln.split()[1]) * 1024
        return 0
    """
)


def child_cmd(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args]


def run_child(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(child_cmd(code, *args), capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(path: Path) -> Iterator[LmdbStore]:
    with LmdbStore(path, durable=False, blob_threshold=T) as s:
        yield s
        consistent(s, path)


def wf(key: str, workflow: str = "wf", ns: str = "ns") -> Ref:
    return Ref(ns, "workflow", workflow, key)


def blobs(path: Path) -> set[str]:
    d = path / "blobs"
    return set(os.listdir(d)) if d.is_dir() else set()


def consistent(s: LmdbStore, path: Path) -> None:
    """White-box invariant (the store's ``blobs`` index): it lists exactly the
    files on disk, and each entry's record references that file."""
    sh = s._sh
    assert sh is not None and sh.env is not None
    with sh.env.begin() as txn:
        index = {bytes(k).decode(): bytes(v) for k, v in txn.cursor(sh.blobs)}
        for name, kb in index.items():
            raw = txn.get(kb, db=sh.vars)
            assert raw is not None and raw[-32:] == name.encode(), name
    assert set(index) == blobs(path)


def age(path: Path, name: str, seconds: float = 3600) -> None:
    """Make a blob file look old enough for the sweep's grace period."""
    old = time.time() - seconds
    os.utime(path / "blobs" / name, (old, old))


def streamed(s: LmdbStore, ref: Ref) -> tuple[Variable | None, bytes]:
    chunks: list[bytes] = []
    meta = s.read_into(ref, lambda c: chunks.append(bytes(c)), chunk_size=4096)
    return meta, b"".join(chunks)


def check_value(s: LmdbStore, ref: Ref, data: bytes, mime: str = "application/json") -> None:
    """Every read path agrees on the value."""
    v = s.get(ref)
    assert v is not None and v.data == data and v.size == len(data) and v.mime == mime
    many = s.get_many([ref])[0]
    assert many == v
    listed = dict(s.list(ref.namespace, ref.scope, ref.owner))[ref.key]
    assert listed == v
    meta, got = streamed(s, ref)
    assert got == data and meta is not None and meta.size == len(data) and meta.data == b""
    assert (meta.version, meta.mime, meta.created, meta.updated) == (v.version, v.mime, v.created, v.updated)


# --------------------------------------------------------------------------- threshold and replacement


def test_threshold_is_crossed_both_ways(store: LmdbStore, path: Path) -> None:
    ref = wf("v")
    at = os.urandom(T)
    over = os.urandom(T + 1)
    store.write([Put(ref, at, "text/plain")])
    assert blobs(path) == set()  # at the threshold: still in LMDB
    check_value(store, ref, at, "text/plain")
    store.write([Put(ref, over, "text/plain")])
    assert len(blobs(path)) == 1
    check_value(store, ref, over, "text/plain")
    assert store.get(ref).version == 2  # type: ignore[union-attr]
    store.write([Put(ref, at, "text/plain")])
    assert blobs(path) == set()
    check_value(store, ref, at, "text/plain")
    assert (os.stat(path / "blobs").st_mode & 0o777) == 0o700
    assert (os.stat(path).st_mode & 0o777) == 0o700


def test_replace_large_small_large_keeps_one_file(store: LmdbStore, path: Path) -> None:
    ref = wf("v")
    first = os.urandom(3 * T)
    store.write([Put(ref, first, "application/gzip")])
    (name1,) = blobs(path)
    store.write([Put(ref, b'"small"', "application/json")])
    assert blobs(path) == set()
    check_value(store, ref, b'"small"', "application/json")
    second = os.urandom(2 * T)
    store.write([Put(ref, second, "application/gzip")])
    (name2,) = blobs(path)
    assert name2 != name1 and len(name2) == 32
    third = os.urandom(5 * T)
    store.write([Put(ref, third, "application/gzip")])  # large over large
    assert len(blobs(path)) == 1 and name2 not in blobs(path)
    check_value(store, ref, third, "application/gzip")
    v = store.get(ref)
    assert v is not None and v.version == 4


def test_delete_removes_the_file(store: LmdbStore, path: Path) -> None:
    store.write([Put(wf("a"), os.urandom(2 * T)), Put(wf("b"), os.urandom(2 * T))])
    assert len(blobs(path)) == 2
    store.write([Put(wf("a"), None)])
    assert len(blobs(path)) == 1 and store.get(wf("a")) is None
    # one batch that writes a blob and then replaces it again leaves only the last
    store.write([Put(wf("c"), os.urandom(2 * T)), Put(wf("c"), os.urandom(3 * T))])
    assert len(blobs(path)) == 2 and store.get(wf("c")).size == 3 * T  # type: ignore[union-attr]


def test_update_and_compare_and_set_with_blobs(store: LmdbStore, path: Path) -> None:
    ref = wf("v")
    big = os.urandom(2 * T)
    v = store.update(ref, lambda cur: (big, "application/octet-stream"))
    assert v is not None and v.data == big and len(blobs(path)) == 1
    v = store.update(ref, lambda cur: (cur.data + b"!", "application/octet-stream"))  # type: ignore[union-attr]
    assert v is not None and v.data == big + b"!" and v.version == 2 and len(blobs(path)) == 1
    check_value(store, ref, big + b"!", "application/octet-stream")
    assert store.compare_and_set(ref, 1, os.urandom(2 * T)) == 0  # stale: no file left behind
    assert len(blobs(path)) == 1
    assert store.compare_and_set(ref, 2, os.urandom(4 * T)) == 3
    assert len(blobs(path)) == 1 and store.get(ref).size == 4 * T  # type: ignore[union-attr]
    assert store.compare_and_set(ref, 3, None) > 0
    assert blobs(path) == set() and store.get(ref) is None
    assert store.update(ref, lambda cur: None) is None


def test_buffers_are_accepted_without_copies(store: LmdbStore, path: Path, tmp_path: Path) -> None:
    data = os.urandom(10 * T + 123)
    f = tmp_path / "staged"
    f.write_bytes(data)
    fd = os.open(f, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    view = memoryview(m)
    store.write([Put(wf("mapped"), view, "application/gzip")])
    assert bytes(view[:100]) == data[:100]  # the caller's view stays usable
    view.release()
    m.close()
    store.write([
        Put(wf("ba"), bytearray(data)),
        Put(wf("slice"), memoryview(data)[T:]),
        Put(wf("ints"), memoryview(bytearray(data[: 8 * T])).cast("I")),
        Put(wf("strided"), memoryview(data)[::2]),  # not contiguous: written from one copy
    ])
    check_value(store, wf("mapped"), data, "application/gzip")
    check_value(store, wf("ba"), data)
    check_value(store, wf("slice"), data[T:])
    check_value(store, wf("ints"), data[: 8 * T])
    check_value(store, wf("strided"), data[::2])
    assert len(blobs(path)) == 5


# --------------------------------------------------------------------------- atomicity and crashes


def test_failed_batch_references_nothing_and_leaves_no_file(path: Path) -> None:
    # The map cannot grow past 1 MiB, so the 2 MiB value kept in LMDB (under
    # the 4 MiB threshold) fails the batch after the 5 MiB blob was written.
    s = LmdbStore(path, durable=True, map_size=256 << 10, max_map_size=1 << 20, blob_threshold=4 << 20)
    try:
        s.write([Put(wf("keep"), os.urandom(5 << 20))])
        (kept,) = blobs(path)
        with pytest.raises(StoreFull):
            s.write([
                Put(wf("big"), os.urandom(6 << 20)),
                Put(wf("small"), b"1"),
                Put(wf("keep"), None),
                Put(wf("toolarge"), os.urandom(2 << 20)),
            ])
        assert s.get_many([wf("big"), wf("small"), wf("toolarge")]) == [None, None, None]
        assert s.get(wf("keep")) is not None
        assert blobs(path) == {kept}  # removed at once, not left for the sweep
        age(path, kept)
        s.sweep_orphans()
        assert blobs(path) == {kept}  # referenced: kept however old
        consistent(s, path)
    finally:
        s.close()


def test_crash_between_blob_write_and_commit_is_swept(path: Path) -> None:
    LmdbStore(path).close()
    env = dict(os.environ, ISOLDE_TEST_BLOB_PAUSE="60")
    child = subprocess.Popen(
        child_cmd(
            """
            s = st.LmdbStore(sys.argv[1], blob_threshold=T)
            s.write([st.Put(st.Ref("ns", "workflow", "wf", "v"), os.urandom(50_000)), st.Put(st.Ref("ns", "workflow", "wf", "w"), b"1")])
            print("committed", flush=True)
            """,
            str(path),
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not any((path / "blobs" / n).stat().st_size == 50_000 for n in blobs(path)):
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.stderr else ""
            time.sleep(0.01)
        (name,) = blobs(path)
        with LmdbStore(path) as s:
            age(path, name)
            s.sweep_orphans()
            assert blobs(path) == {name}  # old, but its writer still holds it: commit pending
            os.kill(child.pid, signal.SIGKILL)
            child.communicate(timeout=30)
            assert s.get_many([wf("v"), wf("w")]) == [None, None]  # nothing of the batch committed
            os.utime(path / "blobs" / name)  # fresh again: within the grace period
            s.sweep_orphans()
            assert blobs(path) == {name}
            age(path, name)
            s.sweep_orphans()
            assert blobs(path) == set()
            consistent(s, path)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_missing_file_is_a_store_error(store: LmdbStore, path: Path) -> None:
    store.write([Put(wf("v"), os.urandom(2 * T))])
    (name,) = blobs(path)
    os.unlink(path / "blobs" / name)
    for read in (lambda: store.get(wf("v")), lambda: store.list("ns", "workflow", "wf"),
                 lambda: store.read_into(wf("v"), lambda c: None)):
        with pytest.raises(StoreError, match="missing"):
            read()
    store.write([Put(wf("v"), None)])  # a damaged value can still be deleted
    assert store.get(wf("v")) is None


def test_two_processes_write_large_values_while_this_one_reads(path: Path, tmp_path: Path) -> None:
    LmdbStore(path).close()
    go = tmp_path / "go"
    code = """
        s = st.LmdbStore(sys.argv[1], durable=False, blob_threshold=T)
        me = sys.argv[2]
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.001)
        shared = st.Ref("ns", "namespace", "", "shared")
        for i in range(60):
            body = (me * 10000).encode()[: 3 * T + i]
            s.write([st.Put(st.Ref("ns", "workflow", me, f"k{i}"), body), st.Put(shared, body)])
        s.close()
    """
    procs = [subprocess.Popen(child_cmd(code, str(path), name, str(go)), stderr=subprocess.PIPE, text=True)
             for name in ("p1", "p2")]
    reads = 0
    with LmdbStore(path, durable=False) as s:
        go.touch()
        while any(p.poll() is None for p in procs):
            v = s.get(Ref("ns", "namespace", "", "shared"))  # files vanish under it: retried
            if v is not None:
                assert v.data in ((b"p1" * 10000)[: v.size], (b"p2" * 10000)[: v.size])
                reads += 1
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        for me in ("p1", "p2"):
            rows = s.list("ns", "workflow", me)
            assert len(rows) == 60
            assert all(v.data == (me * 10000).encode()[: 3 * T + int(k[1:])] for k, v in rows)
        assert reads > 0
        consistent(s, path)
    assert len(blobs(path)) == 121  # 2 x 60 own values + the shared one: nothing leaked


# --------------------------------------------------------------------------- deletion paths


def test_every_deletion_path_removes_blobs(store: LmdbStore, path: Path) -> None:
    big = os.urandom(2 * T)
    store.write([
        Put(Ref("a", "namespace", "", "n"), big),
        Put(Ref("a", "workflow", "w1", "x"), big),
        Put(Ref("a", "workflow", "w2", "x"), big),
        Put(Ref("b", "namespace", "", "n"), big),
        Put(Ref("b", "workflow", "w", "x"), big),
    ])
    store.write([Put(Ref("b", "instance", "i1", "x"), big)], register_instance=("b", "i1"))
    assert len(blobs(path)) == 6
    assert store.delete_scope("a", "namespace") == 1
    assert len(blobs(path)) == 5
    assert store.delete_workflow("a", "w1") == 1
    assert len(blobs(path)) == 4
    store.end_instance("b", "i1")
    assert len(blobs(path)) == 3
    assert store.delete_namespace("b") == 2
    assert len(blobs(path)) == 1
    assert store.get(Ref("a", "workflow", "w2", "x")).data == big  # type: ignore[union-attr]


def test_orphaned_instance_sweep_removes_blobs(path: Path) -> None:
    run_child(
        """
        s = st.LmdbStore(sys.argv[1], blob_threshold=T)
        s.write([st.Put(st.Ref("ns", "instance", "i1", "x"), os.urandom(3 * T))], register_instance=("ns", "i1"))
        """,
        str(path),
    )  # exits without end_instance: its instance is orphaned
    assert len(blobs(path)) == 1
    with LmdbStore(path) as s:
        assert s.sweep_orphans() == 1
        assert blobs(path) == set()
        consistent(s, path)


def test_rename_keeps_blobs(store: LmdbStore, path: Path) -> None:
    a, b, c = (os.urandom(2 * T) for _ in range(3))
    store.write([Put(wf("x", "old"), a), Put(wf("y", "old"), b"small"), Put(wf("x", "new"), c)])
    names = blobs(path)
    assert store.rename_workflow("ns", "old", "new") == 2
    assert len(blobs(path)) == 1 and blobs(path) < names  # the destination's own blob went
    check_value(store, wf("x", "new"), a)
    assert store.get(wf("x", "old")) is None
    age(path, next(iter(blobs(path))))
    store.sweep_orphans()
    assert len(blobs(path)) == 1  # still referenced (the index followed the record)
    store.write([Put(wf("x", "new"), None)])
    assert blobs(path) == set()


# --------------------------------------------------------------------------- streaming memory


def test_read_into_streams_a_100_mb_value_in_flat_memory(path: Path, tmp_path: Path) -> None:
    """A 100 MB value goes in from an mmap and comes out through read_into,
    each in a child whose peak resident memory grows by far less than the
    value."""
    src = tmp_path / "big"
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(100):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            f.write(chunk)
    out = run_child(
        """
        import mmap
        s = st.LmdbStore(sys.argv[1], durable=False)
        fd = os.open(sys.argv[2], os.O_RDONLY)
        m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        os.close(fd)
        peak_reset()
        base = status("VmHWM")
        s.write([st.Put(st.Ref("ns", "namespace", "", "big"), memoryview(m), "application/gzip")])
        print(status("VmHWM") - base)
        """,
        str(path), str(src),
    )
    assert int(out) < 40 << 20, f"writing grew the peak by {int(out) >> 20} MB"
    out = run_child(
        """
        import hashlib
        s = st.LmdbStore(sys.argv[1], durable=False)
        h = hashlib.sha256()
        peak_reset()
        base = status("VmHWM")
        meta = s.read_into(st.Ref("ns", "namespace", "", "big"), h.update)
        print(status("VmHWM") - base, meta.size, h.hexdigest())
        """,
        str(path),
    )
    grew, size, hexdigest = out.split()
    assert int(size) == 100 << 20 and hexdigest == digest.hexdigest()
    assert int(grew) < 40 << 20, f"streaming grew the peak by {int(grew) >> 20} MB"


# --------------------------------------------------------------------------- configuration


def test_engine_reads_blob_threshold_from_config(tmp_path: Path) -> None:
    import isolde

    data = tmp_path / "data"
    with isolde.Engine(data_dir=data, config={"store": {"blob_threshold": 100}}) as eng:
        eng.variables.set("small", "x" * 10)
        assert blobs(data) == set()
        eng.variables.set("big", "x" * 500)
        assert len(blobs(data)) == 1
        assert eng.variables.value("big") == "x" * 500
    # the typed configuration refuses it when the file is read, before anything opens
    with pytest.raises(isolde.ConfigError, match=r"\[store\] blob_threshold must be a positive integer"):
        isolde.Engine(data_dir=data, config={"store": {"blob_threshold": -1}})


# --------------------------------------------------------------------------- open(): a readable stream


def test_open_streams_inline_and_blob_values(store: LmdbStore, path: Path) -> None:
    small, big = b'{"a": 1}', os.urandom(3 * T + 5)
    store.write([Put(wf("small"), small), Put(wf("big"), big, "application/octet-stream")])
    with store.open(wf("small")) as r:  # type: ignore[union-attr]
        assert (r.mime, r.size) == ("application/json", len(small))
        assert r.read() == small
    r = store.open(wf("big"))
    assert r is not None and (r.mime, r.size) == ("application/octet-stream", len(big))
    buf = bytearray(1000)
    n = r.readinto(buf)
    assert bytes(buf[:n]) == big[:n]
    assert bytes(buf[:n]) + r.read() == big
    r.close()
    assert store.open(wf("missing")) is None


def test_open_reader_survives_replace_and_delete(store: LmdbStore, path: Path) -> None:
    old, new = os.urandom(2 * T), os.urandom(2 * T)
    store.write([Put(wf("v"), old), Put(wf("s"), b"1")])
    r, rs = store.open(wf("v")), store.open(wf("s"))
    assert r is not None and rs is not None
    store.write([Put(wf("v"), new), Put(wf("s"), b"2")])  # the old blob file is unlinked
    assert len(blobs(path)) == 1
    with r, rs:
        assert r.read() == old and rs.read() == b"1"
    store.write([Put(wf("v"), None)])
    assert store.open(wf("v")) is None


def test_list_meta_reads_headers_only_and_reports_blob_sizes(path: Path) -> None:
    """``list_meta`` (what ``isolde vars list`` reads) gives the same rows as ``list``
    without the data, and a blob's size without opening its file."""
    s = LmdbStore(path, blob_threshold=16)
    try:
        s.write([Put(wf("big"), b"x" * 1000, "application/octet-stream"), Put(wf("small"), b"12", "application/json")])
        full = s.list("ns", "workflow", "wf")
        meta = s.list_meta("ns", "workflow", "wf")
        assert [k for k, _ in meta] == [k for k, _ in full] == ["big", "small"]
        for (_, m), (_, f) in zip(meta, full):
            assert (m.data, m.size, m.mime, m.created, m.updated, m.version) == (b"", f.size, f.mime, f.created, f.updated, f.version)
        for name in blobs(path):  # the blob file is not opened: it may even be gone
            os.unlink(path / "blobs" / name)
        assert [(k, v.size) for k, v in s.list_meta("ns", "workflow", "wf")] == [("big", 1000), ("small", 2)]
    finally:
        s.close()
