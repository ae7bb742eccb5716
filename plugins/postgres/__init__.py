"""The PostgreSQL variable store: ``[store] url = "postgresql://..."``.

Answers the ``isolde_store`` hook with a ``PostgresStore`` when the store table
names a PostgreSQL URL, and None otherwise (LMDB stays the default, and psycopg
is then never imported).  The store implements ``VariableStore`` with the same
semantics as LMDB: exact scopes, a version sequence unique across the database,
one transaction per batch, instance registrations swept when their process died
on this host.  isolde creates and versions its own tables
(``isolde_schema_version``) in the first schema of the connection's search_path.

With a PostgreSQL store, ``isolde serve`` is one worker of many on the database
(``isolde_daemon_services``: ``claims``, ``records``, ``cron``, ``events``, ``services``;
docs/scale-out.md).

Durable by default (``synchronous_commit`` on); ``[store] durability = "fast"``
turns it off for isolde's sessions: a crash of the database server may lose the
last commits, never corrupt them.
"""

from __future__ import annotations

from isolde.plugin import Config, DaemonServices, VariableStore, hookimpl

from .store import SCHEMA_VERSION, PostgresStore, redact

__all__ = ["PostgresStore", "SCHEMA_VERSION", "isolde_daemon_services", "isolde_store", "redact"]


@hookimpl
def isolde_store(config: Config, data_dir: str) -> VariableStore | None:
    """A PostgresStore when ``[store] url`` is set; otherwise None (the next store answers)."""
    table = config.data.get("store", {})
    url = table.get("url")
    if not url:
        return None
    store = PostgresStore(url, durable=config.durable)
    store.sweep_orphans()
    return store


@hookimpl
def isolde_daemon_services(config: Config, store: VariableStore) -> DaemonServices | None:
    """With a PostgreSQL store, ``isolde serve`` is one worker of many (docs/scale-out.md)."""
    if not isinstance(store, PostgresStore):
        return None
    from .services import PostgresDaemonServices

    return PostgresDaemonServices(store, config)
