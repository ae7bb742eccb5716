"""isolde's tables in PostgreSQL, created and migrated by isolde itself.

Every table isolde keeps is made by a **migration step**: a component name
(``store`` for the variables, ``coordination`` for the daemon's claims, ...), a
version (1, 2, ... within the component), a one-line description and either SQL
text or a function that gets the connection.  A module of this plugin registers
its steps when it is imported::

    from .schema import migration

    migration("coordination", 1, "claims with leases and epochs", '''
        CREATE TABLE isolde_claims (...);
    ''')

(``steps()`` imports every module of the package that keeps tables, so every step
is known before the first store opens, although the package imports them only on
first use).  Steps of one component apply in version order;
components apply in the order their first step was registered.

``upgrade(conn)`` applies the missing steps in one transaction, holding the
advisory lock ``SETUP_LOCK`` (several workers starting at once: one migrates,
the others wait and find nothing left to do), and records each applied step as a
row ``(component, version, description, applied_at)`` of
``isolde_schema_version``.  A database holding a version newer than this isolde
knows is refused (an older isolde must not write to a newer schema).  The tables
live in the first schema of the connection's search_path.

``PostgresStore`` runs ``upgrade`` when it opens; ``isolde db upgrade`` and
``isolde db status`` (through the ``isolde_schema_admin`` hook) do it, or only
report, without opening a store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from isolde.plugin import SchemaStatus, StoreError

from .connection import connect, pg_errors, redact

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresSchema", "SETUP_LOCK", "Step", "migration", "pending", "status", "steps", "upgrade"]

SETUP_LOCK = 0x15_01DE  # advisory lock id guarding schema changes

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS isolde_schema_version (version integer NOT NULL);
ALTER TABLE isolde_schema_version ADD COLUMN IF NOT EXISTS component text NOT NULL DEFAULT 'store';
ALTER TABLE isolde_schema_version ADD COLUMN IF NOT EXISTS description text NOT NULL DEFAULT '';
ALTER TABLE isolde_schema_version ADD COLUMN IF NOT EXISTS applied_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS isolde_schema_version_key ON isolde_schema_version (component, version);
"""
# (The first layout had only ``version``: its row is the store's version 1.)


@dataclass(frozen=True)
class Step:
    """One migration step."""

    component: str
    version: int
    description: str
    apply: str | Callable[[psycopg.Connection[Any]], None]


_STEPS: list[Step] = []


def migration(component: str, version: int, description: str,
              apply: str | Callable[[psycopg.Connection[Any]], None]) -> Step:
    """Register a step (at import of the module that owns the tables).  Versions of a
    component start at 1 and follow each other; registering one twice is an error."""
    mine = [s.version for s in _STEPS if s.component == component]
    if version != (max(mine) + 1 if mine else 1):
        raise ValueError(f"migration {component} {version}: expected version {max(mine, default=0) + 1}")
    step = Step(component, version, description, apply)
    _STEPS.append(step)
    return step


def _load_steps() -> None:
    """Import the package's modules that register steps (the package imports them on
    first use, not at start); the order of their imports is the order of components."""
    from . import claims, cron, events  # noqa: F401


def steps() -> list[Step]:
    """Every registered step, in the order they apply."""
    _load_steps()
    order = list(dict.fromkeys(s.component for s in _STEPS))
    return sorted(_STEPS, key=lambda s: (order.index(s.component), s.version))


def _applied(conn: psycopg.Connection[Any]) -> dict[str, int] | None:
    """Component -> newest applied version; None when the version table does not exist yet."""
    row = conn.execute("SELECT to_regclass('isolde_schema_version')").fetchone()
    if row is None or row[0] is None:
        return None
    cols = {r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'isolde_schema_version'::regclass AND attnum > 0"
    ).fetchall()}
    if "component" not in cols:
        got = conn.execute("SELECT max(version) FROM isolde_schema_version").fetchone()
        return {} if got is None or got[0] is None else {"store": int(got[0])}
    rows = conn.execute("SELECT component, max(version) FROM isolde_schema_version GROUP BY component").fetchall()
    return {c: int(v) for c, v in rows}


def _check_not_newer(applied: dict[str, int], where: str) -> None:
    known: dict[str, int] = {}
    for s in steps():
        known[s.component] = max(known.get(s.component, 0), s.version)
    for component, version in sorted(applied.items()):
        if version > known.get(component, 0):
            raise StoreError(
                f"{where}: the database holds isolde schema version {version} of '{component}', "
                f"newer than this isolde understands ({known.get(component, 0)}): upgrade isolde"
            )


def pending(applied: dict[str, int] | None) -> list[Step]:
    have = applied or {}
    return [s for s in steps() if s.version > have.get(s.component, 0)]


def status(conn: psycopg.Connection[Any]) -> SchemaStatus:
    """What the database holds and what is missing (reads only)."""
    applied = _applied(conn) or {}
    known: dict[str, int] = {}
    for s in steps():
        known[s.component] = s.version
    return SchemaStatus(
        applied=dict(sorted(applied.items())),
        known=known,
        pending=[f"{s.component} {s.version}: {s.description}" for s in pending(applied)],
    )


def upgrade(conn: psycopg.Connection[Any], where: str) -> list[Step]:
    """Apply every missing step in one transaction under the setup lock; returns
    those applied (none when the database was up to date).  ``conn`` is in
    autocommit mode; ``where`` names the database in messages (no password)."""
    applied = _applied(conn)
    if applied is not None:
        _check_not_newer(applied, where)
        if not pending(applied):  # the usual start: nothing to lock
            return []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
        conn.execute(_VERSION_TABLE)
        applied = _applied(conn) or {}
        _check_not_newer(applied, where)
        todo = pending(applied)
        for s in todo:
            if isinstance(s.apply, str):
                conn.execute(s.apply)
            else:
                s.apply(conn)
            conn.execute(
                "INSERT INTO isolde_schema_version (component, version, description) VALUES (%s, %s, %s)",
                (s.component, s.version, s.description),
            )
    return todo


migration("store", 1, "variables, the version sequence, instance registrations", """
CREATE SEQUENCE IF NOT EXISTS isolde_version_seq;
CREATE TABLE IF NOT EXISTS isolde_variables (
    namespace text NOT NULL, scope text NOT NULL, owner text NOT NULL, key text NOT NULL,
    mime text NOT NULL, data bytea NOT NULL, size bigint NOT NULL,
    created double precision NOT NULL, updated double precision NOT NULL, version bigint NOT NULL,
    PRIMARY KEY (namespace, scope, owner, key));
CREATE TABLE IF NOT EXISTS isolde_instances (
    namespace text NOT NULL, instance text NOT NULL, host text NOT NULL, registration bytea NOT NULL,
    PRIMARY KEY (namespace, instance));
""")


class PostgresSchema:
    """``SchemaAdmin`` of one database (``isolde db status`` / ``isolde db upgrade``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = connect(self.url)
        return self._conn

    def status(self) -> SchemaStatus:
        conn = self._connection()
        with pg_errors(self.where):
            return status(conn)

    def upgrade(self) -> list[str]:
        conn = self._connection()
        with pg_errors(self.where):
            done = upgrade(conn, f"[store] url {self.where}")
        return [f"{s.component} {s.version}: {s.description}" for s in done]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
