"""Taking over after a previous daemon: one daemon per data directory, the records of
the instances it left running, and resuming them or ending them ``interrupted``.

The store sweeps instance variables of dead processes when it opens; a crashed daemon's
instances are dead processes' too.  So the daemon opens the engine's store without that
sweep (``DeferredSweep``, an ``isolde_store`` hook of the engine's own plugin manager),
claims the instances its records say are running, and only then sweeps.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import IsoldeError
from ..hookspecs import hookimpl
from ..store import LmdbStore, StoreError
from .catalog import Catalog
from .records import InstanceRecords
from .runs import InstanceInfo, Runs

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["DataDirLock", "DeferredSweep", "Recovery"]


class DataDirLock:
    """One daemon per data directory: a second one would take the first one's running
    instances for a crashed daemon's and run them again.  An exclusive ``flock`` on
    ``DATA_DIR/daemon.lock`` says so; the kernel drops it when the process dies, even by
    ``kill -9``, so a crash never leaves a stale lock behind."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path / "daemon.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IsoldeError(
                f"another isolde serve (pid {other}) already uses the data directory {self.path}; "
                "one daemon per data directory (give this one --data-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


class DeferredSweep:
    """Plugin for the engine's plugin manager: the built-in LMDB store, opened without its
    orphan sweep; ``sweep()`` runs it once the daemon has claimed its instances."""

    def __init__(self) -> None:
        self.store: LmdbStore | None = None

    @hookimpl
    def isolde_store(self, config: Config, data_dir: str) -> LmdbStore:
        threshold = config.data.get("store", {}).get("blob_threshold", 1 << 20)  # as the engine opens it
        self.store = LmdbStore(data_dir, durable=config.durable, blob_threshold=threshold)
        return self.store

    def sweep(self) -> None:
        if self.store is not None:
            self.store.sweep_orphans()


class Recovery:
    """Resumes or ends the instances a previous daemon left running."""

    def __init__(self, records: InstanceRecords, runs: Runs, catalog: Catalog, log: logging.Logger, *,
                 has_instance_vars: Callable[[str, str], bool], end_instance: Callable[[str, str], None]) -> None:
        self.records = records
        self.runs = runs
        self.catalog = catalog
        self.log = log
        self._has_ivars = has_instance_vars  # are its instance variables there?
        self._end_instance = end_instance  # removes its instance variables
        self.left: list[dict[str, Any]] = []

    def take_over(self) -> None:
        """Read the records left running and claim their instance variables (before the
        orphan sweep would delete them)."""
        self.left = self.records.left_running()
        for rec in self.left:
            if rec.get("ivars"):
                self.records.claim(rec["namespace"], str(rec["id"]))

    def recover(self) -> None:
        """Resume each instance at its recorded state when that state's type is
        ``resumable`` and its instance variables are intact, else end it ``interrupted``.
        One that held variable locks resumes at the state that took them (which takes
        them again and reads again), or ends ``interrupted`` when a state that must not
        run twice ran meanwhile."""
        left, self.left = self.left, []
        for rec in left:
            self._recover_one(rec)

    def _recover_one(self, rec: dict[str, Any]) -> None:
        ns, iid, status = rec["namespace"], str(rec.get("id")), rec.get("status")
        wid = str(rec.get("workflow"))
        entry = self.catalog.get(ns, wid)
        wf = entry.workflow if entry is not None else None
        raw = rec.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        info = InstanceInfo(iid, ns, wid, data, str(rec.get("trigger") or "api"), float(rec.get("created") or time.time()),
                            input=rec.get("input"))
        info.log.extend(rec.get("log") or [])
        info.ivars = bool(rec.get("ivars"))
        info.resumed = True
        state = rec.get("state")
        lock = rec.get("lock") if isinstance(rec.get("lock"), dict) else None
        reason = None
        if wf is None:
            reason = f"workflow '{wid}' is no longer served"
        elif status == "pending":
            state = None  # it never started: run it from the start
        elif state is None and status == "running":
            reason = "it had committed its last state, but not its outcome"
        elif state not in wf.states:
            reason = f"state '{state}' no longer exists in workflow '{wid}'"
        elif lock is not None and not lock.get("safe", False):
            reason = (f"it held variable locks (lock: true, taken in state '{lock.get('state')}') and "
                      "a state that is not safe to run again had started")
        elif not wf.states[state].impl.resumable:
            reason = f"state '{state}' (type {wf.states[state].type}) was running and is not safe to run again"
        elif info.ivars and not self._has_ivars(ns, iid):
            reason = "its instance variables were removed while the daemon was down"
        if reason is None and wf is not None:
            info.state = state or wf.start.id
            self.log.info("resuming instance", extra={"fields": {
                "ns": ns, "workflow": wid, "id": iid, "state": info.state,
                "relock": "yes" if lock is not None else None}})
            self.runs.adopt(info, wf, state)
            return
        info.status = "failed"
        info.state = state
        info.started = rec.get("started")
        info.ended = time.time()
        info.error = {"code": "interrupted", "message": f"the daemon stopped while the instance ran; {reason}", "state": state}
        self.log.warning("instance interrupted", extra={"fields": {"ns": ns, "workflow": wid, "id": iid, "reason": reason}})
        self.records.finish(info.record())
        try:
            self._end_instance(ns, iid)
        except StoreError as exc:
            self.log.error("could not remove instance variables", extra={"fields": {"id": iid, "error": str(exc)}})
