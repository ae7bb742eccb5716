"""PostgreSQL under bad conditions, against the real server: a connection lost during a
commit (a TCP proxy in the test cuts it exactly there), sessions terminated in the
middle of runs, a fenced commit, one transaction per state with the daemon's record,
bad URLs, and ``isolde db``.  The shared server is never restarted: isolde's own
sessions are ended with ``pg_terminate_backend`` (found by their application_name)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from helpers import PG_BASE, pg_schema_url, pg_sessions, pg_terminate, wait_until

import isolde
from isolde.errors import IsoldeError
from isolde.plugins.postgres import PostgresStore
from isolde.store import Put, Ref, StoreError


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[str, str]]:
    url, app, drop = pg_schema_url("fail")
    try:
        yield url, app
    finally:
        drop()


class Proxy:
    """A TCP proxy to the server that can cut a connection at its next COMMIT: before
    forwarding it ("before": the server rolls back) or right after the server answered
    it ("after": committed, but the client never hears so).  ``refuse`` closes every
    new connection at once (a server that does not come back)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode: str | None = None
        self.refuse = False
        self.cuts = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, server]
            swallow = threading.Event()
            threading.Thread(target=self._up, args=(client, server, swallow), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, swallow), daemon=True).start()

    def _cut(self, *socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _up(self, client: socket.socket, server: socket.socket, swallow: threading.Event) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                self._cut(server)
                return
            with self._lock:
                mode = self.mode if b"COMMIT\x00" in data else None
                if mode is not None:
                    self.mode = None
                    self.cuts += 1
            if mode == "before":
                self._cut(client, server)
                return
            if mode == "after":
                swallow.set()  # the answer to this COMMIT is dropped, then both ends cut
            try:
                server.sendall(data)
            except OSError:
                return

    def _down(self, server: socket.socket, client: socket.socket, swallow: threading.Event) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                return
            if not data or swallow.is_set():
                self._cut(client, server)
                return
            try:
                client.sendall(data)
            except OSError:
                return

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        return url.replace(parts.netloc, f"{netloc[0]}@127.0.0.1:{self.port}") + "&sslmode=disable"

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        self._cut(*socks)


@pytest.fixture
def proxy(pg: tuple[str, str]) -> Iterator[Proxy]:
    parts = urlsplit(pg[0])
    p = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield p
    p.close()


def _seq(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT last_value FROM isolde_version_seq").fetchone()
    assert row is not None
    return int(row[0])


def test_a_commit_cut_after_the_server_applied_it_is_not_repeated(pg: tuple[str, str], proxy: Proxy) -> None:
    store = PostgresStore(proxy.url(pg[0]))
    try:
        ref = Ref("cut", "workflow", "wf", "after")
        store.write([Put(ref, b"0")])
        before = _seq(pg[0])
        proxy.mode = "after"
        store.write([Put(ref, b"1"), Put(Ref("cut", "namespace", "", "also"), b"2")])
        assert proxy.cuts == 1
        var = store.get(ref)
        # applied exactly once: the two puts took the next two versions, nothing more
        assert var is not None and var.data == b"1" and _seq(pg[0]) == before + 2
    finally:
        store.close()


def test_a_commit_cut_before_the_server_got_it_is_run_again(pg: tuple[str, str], proxy: Proxy) -> None:
    store = PostgresStore(proxy.url(pg[0]))
    try:
        ref = Ref("cut", "workflow", "wf", "before")
        store.write([Put(ref, b"0")])
        before = _seq(pg[0])
        proxy.mode = "before"
        store.write([Put(ref, b"1")])
        assert proxy.cuts == 1
        var = store.get(ref)
        # rolled back (its version number spent), then applied by the second attempt
        assert var is not None and var.data == b"1" and var.version == before + 2
    finally:
        store.close()


def test_a_commit_whose_outcome_cannot_be_known_fails_clearly(pg: tuple[str, str], proxy: Proxy) -> None:
    store = PostgresStore(proxy.url(pg[0]), reconnect_timeout=0.5)
    try:
        proxy.mode = "after"
        proxy.refuse = True  # and the server does not come back
        with pytest.raises(StoreError) as ei:
            store.write([Put(Ref("cut", "workflow", "wf", "unknown"), b"1")])
        msg = str(ei.value)
        assert "broke during a commit" in msg and "not back within 0.5 s" in msg and "\n" not in msg
    finally:
        store.close()


def test_runs_survive_their_sessions_being_terminated(pg: tuple[str, str], data_dir: Path) -> None:
    """Every session of the engine (store and locks) is terminated again and again while
    locked counter runs go on.  A run whose store session went completes (the commit is
    retried or found applied); a run whose lock session went between its getter and its
    setter fails saying so, having written nothing; the count is exactly the completed runs."""
    url, app = pg
    wf = (Path(__file__).parent / "test_postgres_locks.py").read_text().split('LOCKED_COUNTER = """')[1].split('"""')[0]
    runs = 60
    results: list[Any] = []
    with isolde.Engine(data_dir=data_dir, config={"store": {"url": url}}) as engine:
        loaded = engine.load(wf)

        def work() -> None:
            for _ in range(runs):
                results.append(engine.run(loaded, namespace="term"))

        t = threading.Thread(target=work)
        t.start()
        kills = 0
        while t.is_alive():
            kills += pg_terminate(app)
            wait_until(lambda: not t.is_alive() or pg_sessions(app) > 0)
        t.join()
        assert kills > 0 and len(results) == runs
        failed = [r.error for r in results if not r.ok]
        assert all(e is not None and e.code == "isolde.lock.lost" and "variable lock of this instance was lost"
                   in e.message for e in failed), failed
        done = runs - len(failed)
        assert done > 0 and engine.variables.value("n", namespace="term") == done
    print(f"{kills} sessions terminated during {runs} runs: {done} completed, {len(failed)} failed (lock lost)")


@dataclass(frozen=True)
class ClaimCheck(Put):
    """A put that checks a claim inside the commit, as the daemon's records do."""

    epoch: int = 1

    def in_transaction(self, cur: Any) -> None:
        cur.execute("UPDATE fence_claims SET seen = seen + 1 WHERE id = %s AND epoch = %s RETURNING 1",
                    (self.ref.key, self.epoch))
        if cur.fetchone() is None:
            raise StoreError("claim lost")


def test_a_commit_checked_by_a_statement_applies_nothing_when_it_fails(pg: tuple[str, str]) -> None:
    """The fencing seam: a put with ``in_transaction`` runs in the batch's transaction; its
    failure rolls the batch back, the variables included."""
    store = PostgresStore(pg[0])
    try:
        with psycopg.connect(pg[0], autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS fence_claims (id text PRIMARY KEY, epoch int, seen int)")
            conn.execute("INSERT INTO fence_claims VALUES ('i1', 1, 0) ON CONFLICT (id) DO UPDATE SET epoch = 1")
        a, b = Ref("fence", "instance", "i1", "a"), Ref("fence", "namespace", "", "b")
        claim = ClaimCheck(Ref("fence", "instance", "~claims", "i1"), b"")
        store.write([Put(a, b"1"), claim], register_instance=("fence", "i1"))
        assert store.get(a) is not None and store.get(claim.ref) is None  # the check is no variable
        with psycopg.connect(pg[0], autocommit=True) as conn:  # another worker takes the claim over
            conn.execute("UPDATE fence_claims SET epoch = 2 WHERE id = 'i1'")
        with pytest.raises(StoreError, match="claim lost"):
            store.write([Put(a, b"2"), Put(b, b"2"), claim])
        got = store.get(a)
        assert got is not None and got.data == b"1" and store.get(b) is None
        store.write([Put(b, b"4"), ClaimCheck(claim.ref, b"", epoch=2)])
        with psycopg.connect(pg[0], autocommit=True) as conn:
            assert conn.execute("SELECT seen FROM fence_claims").fetchone() == (2,)
    finally:
        store.close()


WAITS = """
states:
- id: set
  type: setter
  variables:
  - {key: x, scope: namespace, value: 1}
  transition: wait
- id: wait
  type: consumeEvent
  event:
    type: never
"""


def test_a_state_and_the_daemon_record_of_the_next_commit_together(pg: tuple[str, str], data_dir: Path,
                                                                     tmp_path: Path) -> None:
    """The setter's variable and the instance record pointing at the next state (a row of
    the workers' shared ``isolde_runs``) are rows written by one transaction (the same xmin)."""
    from isolde.daemon.service import Daemon
    from isolde.daemon.settings import DaemonSettings

    root = tmp_path / "served"
    (root / "txns").mkdir(parents=True)
    (root / "txns" / "waits.yaml").write_text(WAITS)
    engine = isolde.Engine(data_dir=data_dir, config={"store": {"url": pg[0]}})
    daemon = Daemon(root, engine, DaemonSettings(status_interval=0, stop_grace=0), logger=logging.getLogger("test.pg"))
    try:
        daemon.start(api=False)
        iid = daemon.start_and_view("txns", "waits", None, wait=False, timeout=None)["id"]
        store = engine.store
        wait_until(lambda: store.get(Ref("txns", "namespace", "", "x")) is not None)  # the state committed
        with psycopg.connect(pg[0], autocommit=True) as conn:
            rows = conn.execute(
                "SELECT key, xmin::text FROM isolde_variables WHERE namespace = 'txns' AND scope = 'namespace' "
                "AND key = 'x' UNION ALL SELECT id, xmin::text FROM isolde_runs WHERE namespace = 'txns' AND id = %s",
                (iid,),
            ).fetchall()
        assert len(rows) == 2 and rows[0][1] == rows[1][1], rows
        assert daemon.instance("txns", iid)["state"] == "wait"
    finally:
        daemon.stop()


def test_sessions_are_named_isolde(pg: tuple[str, str]) -> None:
    url = pg[0].split("&application_name=")[0]
    store = PostgresStore(url)
    try:
        with store.connect() as conn:
            assert conn.execute("SHOW application_name").fetchone() == ("isolde",)
    finally:
        store.close()


def test_refused_auth_is_one_line_and_exit_2(cli: Any, data_dir: Path) -> None:
    url = "postgresql://no_such_role_isolde:hunter2@127.0.0.1:5432/test"
    with pytest.raises(IsoldeError) as ei:
        isolde.Engine(data_dir=data_dir, config={"store": {"url": url}}).store
    assert "hunter2" not in str(ei.value) and "\n" not in str(ei.value) and "no_such_role_isolde" in str(ei.value)
    got = cli("db", "status", "--store", url)
    assert got.code == 2 and got.stderr.count("\n") == 1 and "hunter2" not in got.stderr, got.stderr
    assert "cannot connect to PostgreSQL" in got.stderr


def test_a_database_at_coordination_version_2_is_upgraded_to_list_and_prune_cancelled(cli: Any) -> None:
    """Coordination step 3 (cancelled instances are finished): a database whose
    ``isolde_runs_done`` index was made by version 2 (complete and failed only) gets the
    index over cancelled rows too from ``isolde db upgrade``, and its status says so."""
    url, _, drop = pg_schema_url("db3")
    try:
        assert cli("db", "upgrade", "--store", url).code == 0
        with psycopg.connect(url, autocommit=True) as conn:  # back to the layout of version 2
            conn.execute("DROP INDEX isolde_runs_done")
            conn.execute("CREATE INDEX isolde_runs_done ON isolde_runs (namespace, ended DESC, id DESC) "
                         "WHERE status IN ('complete', 'failed')")
            conn.execute("DELETE FROM isolde_schema_version WHERE component = 'coordination' AND version = 3")
        got = cli("db", "status", "--store", url)
        assert "coordination: version 2 of 3 (upgrade pending)" in got.stdout, got.stdout
        assert "pending: coordination 3: cancelled instances are finished" in got.stdout, got.stdout
        got = cli("db", "upgrade", "--store", url)
        assert got.code == 0 and "applied: coordination 3: cancelled instances are finished" in got.stdout, got.stdout
        assert "applied: store" not in got.stdout and "applied: coordination 2" not in got.stdout, got.stdout
        with psycopg.connect(url, autocommit=True) as conn:
            (index,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'isolde_runs_done' "
                                    "AND schemaname = current_schema()").fetchone() or ("",)
        assert "'cancelled'" in index and "'complete'" in index and "'failed'" in index, index
        assert "coordination: version 3 of 3\n" in cli("db", "status", "--store", url).stdout
    finally:
        drop()


def test_hook_isolde_schema_admin(cli: Any, tmp_path: Path) -> None:
    url, _, drop = pg_schema_url("db")
    try:
        got = cli("db", "status", "--store", url)
        assert got.code == 0 and "store: version 0 of 1 (upgrade pending)" in got.stdout, got.stdout + got.stderr
        assert "pending: store 1: variables" in got.stdout
        for component, version in (("coordination", 3), ("cron", 1), ("events", 2)):  # the workers' tables
            assert f"{component}: version 0 of {version} (upgrade pending)" in got.stdout, got.stdout
            assert f"pending: {component} {version}: " in got.stdout, got.stdout
        got = cli("db", "upgrade", "--store", url)
        assert got.code == 0 and "applied: store 1:" in got.stdout, got.stdout + got.stderr
        assert "applied: coordination 1: workers with leases" in got.stdout, got.stdout
        got = cli("db", "upgrade", "--store", url)
        assert got.code == 0 and "(nothing to do)" in got.stdout
        got = cli("db", "status", "--store", url)
        assert got.code == 0 and "store: version 1 of 1\n" in got.stdout and "up to date" in got.stdout
        assert "coordination: version 3 of 3\n" in got.stdout, got.stdout
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT component, version, description FROM isolde_schema_version").fetchall()
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        assert sorted(r[:2] for r in rows) == [("coordination", 1), ("coordination", 2), ("coordination", 3), ("cron", 1), ("events", 1), ("events", 2),
                                         ("store", 1)]
        assert {"isolde_workers", "isolde_runs", "isolde_cron_ticks", "isolde_events", "isolde_gatherings"} <= tables
    finally:
        drop()
    got = cli("db", "status")  # LMDB: nothing to migrate
    assert got.code == 0 and "nothing to migrate" in got.stderr


def test_the_first_layout_of_the_version_table_is_migrated(cli: Any) -> None:
    """A database made by the first PostgreSQL store (a version table of one column) is
    read as store version 1 and its table gains the new columns."""
    url, _, drop = pg_schema_url("old")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE isolde_schema_version (version integer NOT NULL)")
            conn.execute("INSERT INTO isolde_schema_version VALUES (1)")
        got = cli("db", "status", "--store", url)
        assert got.code == 0 and "store: version 1 of 1" in got.stdout, got.stdout + got.stderr
        PostgresStore(url).close()
    finally:
        drop()


def test_fast_durability_from_the_config(pg: tuple[str, str], data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"store": {"url": pg[0], "durability": "fast"}}) as engine:
        store = engine.store
        assert isinstance(store, PostgresStore)
        with store.connect() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        engine.variables.set("k", 1, namespace="fast")
        assert json.loads(engine.variables.get("k", namespace="fast").data) == 1  # type: ignore[union-attr]


def test_workers_starting_at_once_migrate_once() -> None:
    """Several stores opening a fresh database at the same moment: one applies the steps
    under the advisory lock, the others find them applied."""
    url, _, drop = pg_schema_url("race")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            PostgresStore(url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=open_store) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
        with psycopg.connect(url, autocommit=True) as conn:
            assert sorted(conn.execute("SELECT component, version FROM isolde_schema_version").fetchall()) == \
                [("coordination", 1), ("coordination", 2), ("coordination", 3), ("cron", 1), ("events", 1), ("events", 2),
                                         ("store", 1)]
    finally:
        drop()


def test_a_module_registers_its_own_migration_steps(cli: Any) -> None:
    """A module of the plugin (here: code in another process) registers a component's
    steps; a store opening applies them after the store's own.  An isolde that does not
    know that component (this process) refuses the database as newer than itself."""
    import subprocess
    import sys

    url, _, drop = pg_schema_url("steps")
    code = (
        "import sys\n"
        "from isolde.plugins.postgres import PostgresStore, migration\n"
        "migration('extra', 1, 'a table of its own', 'CREATE TABLE isolde_extra (x int)')\n"
        "migration('extra', 2, 'a column more', lambda conn: conn.execute('ALTER TABLE isolde_extra ADD y int'))\n"
        "try:\n"
        "    migration('extra', 4, 'a gap', '')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "PostgresStore(sys.argv[1]).close()\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code, url], check=True, capture_output=True, text=True, timeout=60)
        assert "expected version 3" in out.stdout
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute("SELECT component, version FROM isolde_schema_version").fetchall()
            conn.execute("SELECT x, y FROM isolde_extra")
        assert sorted(rows) == [("coordination", 1), ("coordination", 2), ("coordination", 3), ("cron", 1), ("events", 1), ("events", 2),
                                ("extra", 1), ("extra", 2), ("store", 1)]
        got = cli("db", "status", "--store", url)
        assert got.code == 1 and "extra: version 2 of 0 (newer than this isolde knows" in got.stdout, got.stdout
        got = cli("db", "upgrade", "--store", url)
        assert got.code == 2 and "version 2 of 'extra', newer than this isolde understands (0)" in got.stderr, got.stderr
    finally:
        drop()
