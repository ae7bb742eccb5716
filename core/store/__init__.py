"""The persistent variable store.

``VariableStore`` (``protocol.py``) is the interface everything else uses;
``LmdbStore`` (``lmdb.py``) is the built-in backend.  The modules, by what they hold:

- ``types``: Variable, Ref, Put and the errors, shared by every backend;
- ``keys``: the key rule, scopes, key encoding (``KeyCodec``);
- ``codec``: the record format; ``readers``: value streams;
- ``blobs``: large values as files (``isolde.liveness``: process identity for orphan sweeping);
- ``env``: one LMDB environment per directory, map growth, transaction runners;
- ``commit``: group commit; ``reads``/``writes``: transaction bodies;
- ``lmdb``: LmdbStore, which puts them together.
"""

from __future__ import annotations

from .keys import KEY_RE, MAX_KEY_BYTES, SCOPES, check_key, check_name, check_ref, check_scope, scope_owner
from .lmdb import DEFAULT_BLOB_THRESHOLD, LmdbStore
from .types import InvalidKey, Put, Ref, StoreError, StoreFull, Variable

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from .protocol import ValueReader, VariableStore

__all__ = [
    "SCOPES",
    "KEY_RE",
    "MAX_KEY_BYTES",
    "DEFAULT_BLOB_THRESHOLD",
    "StoreError",
    "InvalidKey",
    "StoreFull",
    "Variable",
    "Ref",
    "Put",
    "check_key",
    "check_name",
    "check_ref",
    "check_scope",
    "scope_owner",
    "LmdbStore",
    "ValueReader",
    "VariableStore",
]


def __getattr__(name: str) -> object:
    """The interfaces (``protocol``, which needs ``typing``), imported on first use."""
    if name in ("ValueReader", "VariableStore"):
        from . import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
