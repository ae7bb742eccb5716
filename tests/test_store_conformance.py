"""The built-in LMDB store and lock table against the conformance suites every backend runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isolde.conformance.locks import LocksConformance
from isolde.conformance.store import StoreConformance
from isolde.locks import LockTable
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
    def locks(self, tmp_path: Path) -> LockTable:
        return LockTable(str(tmp_path))
