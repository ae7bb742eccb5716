"""The store's value types and errors: what every backend and every caller share."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import IsoldeError

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


@dataclass(frozen=True, slots=True)
class Variable:
    """A stored variable.  ``data`` is left out of ``repr`` so logging a
    Variable never dumps a 100 MB archive.  ``version`` is unique per write
    across the whole store (a new write, even after a delete, never repeats an
    earlier version), so it can serve as a strong ETag."""

    data: bytes = field(repr=False)
    mime: str
    size: int
    created: float
    updated: float
    version: int


@dataclass(frozen=True, slots=True)
class Ref:
    """Where a variable lives.  ``owner`` is the instance id (instance scope),
    the workflow id (workflow scope), and ignored for namespace scope (it is
    always stored as ``""``, so callers that pass the workflow id anyway still
    address the one namespace variable)."""

    namespace: str
    scope: str
    owner: str
    key: str


@dataclass(frozen=True, slots=True)
class Put:
    """One write of a batch; ``data=None`` deletes, the only way a workflow
    removes a variable."""

    ref: Ref
    data: bytes | None
    mime: str = "application/json"


# A frozen dataclass __init__ goes through object.__setattr__ once per field,
# which would be the most expensive step of a get().  Setting the slots through
# their member descriptors builds the identical object at about half the cost.
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
