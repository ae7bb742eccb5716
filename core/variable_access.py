"""``engine.variables``: a program's access to variables by scope, and the namespace-name rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from .errors import IsoldeError
from .store import SCOPES, Put, Ref, Variable, VariableStore, check_key, check_scope
from .variables import decode, encode

if TYPE_CHECKING:
    from .lazy import Lazy

__all__ = ["Variables", "check_name"]

def check_name(value: str, what: str) -> None:
    if not value or "\x00" in value or "/" in value or len(value.encode()) > 255:
        raise IsoldeError(f"invalid {what} name {value!r}: 1-255 bytes, no '/' or NUL")


class Variables:
    """``engine.variables``: read and write variables by scope from Python.

    ``scope`` is ``namespace`` (default), ``workflow`` (needs ``workflow=``) or
    ``instance`` (needs ``instance=``).
    """

    def __init__(self, store: Lazy[VariableStore]) -> None:
        self._store = store

    def _ref(self, key: str, scope: str, namespace: str, workflow: str | None, instance: str | None) -> Ref:
        check_name(namespace, "namespace")  # the same rule as run(): no namespace a workflow cannot use
        check_scope(scope)
        check_key(key)
        owner = ""
        if scope == "workflow":
            if not workflow:
                raise IsoldeError("workflow scope needs a workflow name")
            owner = workflow
        elif scope == "instance":
            if not instance:
                raise IsoldeError("instance scope needs an instance id")
            owner = instance
        return Ref(namespace, scope, owner, key)

    def get(self, key: str, *, scope: str = "namespace", namespace: str = "default",
            workflow: str | None = None, instance: str | None = None) -> Variable | None:
        """The stored variable (bytes, mime type, size, times) or None."""
        return self._store.get().get(self._ref(key, scope, namespace, workflow, instance))

    def value(self, key: str, **where: Any) -> Any:
        """The variable decoded as a getter with ``as_text`` sees it: JSON as its value, UTF-8
        text as the string, other bytes as base64 (None when missing)."""
        var = self.get(key, **where)
        return None if var is None else decode(var.data, text=True)

    def set(self, key: str, value: Any, *, mime: str | None = None, scope: str = "namespace",
            namespace: str = "default", workflow: str | None = None, instance: str | None = None) -> None:
        """Store a value as a setter would (``bytes`` are stored as they are; None deletes)."""
        ref = self._ref(key, scope, namespace, workflow, instance)
        if value is None:
            self._store.get().write([Put(ref, None)])
            return
        if isinstance(value, (bytes, bytearray)):
            data, mime = bytes(value), mime or "application/octet-stream"
        else:
            data, mime = encode(value, mime)
        self._store.get().write([Put(ref, data, mime)])

    def delete(self, key: str, **where: Any) -> None:
        self.set(key, None, **where)

    def list(self, *, scope: str = "namespace", namespace: str = "default",
             workflow: str | None = None, instance: str | None = None) -> list[tuple[str, Variable]]:
        check_name(namespace, "namespace")
        check_scope(scope)
        owner = workflow if scope == "workflow" else instance if scope == "instance" else ""
        return self._store.get().list(namespace, scope, owner or "")

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self.list())


__all__ = ["Engine", "Variables", "SCOPES"]
