"""The schema of a database-backed store, as ``isolde db status`` / ``isolde db upgrade`` see it.

A store plugin whose backend keeps tables (PostgreSQL) answers the
``isolde_schema_admin`` hook with a ``SchemaAdmin`` for the configured store: it
reports which versions the database holds (``status``) and applies the missing
migration steps (``upgrade``), without opening the store itself.  The built-in
LMDB store has no schema to migrate (the hook answers None for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["SchemaAdmin", "SchemaStatus"]


@dataclass
class SchemaStatus:
    """``applied``: component -> newest version the database holds; ``known``:
    component -> newest version this isolde knows; ``pending``: one line per step
    ``upgrade`` would apply (empty when up to date)."""

    applied: dict[str, int] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)


@runtime_checkable
class SchemaAdmin(Protocol):
    """The schema of one configured store's database."""

    where: str
    """The database, for messages (a URL without its password)."""

    def status(self) -> SchemaStatus:
        """What the database holds; changes nothing.  Raises ``StoreError`` when it cannot connect."""

    def upgrade(self) -> list[str]:
        """Apply the missing steps (all or none); one line per step applied.  Raises
        ``StoreError`` when it cannot connect or the database is newer than this isolde."""

    def close(self) -> None:
        """Release the connection."""
