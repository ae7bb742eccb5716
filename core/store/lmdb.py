"""LmdbStore: the built-in VariableStore, one LMDB environment per data directory.

Why LMDB: a committed write transaction is on disk when ``commit()`` returns
(with ``sync``/``metasync``), readers never block writers, and the writer lock is
a process-shared mutex inside the environment's lock file, so a CLI run, a
daemon and an isolate sidecar can all write to the same directory without a
server process.

Layout: ``path/`` (mode 0700) holds ``data.mdb``, ``lock.mdb`` and ``blobs/``
(large values, ``blobs.py``).  Named databases: ``vars`` (records, ``codec.py``,
keyed as ``keys.py`` says), ``reserved`` (the same for isolde's own records, such as
the instance history: ``keys.in_reserved``), ``inst`` (instance registrations, ``liveness.py``),
``blobs`` (blob file name -> the ``vars`` key that references it, so sweeping
unreferenced files costs one lookup per file); the version sequence is a
record of ``vars`` (``writes.py``).  The collaborators: ``KeyCodec`` builds keys,
``SharedEnv`` runs transactions (``env.py``, group commit in ``commit.py``),
``Reads``/``Writes`` are the transaction bodies, ``BlobFiles`` the files.

Durability: ``durable=True`` (default) opens with ``sync=True, metasync=True``: a
write that returned survives ``kill -9`` and power loss.  ``durable=False``
still loses nothing to a process crash (commits are in the page cache); an OS
crash or power loss may lose the last commits, and a recent large value may read
as damaged (its file missing or cut short, reported as a StoreError; writing or
deleting the variable repairs it).  LMDB's copy-on-write pages keep the file
consistent as long as the filesystem preserves write order (ext4's default).

Readers in other processes: a reader takes a blob reference in a read
transaction and opens the file afterwards; if a writer replaced the value and
unlinked the file in between, the open fails with ENOENT and the reader retries
from a new snapshot (an open file stays readable after an unlink).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable, Sequence

import lmdb

from .blobs import GRACE, BlobFiles, NewBlob
from .codec import BLOB_FLAG, HDR_SIZE, MAX_MIME, Stub, hdr_unpack, stub
from .env import RETRY_LIMIT, SharedEnv, share
from .keys import RESERVED_MARK, KeyCodec, check_name
from ..liveness import machine, registration
from .readers import InlineReader
from .reads import Reads
from .types import Put, Ref, StoreError, Variable, make_var
from .writes import Updater, Writes, items_of

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

    from .protocol import ValueReader

__all__ = ["LmdbStore", "DEFAULT_BLOB_THRESHOLD"]

DEFAULT_BLOB_THRESHOLD = 1 << 20
_Bytes = (bytes, bytearray, memoryview)


class LmdbStore:
    """Variables of all scopes and namespaces in one LMDB environment."""

    __slots__ = ("_sh", "_keys", "_reads", "_writes", "_files", "_readonly", "_threshold", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        map_size: int = 64 << 20,
        max_map_size: int = 1 << 40,
        readonly: bool = False,
        blob_threshold: int = DEFAULT_BLOB_THRESHOLD,
    ) -> None:
        """``blob_threshold``: values larger than this many bytes are kept as
        files under ``path/blobs/`` (see ``isolde.store.blobs``)."""
        self.path = os.fspath(path)
        if not isinstance(blob_threshold, int) or isinstance(blob_threshold, bool) or blob_threshold < 0:
            raise StoreError(
                f"[store] blob_threshold must be a whole number of bytes >= 0, got {blob_threshold!r}"
            )
        self._threshold = blob_threshold
        page = 4096
        map_size = max(page, (map_size + page - 1) // page * page)
        max_map_size = max(map_size, max_map_size)
        sh = share(self.path, map_size=map_size, max_map_size=max_map_size, durable=durable, readonly=readonly)
        self._sh: SharedEnv | None = sh
        self._readonly = readonly
        assert sh.env is not None
        self._keys = KeyCodec(sh.env.max_key_size())
        self._files = BlobFiles(self.path, sh.durable)
        dbs = (sh.vars, sh.inst, sh.blobs, sh.reserved)
        self._reads = Reads(sh.vars, sh.inst, sh.blobs, sh.reserved)
        self._writes = Writes(dbs, self._files, blob_threshold)

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release this handle; the environment closes with the last handle of
        the directory in this process.  Safe to call twice."""
        sh, self._sh = self._sh, None
        if sh is not None:
            sh.release()

    def __enter__(self) -> LmdbStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def map_size(self) -> int:
        """Current map size of this process's mapping; shows growth happened."""
        env = self._live().env
        assert env is not None
        return int(env.info()["map_size"])

    def _live(self) -> SharedEnv:
        sh = self._sh
        if sh is None or sh.env is None:
            raise StoreError(f"variable store {self.path!r} is closed")
        return sh

    def _read_resolved(self, fn: Callable[[Any, Any], builtins.list[Any]], arg: Any) -> builtins.list[Any]:
        """Run a read whose result lists Variables (or ``(key, Variable)``
        pairs) and load the blobs it references, from a new snapshot whenever
        a blob vanished under a concurrent replace."""
        name = ""
        load = self._files.load
        for _ in range(RETRY_LIMIT):
            out = self._live().read(fn, arg)
            try:
                for i, v in enumerate(out):
                    if v.__class__ is Stub:
                        out[i] = load(v)
                    elif v.__class__ is tuple and v[1].__class__ is Stub:
                        out[i] = (v[0], load(v[1]))
                return out
            except FileNotFoundError as e:
                name = os.path.basename(str(e.filename))
        raise self._files.missing(name)

    def _listed(self, names: builtins.list[str]) -> set[str]:
        return self._live().read(self._reads.listed, names)

    # ----------------------------------------------------------------- reads

    def get(self, ref: Ref) -> Variable | None:
        """One variable, or None when missing (a getter reads missing as null)."""
        kb = self._keys.var_key(ref)
        sh = self._sh
        if sh is None:
            raise StoreError(f"variable store {self.path!r} is closed")
        if sh.overlay:  # a handed-over write not yet committed (looked at before LMDB: see get_many)
            shown = sh.overlay.get(kb)
            if shown is not None:
                return shown[0]
        # Inlined fast path of SharedEnv.read(): this is the hottest call of the engine.
        gen = sh.gen
        with sh.lock:
            if sh.excl:
                sh.wait_shared()
            sh.active += 1
        try:
            env = sh.env
            if env is None:
                raise StoreError(f"variable store {self.path!r} is closed")
            txn = env.begin(db=sh.reserved if kb.startswith(RESERVED_MARK, kb.find(b"\x00") + 1)
                            else sh.vars)  # (keys.in_reserved, inlined)
            raw: bytes | None | bool = txn.get(kb)
            txn.abort()
        except lmdb.MapResizedError:
            raw = False
        finally:
            with sh.lock:
                sh.active -= 1
                if sh.excl and not sh.active:
                    sh.cond.notify_all()
        if raw is False:
            sh.remap(gen, False)
            return self.get(ref)
        if raw is None or raw is True:
            return None
        version, created, updated, ml = hdr_unpack(raw)
        if ml & 0x8000:  # BLOB_FLAG, as a literal: this is the hot path
            return self._get_blob(kb, stub(raw, ml, version, created, updated))
        end = HDR_SIZE + ml
        return make_var(raw[end:], raw[HDR_SIZE:end].decode(), len(raw) - end, created, updated, version)

    def _get_blob(self, kb: bytes, st: Stub) -> Variable | None:
        """get() of a blob record: read the file, retrying from a new snapshot
        if a concurrent replace unlinked it."""
        for _ in range(RETRY_LIMIT):
            try:
                return self._files.load(st)
            except FileNotFoundError:
                pass
            got = self._live().read(self._reads.get, kb)
            if not isinstance(got, Stub):
                return got
            st = got
        raise self._files.missing(st.name)

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        """Several variables from one snapshot, so a getter sees a consistent
        set even while other instances write."""
        keys = [self._keys.var_key(r) for r in refs]
        if not keys:
            return []
        sh = self._live()
        # Handed-over values first: one removed from the overlay after this
        # look is committed already, so the read below sees it.
        shown = [sh.overlay.get(kb) for kb in keys] if sh.overlay else None
        got = self._read_resolved(self._reads.get_many, keys)
        if shown is not None:
            for i, entry in enumerate(shown):
                if entry is not None:
                    got[i] = entry[0]
        return got

    def open(self, ref: Ref) -> ValueReader | None:
        """A readable stream of the value (``ValueReader``), or None if missing.
        A value kept in LMDB is copied out of the map; a blob is read from its
        file, opened so a concurrent replace or delete cannot break the read."""
        kb = self._keys.var_key(ref)
        name = ""
        for _ in range(RETRY_LIMIT):
            got = self._live().read(self._reads.get, kb)
            if got is None:
                return None
            if not isinstance(got, Stub):
                return InlineReader(got.data, got.mime, got.version)
            name = got.name
            try:
                return self._files.open(got)
            except FileNotFoundError:
                continue  # replaced meanwhile: read the new record
        raise self._files.missing(name)

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        """Stream a variable's data to ``write`` in chunks straight from the
        memory map or blob file; returns the metadata with ``data == b""``, or
        None if missing (see VariableStore.read_into)."""
        kb = self._keys.var_key(ref)
        chunk = max(4096, chunk_size)
        name = ""
        for _ in range(RETRY_LIMIT):
            got = self._live().read(self._reads.read_into, (kb, write, chunk), True)
            if not isinstance(got, Stub):
                return got
            name = got.name
            try:
                self._files.stream(got, write, chunk)
            except FileNotFoundError:
                continue  # replaced meanwhile: read the new record
            return got.variable(b"")
        raise self._files.missing(name)

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        """All variables of one exact scope owner, sorted by key."""
        prefix = self._keys.scope_prefix(namespace, scope, owner)
        return self._read_resolved(self._reads.scope, prefix)

    def list_meta(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        """``list`` without the data (``data == b""``; size, mime type and times as
        stored): a listing reads only the records' headers and opens no blob file."""
        prefix = self._keys.scope_prefix(namespace, scope, owner)
        return self._live().read(self._reads.scope_meta, prefix, True)

    def list_listing(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, int, str, float]]:
        """``list_meta`` as (key, size, MIME type, updated) rows (``isolde vars list``)."""
        prefix = self._keys.scope_prefix(namespace, scope, owner)
        return self._live().read(self._reads.scope_listing, prefix, True)

    def list_keys(self, namespace: str, scope: str, owner: str = "") -> builtins.list[str]:
        """The keys ``list`` would give, without reading a value (the history's retention)."""
        return self._live().read(self._reads.scope_keys, self._keys.scope_prefix(namespace, scope, owner), True)

    def namespaces(self) -> builtins.list[str]:
        """Namespaces holding any variable."""
        return self._live().read(self._reads.namespaces, None)

    def workflows(self, namespace: str) -> builtins.list[str]:
        """Workflows of a namespace holding workflow-scope variables."""
        check_name(namespace, "namespace")
        prefix = self._keys.namespace_prefix(namespace) + b"w\x00"
        return self._live().read(self._reads.owners, prefix)

    # ----------------------------------------------------------------- writes

    def write(
        self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
        handover: Callable[[], None] | None = None,
    ) -> None:
        """Apply a batch atomically (see VariableStore.write).  Everything is
        validated before the transaction starts; values above
        ``blob_threshold`` go to blob files first.  With ``handover``, the
        batch's values are shown to this process's reads from the moment it is
        queued (``SharedEnv.write``)."""
        items, big = items_of(puts, self._keys.var_key, self._threshold)
        reg: tuple[bytes, bytes] | None = None
        reg_id: tuple[str, str] | None = None
        sh = self._live()
        if register_instance is not None:
            ns, iid = register_instance
            rk = self._keys.reg_key(ns, iid)
            reg_id = (ns, iid)
            if reg_id not in sh.registered:
                reg = (rk, registration())
        if not items and reg is None:
            if handover is not None:
                handover()
            return
        shown: builtins.list[tuple[bytes, Variable | None]] | None = None
        if handover is not None:
            now = time.time()
            shown = [
                (kb, None if data is None else make_var(bytes(data), mb.decode(), len(data), now, now, 0))
                for kb, mb, _, data in items
            ]
        if big is None:
            drop = sh.write(self._writes.batch, (items, reg, None), shown=shown, handed=handover)
            if drop:
                self._files.unlink(drop)
        else:
            if self._readonly:
                raise StoreError(f"variable store {self.path!r} is open read-only")
            made = self._files.write_all([(items[i][0], items[i][3]) for i in big])
            index: builtins.list[tuple[bytes, bytes]] = []
            for i, nb in zip(big, made):
                kb, mb, ml, _ = items[i]
                items[i] = (kb, mb, ml | BLOB_FLAG, nb.ref)
                index.append((nb.name.encode(), kb))
            try:
                drop = sh.write(self._writes.batch, (items, reg, index), shown=shown, handed=handover)
            except BaseException:
                self._files.settle(made, None, verify=True, listed=self._listed)
                raise
            self._files.settle(made, drop, verify=False, listed=self._listed)
        if reg_id is not None:
            sh.registered.add(reg_id)

    def update(self, ref: Ref, fn: Updater) -> Variable | None:
        """Race-free read-modify-write (see VariableStore.update).  A result
        above ``blob_threshold`` is written to its blob file inside the
        transaction, holding the writer lock."""
        kb = self._keys.var_key(ref)
        made: builtins.list[NewBlob] = []
        try:
            var, drop = self._live().write(self._writes.update, (kb, fn, made))
        except BaseException:
            self._files.settle(made, None, verify=True, listed=self._listed)
            raise
        if drop or made:
            self._files.settle(made, drop, verify=True, listed=self._listed)  # a retried attempt may have left a file
        return var  # type: ignore[no-any-return]

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None, mime: str = "application/json",
    ) -> int:
        """Optimistic write (see VariableStore.compare_and_set): 0 on a
        mismatch, else the new version (positive)."""
        kb = self._keys.var_key(ref)
        if expected_version is not None and expected_version < 0:
            raise StoreError(f"expected_version must be positive or None, got {expected_version}")
        if data is not None and not isinstance(data, _Bytes):
            raise StoreError(f"variable {ref.key!r}: data must be bytes, got {type(data).__name__}")
        mb = mime.encode()
        if len(mb) > MAX_MIME:
            raise StoreError(f"variable {ref.key!r}: mime type is too long")
        sh = self._live()
        made: builtins.list[NewBlob] = []
        value: Any = data
        if data is not None and len(data) > self._threshold:
            if self._readonly:
                raise StoreError(f"variable store {self.path!r} is open read-only")
            made = self._files.write_all([(kb, data)])
            value = made[0]
        try:
            version, drop = sh.write(self._writes.compare_and_set, (kb, expected_version or None, value, mb))
        except BaseException:
            self._files.settle(made, None, verify=True, listed=self._listed)
            raise
        if made or drop:
            self._files.settle(made, drop, verify=version <= 0, listed=self._listed)
        return 1 if version < 0 else int(version)

    # ----------------------------------------------------------------- deletion

    def _delete_prefixes(self, var_prefix: bytes, inst_prefix: bytes | None) -> int:
        n, drop = self._live().write(self._writes.delete_prefixes, (var_prefix, inst_prefix))
        self._files.unlink(drop)
        return int(n)

    def delete_keys(self, namespace: str, scope: str, groups: Sequence[tuple[str, Sequence[str]]], *,
                    writes: Sequence[Put] = ()) -> int:
        """Delete the variables ``keys`` of each ``(owner, keys)`` in one transaction (absent
        ones are skipped); returns how many were deleted.  The bulk delete of the history's
        retention: one prefix per owner instead of a ``Put`` and a key check per variable
        (a key is refused only if it could leave its owner's prefix: empty or with a NUL).
        ``writes`` are applied first in the same transaction (one commit, one fsync), unless
        one is large enough for a blob file (then in a transaction of their own, first)."""
        keys: builtins.list[bytes] = []
        limit = self._keys.max_key
        for owner, names in groups:
            prefix = self._keys.scope_prefix(namespace, scope, owner)
            for name in names:
                if not name or "\x00" in name:
                    raise StoreError(f"invalid variable key {name[:60]!r}")
                kb = prefix + name.encode()
                if len(kb) <= limit:  # (a longer one cannot be stored)
                    keys.append(kb)
        items, big = items_of(writes, self._keys.var_key, self._threshold)
        if big is not None:
            self.write(writes)
            items = []
        if not keys and not items:
            return 0
        if items:
            n, drop = self._live().write(self._writes.batch_then_delete, (items, keys))
        else:
            n, drop = self._live().write(self._writes.delete_keys, keys)
        if drop:
            self._files.unlink(drop)
        return int(n)

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        """Delete every variable of one exact scope owner; returns how many."""
        return self._delete_prefixes(self._keys.scope_prefix(namespace, scope, owner), None)

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        """The workflow definition is gone, and its variables go with it."""
        return self.delete_scope(namespace, "workflow", workflow)

    def delete_namespace(self, namespace: str) -> int:
        """Every variable of every scope of the namespace, plus its instance
        registrations; returns the number of variables."""
        prefix = self._keys.namespace_prefix(namespace)
        return self._delete_prefixes(prefix, prefix)

    def end_instance(self, namespace: str, instance_id: str) -> None:
        """Delete the instance's variables and registration.  When this process
        did not register the instance, a read transaction first checks whether
        there is anything to delete, and no write (no fsync) happens otherwise."""
        rk = self._keys.reg_key(namespace, instance_id)
        prefix = self._keys.instance_prefix(namespace, instance_id)
        sh = self._live()
        ident = (namespace, instance_id)
        if ident not in sh.registered and not sh.read(self._reads.has_instance, (rk, prefix)):
            return
        drop = sh.write(self._writes.end_instance, (rk, prefix))
        sh.registered.discard(ident)
        if drop:
            self._files.unlink(drop)

    def sweep_orphans(self) -> int:
        """Delete instance variables of instances whose owning process died on
        this host, then unreferenced blob files older than a minute; returns
        how many instances were swept."""
        sh = self._live()
        swept = 0
        candidates = sh.read(self._reads.orphans, machine())
        if candidates:
            swept, drop = sh.write(self._writes.sweep, candidates)
            self._files.unlink(drop)
        if not self._readonly:
            self._files.sweep(GRACE, self._listed)
        return int(swept)

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        """Workflow variables follow a renamed workflow (versions and times
        kept; blob files stay, only the records move).  Like ``os.rename``, the
        destination's own variables, if any, are replaced.  Returns how many
        variables moved."""
        src = self._keys.scope_prefix(namespace, "workflow", old)
        dst = self._keys.scope_prefix(namespace, "workflow", new)
        if src == dst:
            return len(self.list(namespace, "workflow", old))
        moved, drop = self._live().write(self._writes.rename, (src, dst), False)
        self._files.unlink(drop)
        return int(moved)
