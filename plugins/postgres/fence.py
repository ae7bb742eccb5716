"""An instance's writes fenced by its claim, whichever way they come (docs/scale-out.md).

A state's commit carries the instance's record (``claims.RecordWrite``), whose fenced
upsert refuses the whole transaction once another worker claimed the instance.  Writes
that carry no record -- an isolate's ``POST /var`` through the sidecar (plain or
compare-and-set), the out/ files of an action that answered with an error, a subflow's
states -- go through the instance's ``ClaimedStore`` instead (``records.instance_store``):
the variable store, whose every write also runs a ``ClaimCheck`` in its transaction.
The check reads the instance's row ``FOR SHARE`` (a claim waits for the write to commit,
so none lands after it) and refuses the transaction (``ClaimLost``: nothing is written)
unless the row still names this worker and the epoch it holds; an instance that has no
row yet (started with ``?wait=true``, nothing committed) is nobody else's.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from isolde.plugin import Put, Ref, ValueReader, Variable

from .claims import ClaimLost, RecordWrite

if TYPE_CHECKING:
    import psycopg

    from .store import PostgresStore

__all__ = ["ClaimCheck", "ClaimedStore"]

_ROW: Final = "SELECT owner, epoch FROM isolde_runs WHERE namespace = %s AND id = %s FOR SHARE"


@dataclass(frozen=True, slots=True, eq=False)
class ClaimCheck(Put):
    """A statement put: the transaction commits only while this worker (``owner``) holds
    the instance of ``ref`` (``i-<id>``) at ``epoch`` (the claim its run began with), or,
    as long as ``recorded()`` is False (this worker wrote no record of it), while the
    instance has no row at all."""

    owner: str = ""
    epoch: int = 1
    recorded: Callable[[], bool] = field(default=lambda: True)

    def in_pipeline(self, conn: psycopg.Connection[Any]) -> Callable[[], None]:
        ns, iid = self.ref.namespace, self.ref.key[2:]
        cur = conn.execute(_ROW, (ns, iid))

        def check() -> None:
            row = cur.fetchone()
            held = not self.recorded() if row is None else (row[0], int(row[1])) == (self.owner, self.epoch)
            if held:
                return
            raise ClaimLost(f"instance {iid} was claimed by another worker (this worker's lease ran out); "
                            "nothing of this write was committed")

        return check


class ClaimedStore:
    """The variable store as one instance of this worker writes to it: reads and deletions
    as they are, every write (``write``, ``update``, ``compare_and_set``) checked by the
    instance's ``ClaimCheck`` in its own transaction.  A batch that carries the instance's
    record is fenced by the record already and goes as it is."""

    __slots__ = ("store", "_make", "_check")

    def __init__(self, store: PostgresStore, check: Callable[[], ClaimCheck]) -> None:
        self.store = store
        self._make = check
        self._check: ClaimCheck | None = None

    @property
    def check(self) -> ClaimCheck:
        """The instance's check (made on first use)."""
        made = self._check
        if made is None:
            made = self._check = self._make()
        return made

    # -- writes: fenced -------------------------------------------------------------
    def write(self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
              handover: Callable[[], None] | None = None) -> None:
        if puts or register_instance is not None:
            for p in puts:
                if p.__class__ is RecordWrite:
                    break  # fenced by the record already
            else:
                puts = [*puts, self.check]
        self.store.write(puts, register_instance=register_instance, handover=handover)

    def update(self, ref: Ref, fn: Callable[[Variable | None], tuple[bytes | None, str] | None]) -> Variable | None:
        return self.store.update(ref, fn, checks=(self.check,))

    def compare_and_set(self, ref: Ref, expected_version: int | None, data: bytes | None,
                        mime: str = "application/json") -> int:
        return self.store.compare_and_set(ref, expected_version, data, mime, checks=(self.check,))

    # -- everything else: the store's ---------------------------------------------
    def get(self, ref: Ref) -> Variable | None:
        return self.store.get(ref)

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        return self.store.get_many(refs)

    def open(self, ref: Ref) -> ValueReader | None:
        return self.store.open(ref)

    def read_into(self, ref: Ref, write: Callable[[memoryview], object], *,
                  chunk_size: int = 1 << 20) -> Variable | None:
        return self.store.read_into(ref, write, chunk_size=chunk_size)

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        return self.store.list(namespace, scope, owner)

    def namespaces(self) -> builtins.list[str]:
        return self.store.namespaces()

    def workflows(self, namespace: str) -> builtins.list[str]:
        return self.store.workflows(namespace)

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        return self.store.delete_scope(namespace, scope, owner)

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        return self.store.delete_workflow(namespace, workflow)

    def delete_namespace(self, namespace: str) -> int:
        return self.store.delete_namespace(namespace)

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        return self.store.rename_workflow(namespace, old, new)

    def end_instance(self, namespace: str, instance_id: str) -> None:
        self.store.end_instance(namespace, instance_id)

    def sweep_orphans(self) -> int:
        return self.store.sweep_orphans()

    def close(self) -> None:
        """The store is the engine's: closing a view of it closes nothing."""
