"""What running an instance gives back."""

from __future__ import annotations

from typing import Any

from ..records import NEW, Record, typed_as_dataclass


@typed_as_dataclass()
class ErrorInfo(Record):
    __slots__ = ("code", "message", "state")
    __match_args__ = ("code", "message", "state")
    code: str
    message: str
    state: str | None

    def __init__(self, code: str, message: str, state: str | None = None) -> None:
        self.code = code
        self.message = message
        self.state = state

    def __str__(self) -> str:
        where = f" (state '{self.state}')" if self.state else ""
        return f"{self.code}: {self.message}{where}"


@typed_as_dataclass()
class Result(Record):
    """What ``Engine.run`` returns."""

    __slots__ = ("instance_id", "status", "output", "error", "log", "workflow", "namespace", "states")
    __match_args__ = ("instance_id", "status", "output", "error", "log", "workflow", "namespace", "states")
    _fresh = {"log": list, "states": list}
    instance_id: str
    status: str
    """"complete" or "failed" (or "cancelled")."""
    output: Any
    """The final state data (None when failed)."""
    error: ErrorInfo | None
    log: list[str]
    workflow: str
    namespace: str
    states: list[str]
    """The ids of the states the instance entered, in order."""

    def __init__(self, instance_id: str, status: str, output: Any = None, error: ErrorInfo | None = None,
                 log: list[str] = NEW, workflow: str = "", namespace: str = "", states: list[str] = NEW) -> None:
        self.instance_id = instance_id
        self.status = status
        self.output = output
        self.error = error
        self.log = [] if log is NEW else log
        self.workflow = workflow
        self.namespace = namespace
        self.states = [] if states is NEW else states

    @property
    def ok(self) -> bool:
        return self.status == "complete"


__all__ = ["ErrorInfo", "Result"]
