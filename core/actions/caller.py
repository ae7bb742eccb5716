"""What the action machinery needs of the instance that calls (the engine's instance
context provides it; a plugin only sees ``StateContext``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from ..workflow import StateContext

if TYPE_CHECKING:
    from ..store import Variable


class CallerContext(StateContext, Protocol):
    """A :class:`StateContext` plus what only the engine's own machinery uses."""

    def commit(self) -> None: ...

    def read_into(self, scope: str, key: str, write: Callable[[memoryview], object]) -> Variable | None: ...

    def owns_instance_variables(self) -> None: ...


__all__ = ["CallerContext"]
