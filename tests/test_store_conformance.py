"""The built-in LMDB store and lock table against the conformance suites every backend runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isolde.conformance.locks import LocksConformance
from isolde.conformance.store import StoreConformance
from isolde.locks import FileLocks, LockTable
from isolde.store import LmdbStore

T = 4096


class TestLmdbStore(StoreConformance):
    large = 3 * T + 7  # above the blob threshold: the blob-file path

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LmdbStore]:
        with LmdbStore(tmp_path / "vars", blob_threshold=T) as s:
            yield s


class TestLmdbLocks(LocksConformance):
    @pytest.fixture
    def locks(self, tmp_path: Path) -> LockTable[int]:
        return LockTable(FileLocks(str(tmp_path)))


def test_handed_over_lock_excludes_other_processes_until_durable(tmp_path: Path) -> None:
    """Two LockTables on one directory hold separate open file descriptions, as
    two processes do: the other one may not take a handed-over lock before the
    write is durable (it could not see the value shown in this process)."""
    from isolde.errors import WorkflowError

    here, other = LockTable(FileLocks(str(tmp_path))), LockTable(FileLocks(str(tmp_path)))
    key = b"ns\x00w\x00wf\x00x"
    here.acquire("a", [key], 1.0)
    durable = here.hand_over("a", [key])
    with pytest.raises(WorkflowError):
        other.acquire("p", [key], 0.0)
    here.acquire("b", [key], 0.0)  # adopted in this process
    here.release("b")  # released while the write is in flight: still excluded elsewhere
    with pytest.raises(WorkflowError):
        other.acquire("p", [key], 0.0)
    durable()
    other.acquire("p", [key], 0.0)
    other.release("p")
