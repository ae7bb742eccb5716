"""What the action machinery needs of the instance that calls (the engine's instance
context provides it; a plugin only sees ``StateContext``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..workflow import StateContext

if TYPE_CHECKING:
    from ..files import ValueStream
    from ..store import VariableStore


class CallerContext(StateContext, Protocol):
    """A :class:`StateContext` plus what only the engine's own machinery uses."""

    store: VariableStore
    """The store as this instance writes to it (its isolates' writes through the sidecar too)."""

    def commit(self) -> None: ...

    def open_value(self, scope: str, key: str) -> ValueStream | None:
        """A variable's value as a readable stream (``mime``, ``size``), None when missing."""

    def owns_instance_variables(self) -> None: ...


__all__ = ["CallerContext"]
