"""An in-memory VariableStore, written against the public interface only.

It proves the seam: nothing here imports LmdbStore or its internals, only the
protocol and the value types of ``isolde.store`` and the top-level ``isolde``
package.  Use it as a plugin: ``isolde.Engine(plugins=[memory_store_plugin])``.
Every engine gets its own empty store; values live as long as the store.
"""

from __future__ import annotations

import builtins
import io
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from isolde import hookimpl
from isolde.store import (
    InvalidKey,
    Put,
    Ref,
    StoreError,
    ValueReader,
    Variable,
    VariableStore,
    check_name,
    check_ref,
    scope_owner,
)
from isolde.store.protocol import Updater

_Address = tuple[str, str, str, str]  # namespace, scope, owner, key


class _Reader(io.BytesIO):
    def __init__(self, v: Variable) -> None:
        super().__init__(v.data)
        self.mime = v.mime
        self.size = v.size

    def __enter__(self) -> _Reader:
        return self


def _data(ref: Ref, data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise StoreError(f"variable {ref.key!r}: data must be bytes, got {type(data).__name__}")
    return bytes(data)


class MemoryStore:
    """Variables in a dict guarded by one lock: every operation is atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._vars: dict[_Address, Variable] = {}
        self._seq = 0
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed")

    def _put(self, addr: _Address, data: bytes, mime: str, now: float) -> Variable:
        """With the lock held: a new version, never given out before."""
        old = self._vars.get(addr)
        self._seq += 1
        v = Variable(data, mime, len(data), now if old is None else old.created, now, self._seq)
        self._vars[addr] = v
        return v

    # ---------------------------------------------------------------- reads

    def get(self, ref: Ref) -> Variable | None:
        addr = check_ref(ref)
        with self._lock:
            self._open()
            return self._vars.get(addr)

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        addrs = [check_ref(r) for r in refs]
        with self._lock:
            self._open()
            return [self._vars.get(a) for a in addrs]

    def open(self, ref: Ref) -> ValueReader | None:
        v = self.get(ref)  # values are immutable bytes: the stream is a snapshot
        return None if v is None else _Reader(v)

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        v = self.get(ref)
        if v is None:
            return None
        view = memoryview(v.data)
        step = max(1, chunk_size)
        for off in range(0, len(view), step):
            write(view[off : off + step])
        return Variable(b"", v.mime, v.size, v.created, v.updated, v.version)

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        owner = scope_owner(namespace, scope, owner)
        with self._lock:
            self._open()
            found = [(a[3], v) for a, v in self._vars.items() if a[:3] == (namespace, scope, owner)]
        return sorted(found, key=lambda kv: kv[0])

    def namespaces(self) -> builtins.list[str]:
        with self._lock:
            self._open()
            return sorted({a[0] for a in self._vars})

    def workflows(self, namespace: str) -> builtins.list[str]:
        check_name(namespace, "namespace")
        with self._lock:
            self._open()
            return sorted({a[2] for a in self._vars if a[0] == namespace and a[1] == "workflow"})

    # ---------------------------------------------------------------- writes

    def write(
        self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
        handover: Callable[[], None] | None = None,
    ) -> None:
        staged = [(check_ref(p.ref), None if p.data is None else _data(p.ref, p.data), p.mime) for p in puts]
        if register_instance is not None:
            check_name(register_instance[0], "namespace")
            check_name(register_instance[1], "instance id")
        with self._lock:
            self._open()
            now = time.time()
            for addr, data, mime in staged:
                if data is None:
                    self._vars.pop(addr, None)
                else:
                    self._put(addr, data, mime, now)
        if handover is not None:
            handover()  # applied is durable here: nothing to show ahead

    def update(self, ref: Ref, fn: Updater) -> Variable | None:
        addr = check_ref(ref)
        with self._lock:
            self._open()
            cur = self._vars.get(addr)
            res = fn(cur)
            if res is None:
                return cur
            data, mime = res
            if data is None:
                self._vars.pop(addr, None)
                return None
            return self._put(addr, _data(ref, data), mime, time.time())

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None, mime: str = "application/json"
    ) -> int:
        addr = check_ref(ref)
        if expected_version is not None and expected_version < 0:
            raise StoreError(f"expected_version must be positive or None, got {expected_version}")
        value = None if data is None else _data(ref, data)
        with self._lock:
            self._open()
            cur = self._vars.get(addr)
            if (cur.version if cur is not None else None) != (expected_version or None):
                return 0
            if value is None:
                self._vars.pop(addr, None)
                return cur.version if cur is not None else 1
            return self._put(addr, value, mime, time.time()).version

    # ---------------------------------------------------------------- deletion

    def _delete(self, match: Callable[[_Address], bool]) -> int:
        with self._lock:
            self._open()
            gone = [a for a in self._vars if match(a)]
            for a in gone:
                del self._vars[a]
            return len(gone)

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        owner = scope_owner(namespace, scope, owner)
        return self._delete(lambda a: a[:3] == (namespace, scope, owner))

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        check_name(namespace, "namespace")
        return self._delete(lambda a: a[0] == namespace)

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        scope_owner(namespace, "workflow", old)
        scope_owner(namespace, "workflow", new)
        with self._lock:
            self._open()
            moving = {a: v for a, v in self._vars.items() if a[:3] == (namespace, "workflow", old)}
            if old == new or not moving:
                return len(moving)
            self._delete(lambda a: a[:3] == (namespace, "workflow", new))
            for a, v in moving.items():
                del self._vars[a]
                self._vars[(namespace, "workflow", new, a[3])] = v
            return len(moving)

    def end_instance(self, namespace: str, instance_id: str) -> None:
        self.delete_scope(namespace, "instance", instance_id)

    def sweep_orphans(self) -> int:
        self._open()
        return 0  # nothing outlives this process

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._vars.clear()


class MemoryStorePlugin:
    """The plugin object: answers the ``isolde_store`` hook with a new MemoryStore."""

    def __init__(self) -> None:
        self.stores: builtins.list[MemoryStore] = []

    @hookimpl
    def isolde_store(self, config: Any, data_dir: str) -> VariableStore | None:
        store = MemoryStore()
        self.stores.append(store)
        return store


memory_store_plugin = MemoryStorePlugin()

__all__ = ["MemoryStore", "MemoryStorePlugin", "memory_store_plugin", "InvalidKey"]
