"""The store's value types and errors: what every backend and every caller share."""

from __future__ import annotations

from ..errors import IsoldeError
from ..records import Frozen, typed_as_dataclass

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)

__all__ = ["StoreError", "InvalidKey", "StoreFull", "Variable", "Ref", "Put", "make_var", "make_ref", "make_put"]


class StoreError(IsoldeError):
    """Any failure of the variable store that a workflow can be told about."""

    code: str = "isolde.store.error"


class InvalidKey(StoreError):
    """A variable key breaks Direktiv's key rule; same code as Direktiv."""

    code: str = "direktiv.var.invalidKey"


class StoreFull(StoreError):
    """The store cannot grow any more (``max_map_size`` reached)."""

    code: str = "isolde.store.full"


@typed_as_dataclass(frozen=True)
class Variable(Frozen):
    """A stored variable.  ``data`` is left out of ``repr`` so logging a
    Variable never dumps a 100 MB archive.  ``version`` is unique per write
    across the whole store (a new write, even after a delete, never repeats an
    earlier version), so it can serve as a strong ETag."""

    __slots__ = ("data", "mime", "size", "created", "updated", "version")
    __match_args__ = ("data", "mime", "size", "created", "updated", "version")
    _no_repr = ("data",)
    data: bytes
    mime: str
    size: int
    created: float
    updated: float
    version: int

    def __init__(self, data: bytes, mime: str, size: int, created: float, updated: float, version: int) -> None:
        _set_data(self, data)
        _set_mime(self, mime)
        _set_size(self, size)
        _set_created(self, created)
        _set_updated(self, updated)
        _set_version(self, version)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(mime={self.mime!r}, size={self.size!r}, created={self.created!r}, "
                f"updated={self.updated!r}, version={self.version!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Variable = other
            return ((self.data, self.mime, self.size, self.created, self.updated, self.version)
                    == (o.data, o.mime, o.size, o.created, o.updated, o.version))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.data, self.mime, self.size, self.created, self.updated, self.version))


@typed_as_dataclass(frozen=True)
class Ref(Frozen):
    """Where a variable lives.  ``owner`` is the instance id (instance scope),
    the workflow id (workflow scope), and ignored for namespace scope (it is
    always stored as ``""``, so callers that pass the workflow id anyway still
    address the one namespace variable)."""

    __slots__ = ("namespace", "scope", "owner", "key")
    __match_args__ = ("namespace", "scope", "owner", "key")
    namespace: str
    scope: str
    owner: str
    key: str

    def __init__(self, namespace: str, scope: str, owner: str, key: str) -> None:
        ns, sc, ow, ke = _set_ref
        ns(self, namespace)
        sc(self, scope)
        ow(self, owner)
        ke(self, key)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(namespace={self.namespace!r}, scope={self.scope!r}, "
                f"owner={self.owner!r}, key={self.key!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Ref = other
            return (self.namespace, self.scope, self.owner, self.key) == (o.namespace, o.scope, o.owner, o.key)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.namespace, self.scope, self.owner, self.key))


@typed_as_dataclass(frozen=True)
class Put(Frozen):
    """One write of a batch; ``data=None`` deletes, the only way a workflow
    removes a variable."""

    __slots__ = ("ref", "data", "mime")
    __match_args__ = ("ref", "data", "mime")
    ref: Ref
    data: bytes | None
    if TYPE_CHECKING:  # the default as the type checker sees it (a slot cannot have a class value)
        mime: str = "application/json"
    else:
        mime: str

    def __init__(self, ref: Ref, data: bytes | None, mime: str = "application/json") -> None:
        rf, da, mi = _set_put
        rf(self, ref)
        da(self, data)
        mi(self, mime)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(ref={self.ref!r}, data={self.data!r}, mime={self.mime!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Put = other
            return (self.ref, self.data, self.mime) == (o.ref, o.data, o.mime)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.ref, self.data, self.mime))


# The classes are frozen (``Frozen.__setattr__`` refuses): their slots are set
# through the member descriptors, also the cheapest way to build one.
_new_object = object.__new__
_set_data = Variable.__dict__["data"].__set__
_set_mime = Variable.__dict__["mime"].__set__
_set_size = Variable.__dict__["size"].__set__
_set_created = Variable.__dict__["created"].__set__
_set_updated = Variable.__dict__["updated"].__set__
_set_version = Variable.__dict__["version"].__set__


def make_var(data: bytes, mime: str, size: int, created: float, updated: float, version: int) -> Variable:
    """Fast equivalent of ``Variable(...)`` for the hot read path."""
    v: Variable = _new_object(Variable)
    _set_data(v, data)
    _set_mime(v, mime)
    _set_size(v, size)
    _set_created(v, created)
    _set_updated(v, updated)
    _set_version(v, version)
    return v


_set_ref = (Ref.__dict__["namespace"].__set__, Ref.__dict__["scope"].__set__,
            Ref.__dict__["owner"].__set__, Ref.__dict__["key"].__set__)
_set_put = (Put.__dict__["ref"].__set__, Put.__dict__["data"].__set__, Put.__dict__["mime"].__set__)


def make_ref(namespace: str, scope: str, owner: str, key: str) -> Ref:
    """Fast equivalent of ``Ref(...)`` (the instance loop makes one per variable read or written)."""
    r: Ref = _new_object(Ref)
    ns, sc, ow, ke = _set_ref
    ns(r, namespace)
    sc(r, scope)
    ow(r, owner)
    ke(r, key)
    return r


def make_put(ref: Ref, data: bytes | None, mime: str) -> Put:
    """Fast equivalent of ``Put(...)``."""
    p: Put = _new_object(Put)
    rf, da, mi = _set_put
    rf(p, ref)
    da(p, data)
    mi(p, mime)
    return p
