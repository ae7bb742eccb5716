"""The event bus's errors: a malformed event, and a wait or sleep that was cancelled."""

from __future__ import annotations

from ..errors import InstanceFailure, IsoldeError

CANCELLED = "isolde.cancelled"


class EventError(IsoldeError):
    """An event is malformed or too large (the message says which field and why)."""


class Cancelled(InstanceFailure):
    """A wait or sleep was interrupted: the engine is closing, or the instance was cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code=CANCELLED)
