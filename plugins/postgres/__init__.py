"""The PostgreSQL plugin: variables, locks and isolde's tables on one database.

``[store] url = "postgresql://..."`` (or ``--store URL``) selects it:

* ``isolde_store`` answers with a ``PostgresStore`` (``store.py``): the same
  semantics as LMDB, one transaction per batch, reconnecting when the database
  goes away, statements of the daemon's claims checked inside a state's commit;
* ``isolde_locks`` answers, for that store, with ``PostgresLocks`` (``locks.py``):
  ``lock: true`` exact across every process and host on the database;
* ``isolde_daemon_services`` answers, for that store, with the coordination of many
  ``isolde serve`` workers (``claims``, ``records``, ``cron``, ``events``, ``services``;
  docs/scale-out.md);
* ``isolde_instance_history`` answers, for that store, with ``PostgresHistory``
  (``history.py``): the history in the store, plus the workers' instance records, so
  ``isolde instances`` and every worker's API see every worker's instances;
* ``isolde_schema_admin`` answers with ``PostgresSchema``: ``isolde db status`` and
  ``isolde db upgrade`` over the versioned migrations of ``schema.py``, which every
  module of this package that keeps tables registers its steps with.

Without a URL every hook answers None (LMDB stays the default, and psycopg is
then never imported).  Durable by default (``synchronous_commit`` on);
``[store] durability = "fast"`` turns it off for isolde's sessions: a crash of
the database server may lose the last commits, never corrupt them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from isolde.plugin import Config, DaemonServices, SchemaAdmin, VariableLocks, VariableStore, hookimpl

from . import claims, cron, events  # noqa: F401  (their migration steps, before any store opens)
from .locks import LockLost, PostgresLocks
from .schema import PostgresSchema, migration
from .store import SCHEMA_VERSION, PostgresStore, redact

if TYPE_CHECKING:
    from isolde.plugin import InstanceHistory

__all__ = [
    "LockLost", "PostgresLocks", "PostgresSchema", "PostgresStore", "SCHEMA_VERSION",
    "isolde_daemon_services", "isolde_instance_history", "isolde_locks", "isolde_schema_admin", "isolde_store", "migration", "redact",
]


def _url(config: Config) -> str | None:
    url = config.data.get("store", {}).get("url")
    return str(url) if url else None


@hookimpl
def isolde_store(config: Config, data_dir: str) -> VariableStore | None:
    """A PostgresStore when ``[store] url`` is set; otherwise None (the next store answers)."""
    url = _url(config)
    if url is None:
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


@hookimpl
def isolde_instance_history(config: Config, store: VariableStore) -> InstanceHistory | None:
    """The history in the store, which also reads the workers' records (``isolde_runs``)."""
    if not isinstance(store, PostgresStore):
        return None
    from .history import PostgresHistory

    return PostgresHistory(store)


@hookimpl
def isolde_locks(config: Config, store: VariableStore, data_dir: str) -> VariableLocks | None:
    """Advisory locks on the store's database, when the store is PostgreSQL."""
    if isinstance(store, PostgresStore):
        return PostgresLocks(store)
    return None


@hookimpl
def isolde_schema_admin(config: Config, data_dir: str) -> SchemaAdmin | None:
    """The database's migrations (``isolde db``), when ``[store] url`` is set."""
    url = _url(config)
    return None if url is None else PostgresSchema(url)
