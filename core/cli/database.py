"""``isolde db``: the schema of a database-backed store (``status``, ``upgrade``)."""

from __future__ import annotations

import click

from .common import _common, _engine, _handled

__all__ = ["db"]


@click.group()
def db() -> None:
    """The store's tables: which schema versions a PostgreSQL database holds, and upgrading it."""


@db.command("status")
@_common
@_handled
def db_status(data_dir: str | None, config_path: str | None) -> None:
    """Show the schema versions the database holds and the steps an upgrade would apply."""
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
    for component in sorted(set(st.known) | set(st.applied)):
        have, know = st.applied.get(component, 0), st.known.get(component, 0)
        click.echo(f"{component}: version {have} of {know}" + ("" if have >= know else " (upgrade pending)"))
    for line in st.pending:
        click.echo(f"pending: {line}")
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
