"""What the action machinery needs of the instance that calls (the engine's instance
context provides it; a plugin only sees ``StateContext``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from ..store import Variable
    from ..workflow import Workflow


class CallerContext(Protocol):
    namespace: str
    instance_id: str
    workflow: Workflow
    step: int

    def log(self, message: str) -> None: ...

    def set(self, scope: str, key: str, data: Any, mime: str = "application/json") -> None: ...

    def commit(self) -> None: ...

    def get_many(self, items: Sequence[tuple[str, str]]) -> list[Variable | None]: ...

    def read_into(self, scope: str, key: str, write: Callable[[memoryview], object]) -> Variable | None: ...

    def read_file(self, key: str) -> bytes | None: ...

    def owns_instance_variables(self) -> None: ...

    def time_left(self) -> float | None: ...


__all__ = ["CallerContext"]
