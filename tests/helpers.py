"""Small helpers shared by tests that run instances in threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; its return value (or exception) lands in the list."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test, which re-raises
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def wait_until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``cond`` until it holds.  ``timeout`` is a hang guard, not a bound the
    test measures: keep it far above what a loaded machine needs."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def install_plugin(site: Path, module: str, source: str, entry: str, version: str = "1.0") -> Path:
    """Lay out a plugin the way pip would: ``module.py`` plus a ``*.dist-info`` whose
    ``entry_points.txt`` names it in the ``isolde`` group; ``site`` goes on a path."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[isolde]\n{entry} = {module}\n")
    return site


def tree(root: Path) -> dict[str, bytes | None]:
    """Everything under ``root``: relative path -> bytes (None for a directory)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in files:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return out


PG_BASE = os.environ.get("ISOLDE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def pg_schema_url(tag: str) -> tuple[str, str, Callable[[], None]]:
    """A fresh schema ``isolde_t_<random>`` on the test server: (a URL whose search_path
    is that schema and whose application_name is that name plus ``_<tag>``, so a test
    can terminate exactly its own sessions; that application name; a function dropping
    the schema)."""
    import secrets

    import psycopg

    name = f"isolde_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")  # type: ignore[arg-type]  # a generated name

    def drop() -> None:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")  # type: ignore[arg-type]

    sep = "&" if "?" in PG_BASE else "?"
    app = f"{name}_{tag}"
    return f"{PG_BASE}{sep}options=-csearch_path%3D{name}&application_name={app}", app, drop


def pg_terminate(app: str) -> int:
    """Terminate the server sessions whose application_name is ``app``; how many."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                            "AND pid <> pg_backend_pid()", (app,)).fetchall()
    return len(rows)


def pg_sessions(app: str, waiting: bool = False) -> int:
    """How many server sessions named ``app`` exist (``waiting``: are waiting for a lock)."""
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                           + (" AND wait_event_type = 'Lock'" if waiting else ""), (app,)).fetchone()
    return int(row[0]) if row else 0
