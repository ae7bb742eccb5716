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

import importlib
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

from isolde.plugin import hookimpl

if TYPE_CHECKING:
    from isolde.plugin import Config, DaemonServices, InstanceHistory, SchemaAdmin, VariableLocks, VariableStore

    from .locks import LockLost, PostgresLocks
    from .schema import PostgresSchema, migration
    from .store import SCHEMA_VERSION, PostgresStore, redact

__all__ = [
    "LockLost", "PostgresLocks", "PostgresSchema", "PostgresStore", "SCHEMA_VERSION",
    "isolde_daemon_services", "isolde_instance_history", "isolde_locks", "isolde_schema_admin", "isolde_store", "migration", "redact",
]

# The modules are imported on first use (a name below, or a hook with a URL): without
# ``[store] url`` a start does not pay for them.  ``schema.steps()`` imports every module
# that registers migration steps before it answers.
_HOMES = {"LockLost": "locks", "PostgresLocks": "locks", "PostgresSchema": "schema", "migration": "schema",
          "SCHEMA_VERSION": "store", "PostgresStore": "store", "redact": "store"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def _is_postgres(store: object) -> TypeGuard[PostgresStore]:
    """Whether ``store`` is a PostgresStore (never one while its module is not imported)."""
    module = sys.modules.get(f"{__name__}.store")
    return module is not None and isinstance(store, module.PostgresStore)


def _url(config: Config) -> str | None:
    url = config.data.get("store", {}).get("url")
    return str(url) if url else None


@hookimpl
def isolde_store(config: Config, data_dir: str) -> VariableStore | None:
    """A PostgresStore when ``[store] url`` is set; otherwise None (the next store answers)."""
    url = _url(config)
    if url is None:
        return None
    from .store import PostgresStore

    store = PostgresStore(url, durable=config.durable)
    store.sweep_orphans()
    return store


@hookimpl
def isolde_daemon_services(config: Config, store: VariableStore) -> DaemonServices | None:
    """With a PostgreSQL store, ``isolde serve`` is one worker of many (docs/scale-out.md)."""
    if not _is_postgres(store):
        return None
    from .services import PostgresDaemonServices

    return PostgresDaemonServices(store, config)


@hookimpl
def isolde_instance_history(config: Config, store: VariableStore) -> InstanceHistory | None:
    """The history in the store, which also reads the workers' records (``isolde_runs``)."""
    if not _is_postgres(store):
        return None
    from .history import PostgresHistory

    return PostgresHistory(store)


@hookimpl
def isolde_locks(config: Config, store: VariableStore, data_dir: str) -> VariableLocks | None:
    """Advisory locks on the store's database, when the store is PostgreSQL."""
    if _is_postgres(store):
        from .locks import PostgresLocks

        return PostgresLocks(store)
    return None


@hookimpl
def isolde_schema_admin(config: Config, data_dir: str) -> SchemaAdmin | None:
    """The database's migrations (``isolde db``), when ``[store] url`` is set."""
    url = _url(config)
    if url is None:
        return None
    from .schema import PostgresSchema

    return PostgresSchema(url)
