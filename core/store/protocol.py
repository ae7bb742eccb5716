"""The typed interfaces of the variable store: ``VariableStore`` and ``ValueReader``.

Everything the engine, the instance loop, the CLI, the daemon, the sidecar and
the action folder call on a store is here, with its contract.  A backend (the
built-in ``LmdbStore``, a plugin's store returned from the ``isolde_store`` hook)
implements it and proves it with ``isolde.conformance.store.StoreConformance``.

Addresses: a ``Ref`` names a namespace, a scope (``instance``, ``workflow`` or
``namespace``), the scope's owner (instance id, workflow id, ignored for
namespace scope) and a key.  Every method that takes a Ref or names validates
them first and raises ``InvalidKey`` (code ``direktiv.var.invalidKey``) for a key
that breaks the key rule (``check_key``) or an address too long for the backend,
and ``StoreError`` for a bad scope or an empty/NUL-containing name, before
anything is changed.  Scopes are exact: ``foo`` never addresses ``foobar``.
Every failure of the backend itself is a ``StoreError`` (``StoreFull`` when it
cannot grow): never a backend library's own exception.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, runtime_checkable

from .types import Put, Ref, Variable

__all__ = ["ValueReader", "VariableStore", "Updater"]

# update()'s function: current value (None if missing) -> (data, mime), (None, mime) to delete, or None.
Updater = Callable[[Variable | None], tuple[bytes | None, str] | None]


@runtime_checkable
class ValueReader(Protocol):
    """A readable binary stream of one variable's value (``VariableStore.open``).

    File-like (``read``, ``readinto``, ``close``, a context manager) with the
    value's ``mime`` type and ``size`` in bytes.  It shows the value as it was
    when opened: a later write or delete of the variable neither changes nor
    breaks it.  Close it when done (it may hold a file descriptor)."""

    mime: str
    size: int

    def read(self, size: int | None = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> ValueReader: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> object: ...


@runtime_checkable
class VariableStore(Protocol):
    """Variables of every scope and namespace of one data directory.

    Safe for concurrent use by threads; a backend shared between processes
    (LMDB) is also safe across processes.  "Durable" below means: survives the
    process being killed, and, with a durable configuration, power loss."""

    def get(self, ref: Ref) -> Variable | None:
        """The variable, or None when it does not exist (a getter reads that as null)."""

    def get_many(self, refs: Sequence[Ref]) -> builtins.list[Variable | None]:
        """Several variables, in the order asked, from one consistent snapshot
        (no write is seen half); None for each missing one."""

    def open(self, ref: Ref) -> ValueReader | None:
        """A readable stream of the value, or None when missing.  The stream
        stays valid (and unchanged) if the variable is replaced or deleted
        while it is open."""

    def read_into(
        self, ref: Ref, write: Callable[[memoryview], object], *, chunk_size: int = 1 << 20
    ) -> Variable | None:
        """Stream the value to ``write`` in chunks of at most ``chunk_size``
        bytes (each chunk is valid only during its call; ``write`` must not
        call the store).  Returns the metadata as a Variable whose ``data`` is
        ``b""`` and whose ``size`` is the real size, or None when missing."""

    def list(self, namespace: str, scope: str, owner: str = "") -> builtins.list[tuple[str, Variable]]:
        """Every variable of one exact scope owner as ``(key, Variable)``, sorted by key."""

    def namespaces(self) -> builtins.list[str]:
        """Namespaces holding at least one variable, sorted."""

    def workflows(self, namespace: str) -> builtins.list[str]:
        """Workflow ids of the namespace holding workflow-scope variables, sorted."""

    def write(
        self, puts: Sequence[Put], *, register_instance: tuple[str, str] | None = None,
        handover: Callable[[], None] | None = None,
    ) -> None:
        """Apply a batch atomically and durably: when it returns every put is
        durable; when it raises, none was applied (all or nothing, also for a
        bad key in the middle, which is refused before anything changes).
        ``data=None`` deletes (deleting a missing variable is no error).
        Later puts of one key win.  Every written variable gets a new
        ``version``, never given out before in this store, even after a delete
        (a strong validator: an ETag); ``created`` is kept across overwrites,
        ``updated`` is the write time.  ``register_instance=(namespace,
        instance_id)`` records, in the same commit, that this process owns the
        instance's instance-scope variables (``sweep_orphans``).

        ``handover`` (lock hand-over): called once, as soon as the batch's
        values are what later ``get``/``get_many`` calls of this process return
        and every later write is ordered after this one, which may be before
        the batch is durable (a backend may simply call it after applying).
        The holder of a variable lock passes the lock on from there, so the
        next holder's read-modify-write can share this write's commit.  The
        method itself still returns only once the batch is durable.  Values
        shown ahead of their commit have ``version`` 0."""

    def update(self, ref: Ref, fn: Updater) -> Variable | None:
        """Race-free read-modify-write of one variable: no write of another
        thread or process can come between the read and the write.  ``fn``
        gets the current Variable (None if missing) and returns ``(data,
        mime)``, ``(None, mime)`` to delete, or None to change nothing (then
        nothing is written).  ``fn`` may be called more than once, so it must
        be pure, and must not call the store.  Durable when it returns; returns
        the resulting Variable (None when deleted or missing)."""

    def compare_and_set(
        self, ref: Ref, expected_version: int | None, data: bytes | None, mime: str = "application/json"
    ) -> int:
        """Write (``data=None``: delete) only if the variable is still at
        ``expected_version`` (None or 0: only if it does not exist).  Returns
        0, having written nothing, when that precondition fails; otherwise a
        positive number, durable: for a write, the new version (the ETag of
        what was written).  A negative ``expected_version`` is a StoreError."""

    def delete_scope(self, namespace: str, scope: str, owner: str = "") -> int:
        """Atomically delete every variable of one exact scope owner; returns how many."""

    def delete_workflow(self, namespace: str, workflow: str) -> int:
        """``delete_scope(namespace, "workflow", workflow)``."""

    def delete_namespace(self, namespace: str) -> int:
        """Atomically delete every variable of every scope of the namespace and
        its instance registrations; returns the number of variables."""

    def rename_workflow(self, namespace: str, old: str, new: str) -> int:
        """Atomically move the workflow-scope variables of ``old`` to ``new``
        (versions, times and values kept); ``new``'s own variables, if any, are
        replaced, as ``os.rename`` does.  Returns how many moved."""

    def end_instance(self, namespace: str, instance_id: str) -> None:
        """The instance ended: atomically delete its instance-scope variables
        and its registration (nothing to do is no error, and should cost no
        durable write)."""

    def sweep_orphans(self) -> int:
        """Delete the instance-scope variables of instances registered by
        processes that died (on this host) without ending them, and any other
        garbage the backend keeps (e.g. unreferenced files); returns how many
        instances were swept.  A backend without processes to outlive returns 0."""

    def close(self) -> None:
        """Release the store; safe to call twice.  Every other method then raises StoreError."""
