"""What running an instance gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ErrorInfo:
    code: str
    message: str
    state: str | None = None

    def __str__(self) -> str:
        where = f" (state '{self.state}')" if self.state else ""
        return f"{self.code}: {self.message}{where}"


@dataclass(slots=True)
class Result:
    """What ``Engine.run`` returns."""

    instance_id: str
    status: str  # "complete" or "failed"
    output: Any = None  # the final state data (None when failed)
    error: ErrorInfo | None = None
    log: list[str] = field(default_factory=list)
    workflow: str = ""
    namespace: str = ""
    states: list[str] = field(default_factory=list)
    """The ids of the states the instance entered, in order."""

    @property
    def ok(self) -> bool:
        return self.status == "complete"


__all__ = ["ErrorInfo", "Result"]
