"""The workflows and namespaces the daemon serves (what the folder sync found)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .settings import DaemonError

if TYPE_CHECKING:
    from ..workflow import Workflow

__all__ = ["Catalog", "WorkflowEntry"]


@dataclass(slots=True)
class WorkflowEntry:
    """One workflow file: the version that serves (last good) and the state of the file."""

    namespace: str
    id: str
    path: Path
    workflow: Workflow | None = None  # the last version that validated; serves instances
    digest: str = ""  # sha256 of the file as last read (valid or not)
    errors: list[str] = field(default_factory=list)  # diagnostics of the file as last read
    updated: float = 0.0
    subscription: Callable[[], None] | None = None  # cancels its event start
    created: float = field(default_factory=time.time)  # when the daemon first saw this name

    def summary(self) -> dict[str, Any]:
        wf = self.workflow
        start = (wf.fields.get("start") or {}) if wf is not None else {}
        return {
            "path": self.id,
            "file": str(self.path),
            "valid": not self.errors,
            "serving": wf is not None,
            "errors": list(self.errors),
            "start": start.get("type", "default") if wf is not None else None,
            "cron": start.get("cron") if wf is not None else None,
            "singular": bool(wf.fields.get("singular")) if wf is not None else None,
            "updated": self.updated,
        }


class Catalog:
    """Served namespaces and workflow entries, shared by the sync thread, the runner, the
    triggers and the API; ``lock`` guards both maps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.workflows: dict[tuple[str, str], WorkflowEntry] = {}
        self.namespaces: set[str] = set()

    def get(self, ns: str, wid: str) -> WorkflowEntry | None:
        with self.lock:
            return self.workflows.get((ns, wid))

    def in_namespace(self, ns: str) -> list[WorkflowEntry]:
        with self.lock:
            return [e for (n, _), e in self.workflows.items() if n == ns]

    def check_namespace(self, ns: str) -> None:
        with self.lock:
            if ns in self.namespaces:
                return
        raise DaemonError(404, "isolde.namespace.notFound", f"no namespace '{ns}' (a namespace is a folder {self.root}/<namespace>)")

    def entry(self, ns: str, wid: str) -> WorkflowEntry:
        """The served entry, or DaemonError 404 (namespace or workflow unknown)."""
        self.check_namespace(ns)
        entry = self.get(ns, wid)
        if entry is None:
            raise DaemonError(404, "isolde.workflow.notFound", f"no workflow '{wid}' in namespace '{ns}'")
        return entry

    def counts(self) -> tuple[int, int, int]:
        """Namespaces, workflows, invalid workflows."""
        with self.lock:
            return len(self.namespaces), len(self.workflows), sum(1 for e in self.workflows.values() if e.errors)
