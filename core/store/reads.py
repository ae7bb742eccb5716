"""Read-transaction bodies over the ``vars``, ``reserved``, ``inst`` and ``blobs`` databases
(a key or scope prefix is read from ``reserved`` when ``keys.in_reserved`` says so).

Each method is ``body(txn, arg)`` run by ``SharedEnv.read``; blob records come
back as ``Stub``s, whose files the store reads after the transaction.
"""

from __future__ import annotations

from collections.abc import Callable

import lmdb

from .codec import BLOB_FLAG, HDR_SIZE, Stub, decode, hdr_unpack, stub
from .keys import in_reserved
from ..liveness import is_orphan
from .types import Variable, make_var

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Reads"]


class Reads:
    """The read bodies of one environment's databases."""

    __slots__ = ("vars", "inst", "blobs", "reserved")

    def __init__(self, vars_db: Any, inst_db: Any, blobs_db: Any, reserved_db: Any) -> None:
        self.vars = vars_db
        self.inst = inst_db
        self.blobs = blobs_db
        self.reserved = reserved_db  # (vars_db itself in an older environment opened read-only)

    def db(self, kb: bytes) -> Any:
        """The database holding a key, or the keys under a scope prefix."""
        return self.reserved if in_reserved(kb) else self.vars

    def get(self, txn: lmdb.Transaction, kb: bytes) -> Variable | Stub | None:
        raw = txn.get(kb, db=self.db(kb))
        return None if raw is None else decode(raw)

    def get_many(self, txn: lmdb.Transaction, keys: list[bytes]) -> list[Any]:
        get = txn.get
        db = self.db
        out: list[Any] = []
        for kb in keys:
            raw = get(kb, db=db(kb))
            out.append(None if raw is None else decode(raw))
        return out

    def read_into(
        self, txn: lmdb.Transaction, arg: tuple[bytes, Callable[[memoryview], object], int]
    ) -> Variable | Stub | None:
        """Stream an inline value to ``write`` from the map (``buffers=True``)."""
        kb, write, chunk = arg
        raw = txn.get(kb, db=self.db(kb))
        if raw is None:
            return None
        version, created, updated, ml = hdr_unpack(raw)
        if ml & BLOB_FLAG:
            return stub(raw, ml, version, created, updated)
        end = HDR_SIZE + ml
        total = len(raw) - end
        view = memoryview(raw)
        for off in range(end, len(raw), chunk):
            write(view[off : off + chunk])
        return make_var(b"", str(raw[HDR_SIZE:end], "utf-8"), total, created, updated, version)

    def scope(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[Any]:
        out: list[Any] = []
        cur = txn.cursor(self.db(prefix))
        n = len(prefix)
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                out.append((k[n:].decode(), decode(v)))
        return out

    def scope_meta(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[tuple[str, Variable]]:
        """Like ``scope``, with every value's data left out (``data == b""``, ``size``
        the value's): only the headers are read, from the map (``buffers=True``), and
        blob files are not opened."""
        out: list[tuple[str, Variable]] = []
        cur = txn.cursor(self.db(prefix))
        n = len(prefix)
        if cur.set_range(prefix):
            for k, v in cur:
                if bytes(k[:n]) != prefix:
                    break
                version, created, updated, ml = hdr_unpack(v)
                if ml & BLOB_FLAG:
                    var = stub(v, ml, version, created, updated).variable(b"")
                else:
                    end = HDR_SIZE + ml
                    var = make_var(b"", str(v[HDR_SIZE:end], "utf-8"), len(v) - end, created, updated, version)
                out.append((str(k[n:], "utf-8"), var))
        return out

    def scope_listing(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[tuple[str, int, str, float]]:
        """``scope_meta`` as (key, size, MIME type, updated) rows, without a Variable each
        (``isolde vars list``)."""
        out: list[tuple[str, int, str, float]] = []
        cur = txn.cursor(self.db(prefix))
        n = len(prefix)
        if cur.set_range(prefix):
            for k, v in cur:
                if bytes(k[:n]) != prefix:
                    break
                version, created, updated, ml = hdr_unpack(v)
                if ml & BLOB_FLAG:
                    blob = stub(v, ml, version, created, updated)
                    out.append((str(k[n:], "utf-8"), blob.size, blob.mime, updated))
                else:
                    end = HDR_SIZE + ml
                    out.append((str(k[n:], "utf-8"), len(v) - end, str(v[HDR_SIZE:end], "utf-8"), updated))
        return out

    def scope_keys(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[str]:
        """The keys under ``prefix`` (without it), no value read (``buffers=True``)."""
        out: list[str] = []
        cur = txn.cursor(self.db(prefix))
        n = len(prefix)
        if cur.set_range(prefix):
            for k in cur.iternext(keys=True, values=False):
                if bytes(k[:n]) != prefix:
                    break
                out.append(str(k[n:], "utf-8"))
        return out

    def namespaces(self, txn: lmdb.Transaction[bytes], _: None) -> list[str]:
        """Skips from one namespace to the next rather than walking every key (in both
        databases of records: a namespace may hold only isolde's records)."""
        found: set[str] = set()
        for db in (self.vars,) if self.reserved is self.vars else (self.vars, self.reserved):
            cur = txn.cursor(db)
            ok = cur.set_range(b"\x01")  # past the version sequence (key NUL, see writes.py)
            while ok:
                k = cur.key()
                ns = k[: k.index(b"\x00")]
                found.add(ns.decode())
                ok = cur.set_range(ns + b"\x01")
        return sorted(found)

    def owners(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[str]:
        out: list[str] = []
        cur = txn.cursor(self.vars)
        n = len(prefix)
        ok = cur.set_range(prefix)
        while ok:
            k = cur.key()
            if not k.startswith(prefix):
                break
            owner = k[n : k.index(b"\x00", n)]
            out.append(owner.decode())
            ok = cur.set_range(prefix + owner + b"\x01")
        return out

    def listed(self, txn: lmdb.Transaction, names: list[str]) -> set[str]:
        """Which of these blob names the index lists."""
        db = self.blobs
        if db is None:
            return set()
        return {n for n in names if txn.get(n.encode(), db=db) is not None}

    def has_instance(self, txn: lmdb.Transaction[bytes], arg: tuple[bytes, bytes]) -> bool:
        rk, prefix = arg
        if txn.get(rk, db=self.inst) is not None:
            return True
        cur = txn.cursor(self.vars)
        return bool(cur.set_range(prefix)) and cur.key().startswith(prefix)

    def orphans(self, txn: lmdb.Transaction[bytes], here: tuple[str, str, str]) -> list[tuple[bytes, bytes]]:
        """Registrations whose process died on this host."""
        return [(k, v) for k, v in txn.cursor(self.inst) if is_orphan(v, here)]
