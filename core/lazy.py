"""A service made on first use (``isolde.instance.Services`` holds the engine's)."""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from .errors import IsoldeError

T = TypeVar("T")


class Lazy(Generic[T]):
    """A service made by ``factory`` on first :meth:`get`, then handed to ``made``
    (the engine registers its ``close`` there)."""

    __slots__ = ("_factory", "_made", "_value", "_lock", "closed")

    def __init__(self, factory: Callable[[], T], made: Callable[[T], None]) -> None:
        self._factory = factory
        self._made = made
        self._value: T | None = None
        self._lock = threading.Lock()
        self.closed = False

    def get(self) -> T:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                if self.closed:
                    raise IsoldeError("this Engine is closed")
                value = self._factory()
                self._made(value)
                self._value = value
            return self._value

    def close(self) -> None:
        """No more making: a :meth:`get` under way finishes first (so the engine sees what
        it made before cancelling its services), later ones raise."""
        with self._lock:
            self.closed = True

    def peek(self) -> T | None:
        """The service if it was made, without making it."""
        return self._value


__all__ = ["Lazy"]
