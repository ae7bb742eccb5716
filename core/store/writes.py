"""Write-transaction bodies over the ``vars``, ``reserved``, ``inst`` and ``blobs`` databases
(a key or scope prefix goes to ``reserved`` when ``keys.in_reserved`` says so).

Each method is ``body(txn, arg) -> (commit?, result)`` run by ``SharedEnv.write``.

Versions: the record under the key NUL (which sorts before every variable and
belongs to no namespace) in ``vars`` holds ``seq``, the last version given out in
the whole environment (kept in ``vars`` so that a commit of a small store dirties
no extra page).  Every write of a variable takes the next number (and at least one
more than the variable's current version, for records written before ``seq``
existed), so a version is never given out twice, even when a variable is
deleted and created again: ``version`` is a strong validator (the sidecar's
ETag).  The first write to an environment without ``seq`` starts it above every
stored version (one walk over the records, once).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence

import lmdb

from .blobs import BlobFiles, NewBlob
from .codec import BLOB_FLAG, MAX_MIME, Stub, blob_name, decode, hdr_pack, hdr_unpack, is_blob
from .keys import RESERVED_MARK, in_reserved
from .types import Put, Ref, StoreError, Variable, make_var

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Final

    # (key, mime, mime length field, data or blob reference; None deletes)
    Item = tuple[bytes, bytes, int, Any]

__all__ = ["Writes", "items_of"]

SEQ_KEY: Final[bytes] = b"\x00"
_SEQ: Final[struct.Struct] = struct.Struct("<Q")

Updater = Callable[[Variable | None], tuple[bytes | None, str] | None]


_Bytes = (bytes, bytearray, memoryview)


def items_of(puts: Sequence[Put], var_key: Callable[[Ref], bytes], threshold: int) -> tuple[list[Item], list[int] | None]:
    """A batch's puts as checked items ``(key, mime, mime length, data or None)``, and the
    indexes of those larger than ``threshold`` (for blob files; None when there is none)."""
    items: list[Item] = []
    big: list[int] | None = None
    for p in puts:
        kb = var_key(p.ref)
        data = p.data
        if data is None:
            items.append((kb, b"", 0, None))
            continue
        if not isinstance(data, _Bytes):
            raise StoreError(f"variable {p.ref.key!r}: data must be bytes, got {type(data).__name__}")
        mb = p.mime.encode()
        ml = len(mb)
        if ml > MAX_MIME:
            raise StoreError(f"variable {p.ref.key!r}: mime type is too long")
        if len(data) > threshold:
            if big is None:
                big = []
            big.append(len(items))
        items.append((kb, mb, ml, data))
    return items, big


class Writes:
    """The write bodies of one environment; large results of ``update`` go to
    ``files`` (values above ``threshold`` bytes)."""

    __slots__ = ("vars", "inst", "blobs", "reserved", "files", "threshold")

    def __init__(self, dbs: tuple[Any, Any, Any, Any], files: BlobFiles, threshold: int) -> None:
        self.vars, self.inst, self.blobs, self.reserved = dbs  # (reserved may be vars: SharedEnv)
        self.files = files
        self.threshold = threshold

    def db(self, kb: bytes) -> Any:
        """The database holding a key, or the keys under a scope prefix."""
        return self.reserved if in_reserved(kb) else self.vars

    # ------------------------------------------------------------------ versions

    def _seq(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(SEQ_KEY, db=self.vars)
        if raw is not None:
            return int(_SEQ.unpack(raw)[0])
        top = 0  # (once per environment: start above every version)
        for db in (self.vars,) if self.reserved is self.vars else (self.vars, self.reserved):
            for k, v in txn.cursor(db):
                if k == SEQ_KEY:
                    continue
                version = hdr_unpack(v)[0]
                if version > top:
                    top = version
        return top

    def _save_seq(self, txn: lmdb.Transaction, seq: int) -> None:
        txn.put(SEQ_KEY, _SEQ.pack(seq), db=self.vars)

    # ------------------------------------------------------------------ records

    def _put_value(
        self, txn: lmdb.Transaction, kb: bytes, mb: bytes, data: Any, version: int, created: float, now: float,
    ) -> None:
        """Put one record, inline or (for a NewBlob) as a blob reference."""
        if data.__class__ is NewBlob:
            txn.put(kb, hdr_pack(version, created, now, len(mb) | BLOB_FLAG) + mb + data.ref, db=self.db(kb))
            txn.put(data.name.encode(), kb, db=self.blobs)
        else:
            txn.put(kb, hdr_pack(version, created, now, len(mb)) + mb + data, db=self.db(kb))

    def _drop_old(self, txn: lmdb.Transaction, raw: bytes | memoryview | None) -> list[bytes] | None:
        """If the record about to be replaced or deleted is a blob, unindex it
        and return its name for unlinking after the commit."""
        if raw is None or not is_blob(raw):
            return None
        name = blob_name(raw)
        txn.delete(name, db=self.blobs)
        return [name]

    def batch(
        self, txn: lmdb.Transaction,
        arg: tuple[list[Item], tuple[bytes, bytes] | None, list[tuple[bytes, bytes]] | None],
    ) -> tuple[bool, list[bytes] | None]:
        """Apply a batch.  Returns the blob names whose records it replaced or
        deleted (to unlink after the commit), or None.  A blob item arrives with
        the flag already in its mime length and its reference as data;
        ``index`` lists the new names."""
        items, reg, index = arg
        vdb, rdb = self.vars, self.reserved
        get = txn.get
        put = txn.put
        now = time.time()
        drop: list[bytes] | None = None
        if index is not None:  # first, so that a later item of the batch can drop it again
            bdb = self.blobs
            for name, kb in index:
                put(name, kb, db=bdb)
        seq = start = self._seq(txn)
        for kb, mb, ml, data in items:
            db = rdb if kb.startswith(RESERVED_MARK, kb.find(b"\x00") + 1) else vdb  # (in_reserved, inlined)
            old = get(kb, db=db)
            if old is None:
                if data is None:
                    continue
                created = now
            else:
                version, created, _, oml = hdr_unpack(old)
                if version > seq:
                    seq = version
                if oml & 0x8000:  # BLOB_FLAG: the old value's file goes after the commit
                    name = blob_name(old)
                    txn.delete(name, db=self.blobs)
                    if drop is None:
                        drop = [name]
                    else:
                        drop.append(name)
                if data is None:
                    txn.delete(kb, db=db)
                    continue
            seq += 1
            put(kb, hdr_pack(seq, created, now, ml) + mb + data, db=db)
        if seq != start:
            self._save_seq(txn, seq)
        if reg is not None:
            put(reg[0], reg[1], db=self.inst)
        return True, drop

    def update(
        self, txn: lmdb.Transaction, arg: tuple[bytes, Updater, list[NewBlob]],
    ) -> tuple[bool, tuple[Variable | None, list[bytes] | None]]:
        kb, fn, made = arg
        raw = txn.get(kb, db=self.db(kb))
        cur = None if raw is None else decode(raw)
        if isinstance(cur, Stub):
            # The writer lock is held: the current record's file cannot be
            # unlinked by anyone, so a missing file is damage, not a race.
            name = cur.name
            try:
                cur = self.files.load(cur)
            except FileNotFoundError:
                raise self.files.missing(name) from None
        res = fn(cur)
        if res is None:
            return False, (cur, None)
        data, mime = res
        if data is None:
            if cur is None:
                return False, (None, None)
            drop = self._drop_old(txn, raw)
            txn.delete(kb, db=self.db(kb))
            return True, (None, drop)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StoreError(f"update of {kb!r}: data must be bytes, got {type(data).__name__}")
        mb = mime.encode()
        if len(mb) > MAX_MIME:
            raise StoreError("mime type is too long")
        now = time.time()
        seq = self._seq(txn)
        if cur is None:
            created = now
        else:
            seq, created = max(seq, cur.version), cur.created
        version = seq + 1
        data = bytes(data)
        drop = self._drop_old(txn, raw)
        if len(data) > self.threshold:
            nb = self.files.new(data, kb)
            made.append(nb)
            self.files.sync_dir()
            self._put_value(txn, kb, mb, nb, version, created, now)
        else:
            self._put_value(txn, kb, mb, data, version, created, now)
        self._save_seq(txn, version)
        return True, (make_var(data, mime, len(data), created, now, version), drop)

    def compare_and_set(
        self, txn: lmdb.Transaction, arg: tuple[bytes, int | None, Any, bytes]
    ) -> tuple[bool, tuple[int, list[bytes] | None]]:
        """Result: the new version (0 on a mismatch; for a delete, the deleted
        value's version, or -1 when it was already absent) and the dropped blob."""
        kb, expected, data, mb = arg
        raw = txn.get(kb, db=self.db(kb))
        now = time.time()
        if raw is None:
            if expected is not None:
                return False, (0, None)
            if data is None:
                return False, (-1, None)  # already absent, as asked
            version = self._seq(txn) + 1
            self._put_value(txn, kb, mb, data, version, now, now)
            self._save_seq(txn, version)
            return True, (version, None)
        old, created, _, _ = hdr_unpack(raw)
        if old != expected:
            return False, (0, None)
        drop = self._drop_old(txn, raw)
        if data is None:
            txn.delete(kb, db=self.db(kb))
            return True, (old, drop)
        version = max(self._seq(txn), old) + 1
        self._put_value(txn, kb, mb, data, version, created, now)
        self._save_seq(txn, version)
        return True, (version, drop)

    # ------------------------------------------------------------------ bulk deletion

    def delete_prefix(self, txn: lmdb.Transaction, db: Any, prefix: bytes, drop: list[bytes] | None = None) -> int:
        """Delete every key starting with ``prefix``; the prefix always ends in
        NUL (or is a full registration key), which is what makes it exact.
        With ``drop``, blob records are unindexed and their names collected
        (only the header of each value is read; run with ``buffers=True`` so
        inline values are not copied)."""
        cur = txn.cursor(db)
        n = 0
        if cur.set_range(prefix):
            while cur.key()[: len(prefix)] == prefix:
                if drop is not None:
                    v = cur.value()
                    if is_blob(v):
                        name = blob_name(v)
                        txn.delete(name, db=self.blobs)
                        drop.append(name)
                if not cur.delete():
                    break
                n += 1
        return n

    def delete_prefixes(
        self, txn: lmdb.Transaction, arg: tuple[bytes, bytes | None]
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        var_prefix, inst_prefix = arg
        drop: list[bytes] = []
        n = self.delete_prefix(txn, self.db(var_prefix), var_prefix, drop)
        if self.reserved is not self.vars and var_prefix.count(b"\x00") == 1:  # a namespace's prefix covers both
            n += self.delete_prefix(txn, self.reserved, var_prefix, drop)
        m = 0 if inst_prefix is None else self.delete_prefix(txn, self.inst, inst_prefix)
        return bool(n or m), (n, drop)

    def delete_keys(self, txn: lmdb.Transaction, keys: list[bytes]) -> tuple[bool, tuple[int, list[bytes]]]:
        """Delete records by key (run with ``buffers=True``: only a blob's header is read)."""
        which = self.db
        get = txn.get
        delete = txn.delete
        drop: list[bytes] = []
        n = 0
        for kb in keys:
            db = which(kb)
            raw = get(kb, db=db)
            if raw is None:
                continue
            if hdr_unpack(raw)[3] & BLOB_FLAG:  # (is_blob, inlined: the retention deletes thousands)
                name = blob_name(raw)
                delete(name, db=self.blobs)
                drop.append(name)
            delete(kb, db=db)
            n += 1
        return bool(n), (n, drop)

    def batch_then_delete(
        self, txn: lmdb.Transaction, arg: tuple[list[Item], list[bytes]],
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        """``batch`` (no registration, no blob item), then ``delete_keys``, in one
        transaction: a key both written and deleted ends deleted."""
        items, keys = arg
        _, dropped = self.batch(txn, (items, None, None))
        _, (n, drop) = self.delete_keys(txn, keys)
        return True, (n, drop if dropped is None else dropped + drop)

    def end_instance(self, txn: lmdb.Transaction, arg: tuple[bytes, bytes]) -> tuple[bool, list[bytes]]:
        rk, prefix = arg
        drop: list[bytes] = []
        n = self.delete_prefix(txn, self.db(prefix), prefix, drop)
        found = txn.delete(rk, db=self.inst)
        return bool(n or found), drop

    def sweep(
        self, txn: lmdb.Transaction, candidates: list[tuple[bytes, bytes]]
    ) -> tuple[bool, tuple[int, list[bytes]]]:
        swept = 0
        drop: list[bytes] = []
        for rk, rv in candidates:
            if txn.get(rk, db=self.inst) != rv:
                continue  # re-registered or ended meanwhile
            ns, _, iid = rk.partition(b"\x00")
            prefix = ns + b"\x00i\x00" + iid + b"\x00"
            self.delete_prefix(txn, self.db(prefix), prefix, drop)
            txn.delete(rk, db=self.inst)
            swept += 1
        return bool(swept), (swept, drop)

    def rename(self, txn: lmdb.Transaction[bytes], arg: tuple[bytes, bytes]) -> tuple[bool, tuple[int, list[bytes]]]:
        src, dst = arg
        db = self.vars
        moved: list[tuple[bytes, bytes]] = []
        cur = txn.cursor(db)
        n = len(src)
        if cur.set_range(src):
            for k, v in cur:
                if not k.startswith(src):
                    break
                moved.append((k[n:], v))
        if not moved:
            return False, (0, [])
        drop: list[bytes] = []
        self.delete_prefix(txn, db, src)
        self.delete_prefix(txn, db, dst, drop)
        put = txn.put
        for suffix, v in moved:
            put(dst + suffix, v, db=db)
            if is_blob(v):
                put(blob_name(v), dst + suffix, db=self.blobs)  # the index follows the record
        return True, (len(moved), drop)
