"""``isolde db``: the schema of a database-backed store (``status``, ``upgrade``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, TypeVar

import click

from .common import EXIT_FAILED, _common, _engine, _handled

if TYPE_CHECKING:
    from ..migrations import SchemaAdmin

__all__ = ["db"]

T = TypeVar("T")


def _with_admin(data_dir: str | None, config_path: str | None, use: Callable[[SchemaAdmin], T]) -> tuple[SchemaAdmin, T] | None:
    """``use(admin)`` on the configured store's schema admin, closed after; None (and a
    message) when the store keeps no versioned tables."""
    with _engine(data_dir, config_path) as engine:
        admin = engine.schema_admin()
        if admin is None:
            click.echo("the store keeps no versioned tables (LMDB): nothing to migrate", err=True)
            return None
        try:
            return admin, use(admin)
        finally:
            admin.close()


@click.group()
def db() -> None:
    """The store's tables: which schema versions a PostgreSQL database holds, and upgrading it."""


@db.command("status")
@_common
@_handled
def db_status(data_dir: str | None, config_path: str | None) -> None:
    """Show the schema versions the database holds and the steps an upgrade would apply
    (exit 1 when the database is newer than this isolde)."""
    got = _with_admin(data_dir, config_path, lambda admin: admin.status())
    if got is None:
        return
    admin, st = got
    click.echo(f"database: {admin.where}")
    newer = False
    for component in sorted(set(st.known) | set(st.applied)):
        have, know = st.applied.get(component, 0), st.known.get(component, 0)
        note = " (upgrade pending)" if have < know else ""
        if have > know:
            note, newer = " (newer than this isolde knows: upgrade isolde)", True
        click.echo(f"{component}: version {have} of {know}{note}")
    for line in st.pending:
        click.echo(f"pending: {line}")
    if newer:
        sys.exit(EXIT_FAILED)
    if not st.pending:
        click.echo("up to date")


@db.command("upgrade")
@_common
@_handled
def db_upgrade(data_dir: str | None, config_path: str | None) -> None:
    """Create or migrate the database's tables to this isolde's schema (safe to run on
    every worker: one migrates, the others find nothing to do)."""
    got = _with_admin(data_dir, config_path, lambda admin: admin.upgrade())
    if got is None:
        return
    admin, done = got
    for line in done:
        click.echo(f"applied: {line}")
    click.echo(f"{admin.where}: up to date" + ("" if done else " (nothing to do)"))
