"""Conformance suite for ``isolde.daemon.InstanceRecords`` backends.

A backend subclasses ``InstanceRecordsConformance`` in its tests and provides a fixture
``records``: a fresh, empty ``InstanceRecords`` that keeps at most ``KEEP`` (3) finished
records::

    class TestMyRecords(InstanceRecordsConformance):
        @pytest.fixture
        def records(self, tmp_path):
            return MyRecords(..., keep=InstanceRecordsConformance.KEEP)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..daemon.records import InstanceRecords

__all__ = ["InstanceRecordsConformance"]


def _record(iid: str, *, ns: str = "ns1", status: str = "running", created: float = 1.0,
            ended: float | None = None, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "v": 1, "id": iid, "namespace": ns, "workflow": "wf", "status": status, "state": "a",
        "trigger": "api", "created": created, "started": created, "ended": ended,
        "output": None, "error": None, "resumed": False,
        "data": {"n": 1} if status in ("pending", "running") else None, "ivars": False, "log": [],
    }
    rec.update(extra)
    return rec


class InstanceRecordsConformance:
    """What every ``InstanceRecords`` backend does (the tests take the ``records`` fixture)."""

    KEEP = 3

    def test_create_then_get(self, records: InstanceRecords) -> None:
        rec = _record("i1", log=[[1.0, "a", "hello"]])
        records.create(rec)
        got = records.get("ns1", "i1")
        assert got is not None
        assert {k: got[k] for k in rec} == rec
        assert got["namespace"] == "ns1"

    def test_unknown_ids_and_namespaces(self, records: InstanceRecords) -> None:
        records.create(_record("i1"))
        assert records.get("ns1", "nope") is None
        assert records.get("ns2", "i1") is None  # records are per namespace
        assert records.get("ns1", "") is None
        assert records.get("ns1", "x" * 300) is None

    def test_update_replaces(self, records: InstanceRecords) -> None:
        records.create(_record("i1"))
        records.update(_record("i1", state="b", data={"n": 2}))
        got = records.get("ns1", "i1")
        assert got is not None and got["state"] == "b" and got["data"] == {"n": 2}

    def test_with_step_is_a_sequence_of_writes(self, records: InstanceRecords) -> None:
        writes = records.with_step(_record("i1"))
        assert len(list(writes)) >= 1

    def test_finish_with_step_stores_the_outcome(self, records: InstanceRecords) -> None:
        records.create(_record("i1"))
        writes = records.finish_with_step(_record("i1", status="complete", ended=2.0, output={"ok": 1}))
        assert len(list(writes)) >= 1  # the caller commits them with its own writes

    def test_finish_and_list_newest_first(self, records: InstanceRecords) -> None:
        for i in range(3):
            records.create(_record(f"i{i}", created=float(i)))
            records.finish(_record(f"i{i}", status="complete", created=float(i), ended=10.0 + i, output={"i": i}))
        records.create(_record("live", created=5.0))
        listed = records.list("ns1")
        assert [r["id"] for r in listed] == ["i2", "i1", "i0"]  # running ones are not listed
        assert listed[0]["output"] == {"i": 2}
        assert records.list("ns2") == []

    def test_list_pages(self, records: InstanceRecords) -> None:
        for i in range(3):
            records.finish(_record(f"i{i}", status="failed", ended=10.0 + i,
                                   error={"code": "x", "message": "m", "state": "a"}))
        assert [r["id"] for r in records.list("ns1", limit=2)] == ["i2", "i1"]
        assert [r["id"] for r in records.list("ns1", offset=2, limit=2)] == ["i0"]
        assert records.list("ns1", offset=5) == []

    def test_finished_beyond_keep_are_dropped_oldest_first(self, records: InstanceRecords) -> None:
        for i in range(self.KEEP + 2):
            records.finish(_record(f"i{i}", status="complete", ended=10.0 + i))
        assert [r["id"] for r in records.list("ns1")] == [f"i{i}" for i in reversed(range(2, self.KEEP + 2))]
        assert records.get("ns1", "i0") is None and records.get("ns1", "i1") is None

    def test_left_running_for_recovery(self, records: InstanceRecords) -> None:
        records.create(_record("b", created=2.0))
        records.create(_record("a", ns="ns2", status="pending", created=1.0))
        records.finish(_record("done", status="complete", ended=3.0))
        left = records.left_running()
        assert [(r["namespace"], r["id"], r["status"]) for r in left] == [("ns2", "a", "pending"), ("ns1", "b", "running")]
        assert left[1]["data"] == {"n": 1}

    def test_claim_a_left_instance(self, records: InstanceRecords) -> None:
        records.create(_record("i1", ivars=True))
        records.left_running()
        records.claim("ns1", "i1")
        records.finish(_record("i1", status="complete", ended=2.0))
        got = records.get("ns1", "i1")
        assert got is not None and got["status"] == "complete"
