"""``InstanceHistory``: where instance records, timelines and cancel requests are kept.

The built-in implementation (``StoreHistory``) keeps them in the variable store, through
the ``VariableStore`` interface, so every store backend (LMDB, PostgreSQL, the in-memory
test store) holds them.  A backend with its own tables implements this Protocol; the
writes it returns from ``writes`` are committed in the same store transaction as a
state's own writes, so they must be ``Put``s of the engine's variable store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from ..store import Put

__all__ = ["InstanceHistory"]


class InstanceHistory(Protocol):
    """Records (one JSON object per instance), timeline chunks and cancel requests."""

    def writes(self, namespace: str, instance_id: str, *, record: dict[str, Any] | None = None,
               chunk: tuple[int, bytes] | None = None, encoded: bytes | None = None) -> list[Put]:
        """The writes that store ``record`` and/or timeline chunk ``(seq, bytes)``, to commit
        with a state's own writes (``VariableStore.write``).  ``encoded``, when given, is
        ``encode_record(record)`` made by the caller."""
        ...

    def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
        """One record (``namespace`` filled in), None when unknown or when the id is not one;
        also a record ``elsewhere`` lists."""
        ...

    def records(self, namespace: str) -> list[dict[str, Any]]:
        """Every record of a namespace this history writes, in no particular order."""
        ...

    def elsewhere(self, namespace: str) -> list[dict[str, Any]]:
        """Records of a namespace's instances kept outside this history's own writes, listed
        with them (the instances of ``isolde serve`` workers sharing a database, whose records
        are the workers' shared table): pending, running and finished, as last committed;
        empty when there are none (``StoreHistory``: the daemon's records are its own keys)."""
        ...

    def finished(self, namespace: str, known: Mapping[str, tuple[float, str, int | None]]) -> list[tuple[float, str, int | None]]:
        """``(ended, id, timeline chunks or None)`` of every ended instance of a namespace, in no
        particular order (the retention's rescan); ids in ``known`` are answered from there."""
        ...

    def chunks(self, namespace: str, instance_id: str, after: int = 0) -> list[tuple[int, bytes]]:
        """The timeline chunks ``(seq, bytes)`` of an instance with ``seq >= after``, in order."""
        ...

    def remove(self, namespace: str, instance_ids: Sequence[str], chunks: Sequence[int | None] | None = None) -> None:
        """Delete records with their timelines (retention); ``chunks[i]``, when given and not
        None, is how many timeline chunks instance ``i`` has (its record's ``chunks``)."""
        ...

    def request_cancel(self, namespace: str, instance_id: str, reason: str) -> None:
        """Ask whichever process runs the instance to cancel it (durable when it returns)."""
        ...

    def cancel_requests(self, namespace: str) -> dict[str, str]:
        """Pending cancel requests of a namespace: instance id -> reason."""
        ...

    def cancel_done(self, namespace: str, instance_id: str) -> list[Put]:
        """The write that clears a cancel request (committed with the instance's outcome)."""
        ...
