"""StoreConformance: the VariableStore contract (SPEC §3) as pytest tests.

A backend runs it against itself by subclassing it in one of its test modules
and providing a ``store`` fixture that yields a fresh, empty store::

    from isolde.conformance.store import StoreConformance

    class TestMyStore(StoreConformance):
        large = 3 << 20  # a size that takes the backend's large-value path

        @pytest.fixture
        def store(self, tmp_path):
            s = MyStore(tmp_path)
            yield s
            s.close()

Only the public interface is used (``isolde.store``'s protocol and value types).
"""

from __future__ import annotations

import os
import threading

import pytest

from ..store.keys import check_key
from ..store.protocol import VariableStore
from ..store.types import InvalidKey, Put, Ref, StoreError, Variable

__all__ = ["StoreConformance"]


def wf(key: str, workflow: str = "wf", ns: str = "ns") -> Ref:
    return Ref(ns, "workflow", workflow, key)


def value(store: VariableStore, ref: Ref) -> bytes | None:
    v = store.get(ref)
    return None if v is None else v.data


class StoreConformance:
    """Tests every VariableStore must pass; needs a ``store`` fixture."""

    large: int = 3 << 20  # bytes of a "large" value (override: above your blob threshold)

    # ---------------------------------------------------------------- protocol

    def test_is_a_variable_store(self, store: VariableStore) -> None:
        assert isinstance(store, VariableStore)

    # ---------------------------------------------------------------- basics

    def test_put_get_delete_with_mime_size_and_times(self, store: VariableStore) -> None:
        ref = wf("counter")
        assert store.get(ref) is None
        store.write([Put(ref, b"1")])
        v1 = store.get(ref)
        assert isinstance(v1, Variable)
        assert (v1.data, v1.mime, v1.size) == (b"1", "application/json", 1)
        assert v1.created == v1.updated and v1.version > 0
        store.write([Put(ref, b"hello", "text/plain")])
        v2 = store.get(ref)
        assert v2 is not None and (v2.data, v2.mime, v2.size) == (b"hello", "text/plain", 5)
        assert v2.created == v1.created and v2.updated >= v1.updated and v2.version > v1.version
        store.write([Put(ref, None)])  # null deletes
        assert store.get(ref) is None
        store.write([Put(ref, None)])  # deleting a missing variable is no error
        store.write([Put(ref, b"")])  # empty is a value, not a delete
        empty = store.get(ref)
        assert empty is not None and (empty.data, empty.size) == (b"", 0)

    def test_versions_are_never_reused(self, store: VariableStore) -> None:
        """A version is a strong validator: after delete and re-create, after
        a write elsewhere, in one batch, a new write never repeats one."""
        ref = wf("v")
        seen: list[int] = []
        for data in (b"1", b"2", None, b"3", None, b"1"):
            store.write([Put(ref, data)])
            v = store.get(ref)
            if v is not None:
                seen.append(v.version)
        store.write([Put(ref, b"a"), Put(ref, b"b")])
        v = store.get(ref)
        assert v is not None and v.data == b"b"
        seen.append(v.version)
        assert len(set(seen)) == len(seen) and seen == sorted(seen)
        assert store.compare_and_set(ref, seen[0], b"stale") == 0

    def test_scopes_are_separate_and_namespace_ignores_owner(self, store: VariableStore) -> None:
        store.write([
            Put(Ref("ns", "instance", "i1", "k"), b"i"),
            Put(Ref("ns", "workflow", "i1", "k"), b"w"),
            Put(Ref("ns", "namespace", "", "k"), b"n"),
            Put(Ref("other", "namespace", "", "k"), b"o"),
        ])
        assert value(store, Ref("ns", "instance", "i1", "k")) == b"i"
        assert value(store, Ref("ns", "workflow", "i1", "k")) == b"w"
        assert value(store, Ref("ns", "namespace", "whatever", "k")) == b"n"
        assert value(store, Ref("other", "namespace", "", "k")) == b"o"
        assert value(store, Ref("ns", "instance", "i2", "k")) is None

    def test_invalid_addresses_are_refused(self, store: VariableStore) -> None:
        for key in ("", "1a", "a-", "a b", "ä", "a\n", "x" * 256):
            with pytest.raises(InvalidKey) as ei:
                store.write([Put(wf(key), b"1")])
            assert ei.value.code == "direktiv.var.invalidKey"
            with pytest.raises(InvalidKey):
                store.get(wf(key))
        check_key("a" * 255)
        with pytest.raises(StoreError, match="scope"):
            store.get(Ref("ns", "bogus", "x", "k"))
        with pytest.raises(StoreError):
            store.get(Ref("", "namespace", "", "k"))
        with pytest.raises(StoreError):
            store.get(Ref("n\x00s", "namespace", "", "k"))
        with pytest.raises(StoreError):
            store.get(Ref("ns", "workflow", "", "k"))

    # ---------------------------------------------------------------- batches

    def test_batch_is_all_or_nothing(self, store: VariableStore) -> None:
        store.write([Put(wf("keep"), b"0")])
        with pytest.raises(InvalidKey):
            store.write([Put(wf("a"), b"1"), Put(wf("keep"), None), Put(wf("bad key"), b"2")])
        with pytest.raises(StoreError):
            store.write([Put(wf("a"), b"1"), Put(Ref("ns", "bogus", "x", "b"), b"2")])
        with pytest.raises(StoreError):
            store.write([Put(wf("a"), b"1"), Put(wf("b"), "not bytes")])  # type: ignore[arg-type]
        assert store.get(wf("a")) is None and store.get(wf("b")) is None
        assert value(store, wf("keep")) == b"0"
        store.write([Put(wf("a"), b"1"), Put(wf("b"), b"2"), Put(wf("a"), b"3")])
        assert store.get_many([wf("a"), wf("b"), wf("c")]) == [store.get(wf("a")), store.get(wf("b")), None]
        assert value(store, wf("a")) == b"3"  # later puts of one key win
        store.write([])

    def test_get_many_in_order(self, store: VariableStore) -> None:
        store.write([Put(wf("a"), b"1"), Put(wf("b"), b"2")])
        got = store.get_many([wf("b"), wf("missing"), wf("a")])
        assert [None if v is None else v.data for v in got] == [b"2", None, b"1"]
        assert store.get_many([]) == []
        with pytest.raises(InvalidKey):
            store.get_many([wf("a"), wf("-")])

    # ---------------------------------------------------------------- exact deletion

    def test_deletion_is_exact_never_by_prefix(self, store: VariableStore) -> None:
        store.write([
            Put(wf("counter", "foo"), b"1"), Put(wf("counter2", "foo"), b"2"),
            Put(wf("counter", "foobar"), b"3"), Put(wf("x", "foo", "ns2"), b"4"),
            Put(Ref("nsx", "namespace", "", "k"), b"5"), Put(Ref("ns", "namespace", "", "k"), b"6"),
            Put(Ref("ns", "instance", "i1", "k"), b"7"), Put(Ref("ns", "instance", "i10", "k"), b"8"),
        ])
        assert store.delete_workflow("ns", "foo") == 2
        assert value(store, wf("counter", "foobar")) == b"3"
        assert value(store, wf("x", "foo", "ns2")) == b"4"
        assert store.delete_scope("ns", "instance", "i1") == 1
        assert value(store, Ref("ns", "instance", "i10", "k")) == b"8"
        assert store.delete_namespace("ns") == 3
        assert value(store, Ref("nsx", "namespace", "", "k")) == b"5"
        assert value(store, wf("x", "foo", "ns2")) == b"4"
        assert store.delete_namespace("ns") == 0

    # ---------------------------------------------------------------- listing

    def test_list_namespaces_workflows_sorted(self, store: VariableStore) -> None:
        store.write([
            Put(wf("y", "w2"), b"1"), Put(wf("x", "w2"), b"2"), Put(wf("a", "w1"), b"3"),
            Put(wf("a", "w10", "ns0"), b"4"), Put(Ref("zz", "namespace", "", "k"), b"5"),
            Put(Ref("ns", "instance", "i", "k"), b"6"),
        ])
        listed = store.list("ns", "workflow", "w2")
        assert [(k, v.data) for k, v in listed] == [("x", b"2"), ("y", b"1")]
        assert all(isinstance(v, Variable) and v.size == len(v.data) for _, v in listed)
        assert store.list("ns", "workflow", "w") == []
        assert store.namespaces() == ["ns", "ns0", "zz"]
        assert store.workflows("ns") == ["w1", "w2"]
        assert store.workflows("zz") == []
        assert [k for k, _ in store.list("zz", "namespace")] == ["k"]

    def test_rename_workflow(self, store: VariableStore) -> None:
        store.write([Put(wf("a", "old"), b"1", "text/plain"), Put(wf("b", "old"), b"2"), Put(wf("c", "old2"), b"3")])
        store.write([Put(wf("stale", "new"), b"x")])
        before = store.get(wf("a", "old"))
        assert store.rename_workflow("ns", "old", "new") == 2
        assert store.workflows("ns") == ["new", "old2"]
        a = store.get(wf("a", "new"))
        assert a is not None and before is not None
        assert (a.data, a.mime, a.version, a.created) == (b"1", "text/plain", before.version, before.created)
        assert store.get(wf("stale", "new")) is None  # replaced, like os.rename
        assert store.get(wf("a", "old")) is None
        assert store.rename_workflow("ns", "missing", "other") == 0
        assert store.rename_workflow("ns", "new", "new") == 2

    # ---------------------------------------------------------------- instances

    def test_register_and_end_instance(self, store: VariableStore) -> None:
        inst = Ref("ns", "instance", "i1", "k")
        store.write([Put(inst, b"1"), Put(wf("keep"), b"2")], register_instance=("ns", "i1"))
        store.write([], register_instance=("ns", "i2"))
        store.write([Put(Ref("ns", "instance", "i3", "k"), b"3")])  # not registered: still the instance's
        assert store.sweep_orphans() == 0  # every owner is alive
        assert value(store, inst) == b"1"
        store.end_instance("ns", "i1")
        store.end_instance("ns", "i2")
        store.end_instance("ns", "i3")
        store.end_instance("ns", "never")
        assert store.get(inst) is None and store.get(Ref("ns", "instance", "i3", "k")) is None
        assert value(store, wf("keep")) == b"2"

    # ---------------------------------------------------------------- read-modify-write

    def test_update(self, store: VariableStore) -> None:
        ref = wf("u")
        assert store.update(ref, lambda cur: None) is None  # unchanged, missing
        v = store.update(ref, lambda cur: (b"1", "application/json"))
        assert v is not None and v.data == b"1"
        v = store.update(ref, lambda cur: (str(int(cur.data) + 1).encode(), "text/plain") if cur else None)
        assert v is not None and (v.data, v.mime) == (b"2", "text/plain") and v == store.get(ref)
        assert store.update(ref, lambda cur: None) == store.get(ref)
        assert store.update(ref, lambda cur: (None, "")) is None and store.get(ref) is None

        def boom(cur: Variable | None) -> tuple[bytes | None, str] | None:
            raise RuntimeError("no")

        store.write([Put(ref, b"5")])
        with pytest.raises(RuntimeError):
            store.update(ref, boom)
        assert value(store, ref) == b"5"

    def test_update_is_race_free_across_threads(self, store: VariableStore) -> None:
        ref = wf("n")
        start = threading.Barrier(4)

        def incr(cur: Variable | None) -> tuple[bytes, str]:
            return str(int(cur.data if cur else b"0") + 1).encode(), "application/json"

        def worker() -> None:
            start.wait()
            for _ in range(25):
                store.update(ref, incr)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert value(store, ref) == b"100"

    def test_compare_and_set(self, store: VariableStore) -> None:
        ref = wf("lock")
        v1 = store.compare_and_set(ref, None, b"a")
        assert v1 > 0 and store.get(ref).version == v1  # type: ignore[union-attr]
        assert store.compare_and_set(ref, None, b"b") == 0
        assert value(store, ref) == b"a"
        assert store.compare_and_set(ref, v1 + 1000, b"b") == 0
        v2 = store.compare_and_set(ref, v1, b"b", "text/plain")
        assert v2 > v1
        v = store.get(ref)
        assert v is not None and (v.data, v.mime, v.version) == (b"b", "text/plain", v2)
        assert store.compare_and_set(ref, v1, b"c") == 0 and store.compare_and_set(ref, v1, None) == 0
        assert store.compare_and_set(ref, v2, None) > 0 and store.get(ref) is None
        assert store.compare_and_set(ref, v2, b"x") == 0
        assert store.compare_and_set(ref, None, None) > 0  # already absent, as asked
        assert store.compare_and_set(ref, 0, b"z") > v2  # 0 also means "must not exist"
        with pytest.raises(StoreError):
            store.compare_and_set(ref, -1, b"z")

    # ---------------------------------------------------------------- streams and large values

    def _streamed(self, store: VariableStore, ref: Ref, chunk: int = 4096) -> tuple[Variable | None, bytes]:
        parts: list[bytes] = []
        meta = store.read_into(ref, lambda mv: parts.append(bytes(mv)), chunk_size=chunk)
        assert all(len(p) <= max(chunk, 4096) for p in parts)
        return meta, b"".join(parts)

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_open_and_read_into(self, store: VariableStore, size: str) -> None:
        data = os.urandom(self.large if size == "large" else 100)
        ref = wf("blob")
        store.write([Put(ref, data, "application/octet-stream")])
        meta, got = self._streamed(store, ref)
        v = store.get(ref)
        assert got == data and meta is not None and v is not None
        assert (meta.data, meta.size, meta.mime, meta.version) == (b"", len(data), v.mime, v.version)
        with store.open(ref) as r:  # type: ignore[union-attr]
            assert (r.mime, r.size) == ("application/octet-stream", len(data))
            buf = bytearray(1000)
            n = r.readinto(buf)
            assert bytes(buf[:n]) + r.read() == data
        assert store.open(wf("missing")) is None
        assert store.read_into(wf("missing"), lambda mv: None) is None

    @pytest.mark.parametrize("size", ["small", "large"])
    def test_open_stream_survives_replace_and_delete(self, store: VariableStore, size: str) -> None:
        n = self.large if size == "large" else 100
        old, new = os.urandom(n), os.urandom(n)
        ref = wf("v")
        store.write([Put(ref, old)])
        r = store.open(ref)
        assert r is not None
        store.write([Put(ref, new)])
        store.write([Put(ref, None)])
        with r:
            assert r.read() == old

    def test_large_values_in_every_operation(self, store: VariableStore) -> None:
        big = os.urandom(self.large)
        ref = wf("big")
        store.write([Put(ref, big), Put(wf("small"), b"1")])
        assert value(store, ref) == big
        assert [v.data == big for k, v in store.list("ns", "workflow", "wf") if k == "big"] == [True]
        v = store.update(ref, lambda cur: (cur.data[:10], "text/plain") if cur else None)
        assert v is not None and v.data == big[:10]
        version = store.compare_and_set(ref, v.version, big)
        assert version and value(store, ref) == big
        assert store.rename_workflow("ns", "wf", "wf2") == 2 and value(store, wf("big", "wf2")) == big
        assert store.delete_workflow("ns", "wf2") == 2 and store.get(wf("big", "wf2")) is None

    # ---------------------------------------------------------------- lifecycle

    def test_close_is_idempotent(self, store: VariableStore) -> None:
        store.write([Put(wf("a"), b"1")])
        store.close()
        store.close()
        with pytest.raises(StoreError):
            store.get(wf("a"))

    def test_handover_sees_the_batch_and_write_returns_durable(self, store: VariableStore) -> None:
        ref = wf("h")
        store.write([Put(ref, b"1")])
        seen: list[bytes | None] = []

        def handover() -> None:
            seen.append(value(store, ref))
            got = store.get_many([ref, wf("gone")])
            seen.extend(None if v is None else v.data for v in got)

        store.write([Put(ref, b"2"), Put(wf("gone"), None)], handover=handover)
        assert seen == [b"2", b"2", None]
        v = store.get(ref)
        assert v is not None and v.data == b"2" and v.version > 0
        calls: list[int] = []
        store.write([], handover=lambda: calls.append(1))  # nothing to write: called all the same
        assert calls == [1]
