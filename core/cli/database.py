"""``isolde db``: the schema of a database-backed store (``status``, ``upgrade``)."""

from __future__ import annotations

import sys

import click

from .common import EXIT_FAILED, _common, _engine, _handled

__all__ = ["db"]


@click.group()
def db() -> None:
    """The store's tables: which schema versions a PostgreSQL database holds, and upgrading it."""


@db.command("status")
@_common
@_handled
def db_status(data_dir: str | None, config_path: str | None) -> None:
    """Show the schema versions the database holds and the steps an upgrade would apply
    (exit 1 when the database is newer than this isolde)."""
    with _engine(data_dir, config_path) as engine:
        admin = engine.schema_admin()
        if admin is None:
            click.echo("the store keeps no versioned tables (LMDB): nothing to migrate", err=True)
            return
        try:
            st = admin.status()
        finally:
            admin.close()
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
    with _engine(data_dir, config_path) as engine:
        admin = engine.schema_admin()
        if admin is None:
            click.echo("the store keeps no versioned tables (LMDB): nothing to migrate", err=True)
            return
        try:
            done = admin.upgrade()
        finally:
            admin.close()
    for line in done:
        click.echo(f"applied: {line}")
    click.echo(f"{admin.where}: up to date" + ("" if done else " (nothing to do)"))
