"""``InstanceInfo``: a pending or running instance of the daemon, as the API shows it and
its record stores it."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..history import Recorder
    from ..instance import ErrorInfo, InstanceContext

__all__ = ["InstanceInfo", "error_dict"]


@dataclass(slots=True, eq=False)
class InstanceInfo:
    """A pending or running instance, as the API reports it."""

    id: str
    namespace: str
    workflow: str
    data: dict[str, Any]
    trigger: str
    created: float
    input: Any = None  # the instance's input as its record keeps it (capped: [history] max_data_bytes)
    status: str = "pending"  # pending | running | complete | failed | cancelled
    state: str | None = None  # the state it is in (or will resume at)
    started: float | None = None
    ended: float | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    log: deque[list[Any]] = field(default_factory=deque)
    done: threading.Event = field(default_factory=threading.Event)
    resumed: bool = False
    ivars: bool = False  # may hold instance variables (the record says so at restart)
    cancel: str | None = None
    cancel_api: bool = False  # cancelled by a user (ends "cancelled", direktiv.cancels.api)
    recorder: Recorder | None = None  # its history while it runs
    ctx: InstanceContext | None = None  # its context, once it finished a state (to detach it at stop)
    lock_at: str | None = None  # while it holds variable locks: the state that took them
    lock_data: dict[str, Any] | None = None  # ... and that state's input
    lock_safe: bool = True  # no state that must not run twice ran while it held them
    recorded: bool = True  # its record is in the store (a start that is waited for has none until it commits)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "workflow": self.workflow,
            "status": self.status,
            "state": self.state,
            "trigger": self.trigger,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "resumed": self.resumed,
        }

    def ended_record(self, status: str, output: Any, error: dict[str, Any] | None, ended: float) -> dict[str, Any]:
        """The record of this instance once it ended so (what ``record`` gives after those
        fields are set, without setting them: the API shows the outcome once it is stored)."""
        rec = self.view()
        rec.update(status=status, output=output, error=error, ended=ended, v=1, data=None, ivars=self.ivars,
                   log=list(self.log))
        return rec

    def record(self) -> dict[str, Any]:
        rec = self.view()
        rec["v"] = 1
        live = self.status in ("pending", "running")
        if live and self.lock_at is not None:
            rec["state"] = self.lock_at
            rec["data"] = self.lock_data
            rec["lock"] = {"state": self.lock_at, "safe": self.lock_safe}
        else:
            rec["data"] = self.data if live else None
        rec["ivars"] = self.ivars
        rec["log"] = list(self.log)
        return rec


def error_dict(err: ErrorInfo | None) -> dict[str, Any] | None:
    """An instance's error as its record and the API show it."""
    if err is None:
        return None
    return {"code": err.code, "message": err.message, "state": err.state}
