"""The PostgreSQL variable store (plugins/postgres/) against the real server.

Each module run works in its own fresh schema (``isolde_t_<random>``), chosen
through the URL's ``options=-csearch_path=...``, and drops it afterwards.  The
server comes from $ISOLDE_TEST_PG (default: the local one CI starts)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import isolde
from isolde.conformance.store import StoreConformance
from isolde.errors import IsoldeError
from isolde.plugins.postgres import PostgresStore, redact
from isolde.store import Put, Ref, StoreError

BASE = os.environ.get("ISOLDE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    schema = f"isolde_t_{secrets.token_hex(6)}"
    with psycopg.connect(BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in BASE else "?"
        yield f"{BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _empty(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE isolde_variables, isolde_instances")


class TestPostgresStore(StoreConformance):
    large = (1 << 20) + 4099  # above the stream threshold: read in chunks

    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[PostgresStore]:
        s = PostgresStore(pg_url)
        _empty(pg_url)
        yield s
        s.close()


def test_two_stores_share_the_database_fast_turns_synchronous_commit_off(pg_url: str) -> None:
    a, b = PostgresStore(pg_url), PostgresStore(pg_url, durable=False)
    try:
        ref = Ref("two", "workflow", "wf", "k")
        a.write([Put(ref, b"1")])
        b.write([Put(ref, b"2")])
        va, vb = a.get(ref), b.get(Ref("two", "namespace", "", "k"))
        assert va is not None and va.data == b"2" and vb is None
        assert b.compare_and_set(Ref("two", "namespace", "", "n"), None, b"1") > va.version
        with b.connect() as conn:  # the session setting, as the docs promise
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        with a.connect() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        b.delete_namespace("two")
    finally:
        a.close()
        b.close()


def test_orphans_of_a_dead_process_are_swept(pg_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from isolde.plugins.postgres import PostgresStore; from isolde.store import Put, Ref\n"
        "s = PostgresStore(sys.argv[1])\n"
        "s.write([Put(Ref('orph', 'instance', 'dead1', 'k'), b'1')], register_instance=('orph', 'dead1'))\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, pg_url], check=True, timeout=60)
    store = PostgresStore(pg_url)
    try:
        live = Ref("orph", "instance", "live1", "k")
        store.write([Put(live, b"2")], register_instance=("orph", "live1"))
        assert store.get(Ref("orph", "instance", "dead1", "k")) is not None
        assert store.sweep_orphans() == 1
        assert store.get(Ref("orph", "instance", "dead1", "k")) is None
        assert store.get(live) is not None  # this process still runs
        store.end_instance("orph", "live1")
        assert store.get(live) is None and store.sweep_orphans() == 0
    finally:
        store.close()


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO isolde_schema_version VALUES (99)")
    try:
        with pytest.raises(StoreError, match="schema version 99 of .store., newer than this isolde understands"):
            PostgresStore(pg_url)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DELETE FROM isolde_schema_version WHERE version = 99")


def test_a_wrong_url_is_one_clear_line_without_the_password(data_dir: Path) -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:5432/no_such_database_isolde"
    with pytest.raises(IsoldeError) as ei:
        isolde.Engine(data_dir=data_dir, config={"store": {"url": url}}).store
    msg = str(ei.value)
    assert "\n" not in msg and "s3cret" not in msg and "no_such_database_isolde" in msg
    assert msg.startswith("[store] url postgresql://postgres:***@127.0.0.1:5432/no_such_database_isolde: cannot connect")
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"


def test_a_url_that_is_not_postgresql_is_a_config_error(data_dir: Path) -> None:
    with pytest.raises(IsoldeError, match="postgresql://"):
        isolde.Engine(data_dir=data_dir, config={"store": {"url": "mysql://x"}})


SCOPES = """
states:
- id: set
  type: setter
  variables:
  - {key: ns_var, scope: namespace, value: 'jq(.n)'}
  - {key: wf_var, scope: workflow, value: 'jq(.n + 1)'}
  - {key: inst_var, scope: instance, value: 'jq(.n + 2)'}
  transition: get
- id: get
  type: getter
  variables:
  - {key: ns_var, scope: namespace}
  - {key: wf_var, scope: workflow}
  - {key: inst_var, scope: instance}
"""


def test_engine_and_cli_on_postgres(pg_url: str, data_dir: Path, tmp_path: Path, cli: Any) -> None:
    PostgresStore(pg_url).close()  # the tables exist
    _empty(pg_url)
    config = {"store": {"url": pg_url}, "sidecar": {"port": 0}}
    with isolde.Engine(data_dir=data_dir, config=config) as engine:
        assert engine.run(EXAMPLES / "counter.yaml").output == {"var": {"x": 1}}
        assert engine.run(EXAMPLES / "counter.yaml").output == {"var": {"x": 2}}
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 2
        res = engine.run(SCOPES, input={"n": 10}, namespace="pgns")
        assert res.ok, res.error
        assert res.output["var"] == {"ns_var": 10, "wf_var": 11, "inst_var": 12}
        wf_id = engine.load(SCOPES).id
        assert engine.variables.value("ns_var", namespace="pgns") == 10
        assert engine.variables.value("wf_var", scope="workflow", workflow=wf_id, namespace="pgns") == 11
        assert engine.store.get(Ref("pgns", "instance", res.instance_id, "inst_var")) is None  # ended with it
    assert not (data_dir / "data.mdb").exists()
    toml = tmp_path / "pg.toml"
    toml.write_text(f"[store]\nurl = {json.dumps(pg_url)}\n")
    got = cli("vars", "get", "x", "--workflow", "counter", "--config", str(toml))
    assert (got.code, got.stdout) == (0, "2"), got.stderr
    got = cli("vars", "get", "x", "--workflow", "counter", "--store", pg_url)  # the same, without a config file
    assert (got.code, got.stdout) == (0, "2"), got.stderr
    got = cli("run", str(EXAMPLES / "counter.yaml"), "--store", pg_url)
    assert (got.code, got.json) == (0, {"var": {"x": 3}}), got.stderr
    bad = cli("vars", "get", "x", "--workflow", "counter", "--store", "mysql://x")
    assert bad.code == 2 and bad.stderr.count("\n") == 1 and "postgresql://" in bad.stderr, bad.stderr


@pytest.mark.parametrize("exists", [True, False], ids=["existing", "missing"])
def test_a_plain_write_never_comes_between_an_updates_read_and_write(pg_url: str, exists: bool) -> None:
    """Another process's write() of the same variable while update() runs is never
    lost: it waits for the update's commit (a row to lock), or, creating a missing
    variable first, makes the update read again and build on it."""
    import threading

    from helpers import wait_until

    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    _empty(pg_url)
    ref = Ref("race", "workflow", "wf", "n")
    if exists:
        a.write([Put(ref, b"0")])
    writer: list[threading.Thread] = []
    seen: list[bytes | None] = []

    def blocked() -> bool:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
        return bool(row and row[0])

    def fn(cur: Any) -> tuple[bytes, str]:
        seen.append(None if cur is None else cur.data)
        if not writer:  # the first call: another store writes now, while the update holds the variable
            writer.append(threading.Thread(target=b.write, args=([Put(ref, b"other")],)))
            writer[0].start()
            wait_until(lambda: not writer[0].is_alive() or blocked())
        return (b"updated", "application/json")

    try:
        a.update(ref, fn)
        writer[0].join(60)
        final = a.get(ref).data  # type: ignore[union-attr]
        assert final == b"other" if exists else (final, seen) == (b"updated", [None, b"other"])
    finally:
        a.close()
        b.close()
