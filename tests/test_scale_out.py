"""Many ``isolde serve`` workers on one PostgreSQL behave as one daemon (issue 10).

Real worker processes (``python -m isolde.cli serve``, API on 127.0.0.1 port 0, sidecar
on port 0) share the real server; this module works in its own schema
(``options=-csearch_path=...``) and drops it at the end.  Leases are short here
(``[plugins.postgres] lease``), so a claim after a crash takes about two seconds.
Everything waits by polling the API, the logs or the tables, never by sleeping."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from isolde.conformance.events import EventBusConformance
from isolde.conformance.records import InstanceRecordsConformance
from isolde.events import EventBus, EventFilter
from isolde.plugins.postgres import PostgresStore
from isolde.plugins.postgres.claims import Connections, Worker, create_tables
from isolde.plugins.postgres.records import PostgresInstanceRecords
from pgcluster import PrivateServer, private_server

BASE = os.environ.get("ISOLDE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
TIMEOUT = 60.0  # a hang guard only: far above what a loaded machine needs
LEASE = 3.0  # heartbeats every second: a busy machine must not stall one past the lease
PROBE = Path(__file__).resolve().parent / "isolates" / "probe.py"


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
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'isolde_%%' "
            "AND tablename <> 'isolde_schema_version'").fetchall()]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)}")


def _sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def _until(fn: Any, what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached in time: {what} (last: {value!r})"
        time.sleep(0.02)


class Served:
    """One worker process and its stderr, line by line."""

    def __init__(self, root: Path, data_dir: Path, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isolde.cli", "serve", str(root), "--data-dir", str(data_dir), "--config", str(config),
             "--api", "127.0.0.1:0", "-v"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            line = self.wait_log("daemon ready")
        except BaseException:
            self.stop()  # a worker that did not start: its process and pipe go now
            raise
        self.url = next(p[4:] for p in line.split() if p.startswith("api="))
        self.worker = next(p[7:] for p in self.text().split() if p.startswith("worker="))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_log(self, *parts: str) -> str:
        def found() -> str | None:
            with self._lock:
                return next((ln for ln in self.lines if all(p in ln for p in parts)), None)

        def seen() -> str | None:
            assert self.proc.poll() is None or found(), f"the worker exited ({self.proc.returncode}):\n{self.text()}"
            return found()

        line: str = _until(seen, f"log line with {parts}")
        return line

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, raw = self.request(method, path, data, {"Content-Type": "application/json"} if data else None)
        return status, json.loads(raw) if raw else None

    def start(self, wf: str, body: Any = None, *, wait: bool) -> dict[str, Any]:
        status, out = self.json("POST", f"/api/namespaces/ns1/workflows/{wf}/instances" + ("?wait=true" if wait else ""), body)
        assert status in (200, 202), (status, out)
        return dict(out)

    def instance(self, iid: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/api/namespaces/ns1/instances/{iid}")[1])

    def ended(self, iid: str) -> dict[str, Any]:
        return dict(_until(lambda: (lambda r: r if r.get("status") in ("complete", "failed") else None)(self.instance(iid)),
                           f"instance {iid} ended"))

    def var(self, key: str, wf: str | None = None) -> bytes | None:
        path = f"/api/namespaces/ns1/workflows/{wf}/variables/{key}" if wf else f"/api/namespaces/ns1/variables/{key}"
        status, body = self.request("GET", path)
        return body if status == 200 else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Cluster:
    def __init__(self, tmp: Path, url: str) -> None:
        self.root = tmp / "flows"
        (self.root / "ns1").mkdir(parents=True)
        self.tmp = tmp
        self.url = url
        self.config = tmp / "isolde.toml"
        self.config.write_text(
            f'[store]\nurl = "{url}"\n[plugins.postgres]\nlease = {LEASE}\nclaim_interval = 0.2\nevent_poll = 0.2\n'
            "[sidecar]\nport = 0\n")
        self.workers: list[Served] = []

    def flow(self, name: str, text: str) -> None:
        path = self.root / "ns1" / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text.lstrip("\n"))
        tmp.rename(path)

    def start(self, n: int, *, daemon: str = "") -> list[Served]:
        """``n`` more workers; ``daemon``: more of their ``[daemon]`` settings."""
        config = self.tmp / f"isolde-{len(self.workers)}.toml"
        config.write_text(self.config.read_text() + "[daemon]\nstop_grace = 0.5\n" + daemon)
        new = [Served(self.root, self.tmp / f"w{len(self.workers) + i}", config) for i in range(n)]
        self.workers += new
        return new

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def run_row(self, iid: str) -> tuple[Any, ...] | None:
        rows = _sql(self.url, "SELECT owner, epoch, status FROM isolde_runs WHERE id = %s", iid)
        return rows[0] if rows else None


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    _empty(pg_url)
    c = Cluster(tmp_path, pg_url)
    try:
        yield c
    finally:
        c.stop()


COUNTER = """
id: counter
states:
- id: a
  type: getter
  variables:
  - key: x
    scope: workflow
  transform: '.var.x += 1'
  transition: b
- id: b
  type: setter
  variables:
  - key: x
    scope: workflow
    value: '.var.x'
"""

CHAIN = """
states:
- id: before
  type: setter
  variables:
  - key: before
    scope: workflow
    value: jq(.n)
  - key: scratch
    scope: instance
    value: jq(.n)
  transition: sit
- id: sit
  log: sitting
  type: delay
  duration: PT3S
  transition: read
- id: read
  type: getter
  variables:
  - key: after
    scope: workflow
  - key: scratch
    scope: instance
  transition: after
- id: after
  type: setter
  variables:
  - key: after
    scope: workflow
    value: jq((.var.after // 0) + 1)
"""
SITTING = 'msg="\\"sitting\\""'


def test_the_api_works_on_every_worker(cluster: Cluster) -> None:
    cluster.flow("counter", COUNTER)
    ws = cluster.start(3)
    outs = [w.start("counter", wait=True) for w in ws + ws]
    assert [o["status"] for o in outs] == ["complete"] * 6
    assert [o["output"]["var"]["x"] for o in outs] == [1, 2, 3, 4, 5, 6]
    for w in ws:  # written through one worker, read through every other at once
        assert w.var("x", "counter") == b"6"
    status, _ = ws[0].request("PUT", "/api/namespaces/ns1/variables/greeting", b'"hi"', {"Content-Type": "application/json"})
    assert status == 201
    assert ws[1].var("greeting") == b'"hi"' and ws[2].var("greeting") == b'"hi"'
    assert ws[2].instance(outs[0]["id"])["status"] == "complete"  # an outcome recorded by another worker
    assert cluster.run_row(outs[0]["id"]) == (ws[0].worker, 1, "complete")


def test_kill9_mid_chain_another_worker_resumes_it_once(cluster: Cluster) -> None:
    cluster.flow("chain", CHAIN)
    a, b = cluster.start(2)
    iid = a.start("chain", {"n": 7}, wait=False)["id"]
    a.wait_log(SITTING, f"id={iid}")  # `before` and its record are committed; it sits in a delay
    listed = b.json("GET", "/api/namespaces/ns1/instances")[1]["instances"]  # running on a, listed by b
    assert [(r["id"], r["status"], r["state"]) for r in listed] == [(iid, "running", "sit")], listed
    a.kill9()
    done = b.ended(iid)
    assert done["status"] == "complete" and done["resumed"] is True, done
    assert done["output"]["var"]["scratch"] == 7  # its instance variable came along
    assert b.var("before", "chain") == b"7" and b.var("after", "chain") == b"1"
    assert cluster.run_row(iid) == (b.worker, 2, "complete")
    assert "resuming instance" in b.text()


def test_kill9_a_queued_instance_is_claimed_and_started_from_the_beginning(cluster: Cluster) -> None:
    cluster.flow("chain", CHAIN)
    (a,) = cluster.start(1, daemon="max_running = 1\n")
    (b,) = cluster.start(1)
    first = a.start("chain", {"n": 1}, wait=False)["id"]
    a.wait_log(SITTING, f"id={first}")
    queued = a.start("chain", {"n": 2}, wait=False)["id"]  # queued behind it, its record durable
    assert a.instance(queued)["status"] == "pending"
    a.kill9()
    done = [b.ended(first), b.ended(queued)]
    assert [d["status"] for d in done] == ["complete", "complete"], done
    assert done[1]["output"]["var"]["scratch"] == 2  # ran from its first state, on b
    assert done[0]["resumed"] and done[0]["output"]["var"]["scratch"] == 1
    assert cluster.run_row(first) == cluster.run_row(queued) == (b.worker, 2, "complete")


def test_kill9_during_an_action_another_worker_marks_it_interrupted(cluster: Cluster) -> None:
    record = cluster.tmp / "probe.jsonl"
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(PROBE)], "env": {"RECORD": str(record)}}
    cluster.flow("call", "functions:\n- " + json.dumps(fn) + "\n" + CHAIN.replace(
        "  type: delay\n  duration: PT3S\n", "  type: action\n  action:\n    function: probe\n    input: {op: hang, seconds: 30}\n"))
    a, b = cluster.start(2)
    iid = a.start("call", {"n": 3}, wait=False)["id"]
    _until(lambda: record.exists() and '"POST"' in record.read_text(), "the isolate was called")
    a.kill9()
    for pid in _isolate_pids(record):  # the killed worker could not stop its isolate
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    done = b.ended(iid)
    assert done["status"] == "failed" and done["error"]["code"] == "interrupted" and done["state"] == "sit", done
    assert "type action" in done["error"]["message"]
    assert b.var("before", "call") == b"3" and b.var("after", "call") is None
    assert cluster.run_row(iid) == (b.worker, 2, "failed")


def _isolate_pids(record: Path) -> list[int]:
    want = f"RECORD={record}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if want in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def test_a_worker_paused_past_its_lease_cannot_commit(cluster: Cluster) -> None:
    cluster.flow("chain", CHAIN)
    a, b = cluster.start(2)
    iid = a.start("chain", {"n": 4}, wait=False)["id"]
    a.wait_log(SITTING, f"id={iid}")
    a.proc.send_signal(signal.SIGSTOP)  # paused in the delay, claims and all
    try:
        b.wait_log("resuming instance", f"id={iid}")  # its lease ran out: b claimed it (epoch 2)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # Woken (typically while b still sits in its own delay), `a` goes on with its copy: its
    # next commit (the setter's) is refused by the fence, and it leaves the instance's
    # variables to b.
    a.wait_log("instance taken over by another worker", f"id={iid}")
    assert "claimed by another worker" in a.text()
    done = b.ended(iid)
    assert done["status"] == "complete" and done["resumed"] is True, done
    assert done["output"]["var"]["scratch"] == 4  # not removed by a
    assert b.var("after", "chain") == b"1"  # once, by b
    assert cluster.run_row(iid) == (b.worker, 2, "complete")


def test_a_worker_stopped_gracefully_hands_its_instances_over_at_once(cluster: Cluster) -> None:
    # a delay long enough that a's stop (0.5 s grace) finds the instance still in it even when
    # the machine is busy (with 3 s a loaded run once saw it complete first)
    cluster.flow("chain", CHAIN.replace("PT3S", "PT10S"))
    a, b = cluster.start(2)
    iid = a.start("chain", {"n": 2}, wait=False)["id"]
    a.wait_log(SITTING, f"id={iid}")
    a.stop()  # stop_grace 0.5 s: the instance is stopped in its delay, and a's row goes
    assert "instances still running at stop" in a.text()
    done = b.ended(iid)
    assert done["status"] == "complete" and done["resumed"] is True, done
    assert b.var("after", "chain") == b"1"
    assert cluster.run_row(iid) == (b.worker, 2, "complete")


def test_bad_worker_settings_are_one_clear_line(cluster: Cluster) -> None:
    cluster.config.write_text(cluster.config.read_text().replace(f"lease = {LEASE}", 'lease = "soon"'))  # as start() reads it
    proc = subprocess.run([sys.executable, "-m", "isolde.cli", "serve", str(cluster.root), "--data-dir",
                           str(cluster.tmp / "w"), "--config", str(cluster.config), "--api", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert errors and "[plugins.postgres] lease: expected a positive number of seconds, got 'soon'" in errors[-1], proc.stderr


CRON = """
start:
  type: scheduled
  cron: "* * * * * *"
states:
- id: a
  type: noop
"""


def test_cron_fires_once_per_tick_with_three_workers(cluster: Cluster) -> None:
    cluster.flow("tick", CRON)
    cluster.start(3)

    def cron_runs() -> int:
        return int(_sql(cluster.url, "SELECT count(*) FROM isolde_runs WHERE "
                    "convert_from(record, 'UTF8')::jsonb->>'trigger' = 'cron'")[0][0])

    _until(lambda: cron_runs() >= 4, "four cron instances")
    cluster.stop()  # a stop lets a fire under way finish: each won tick has started its instance
    ticks = _sql(cluster.url, "SELECT tick, worker FROM isolde_cron_ticks WHERE workflow = 'tick'")
    runs = _sql(cluster.url, "SELECT convert_from(record, 'UTF8')::jsonb->>'created' FROM isolde_runs "
                "WHERE convert_from(record, 'UTF8')::jsonb->>'trigger' = 'cron'")
    assert len(runs) == len(ticks) >= 4
    assert len({t for t, _ in ticks}) == len(ticks)  # one instance per tick, and each tick a different second
    assert all(float(t).is_integer() for t, _ in ticks)


EVENT_STARTED = """
start:
  type: event
  event:
    type: ping
states:
- id: a
  type: noop
"""

WAITER = """
states:
- id: wait
  log: waiting
  type: consumeEvent
  timeout: PT60S
  event:
    type: ping
"""


def test_an_event_starts_once_and_wakes_each_waiter_once(cluster: Cluster) -> None:
    cluster.flow("started", EVENT_STARTED)
    cluster.flow("waiter", WAITER)
    ws = cluster.start(3)
    waiters = [w.start("waiter", wait=False)["id"] for w in ws]  # one instance waiting on each worker
    for w, iid in zip(ws, waiters):
        w.wait_log('msg="\\"waiting\\""', f"id={iid}")
    event = {"specversion": "1.0", "type": "ping", "source": "test", "id": "ev-1", "data": {"n": 1}}
    answers = [w.json("POST", "/api/namespaces/ns1/events", event) for w in ws]  # the same event, to each worker
    assert [s for s, _ in answers] == [202, 202, 202]
    started = [iid for _, body in answers for iid in body["instances"]]
    assert len(started) == 1, answers
    for w, iid in zip(ws, waiters):
        done = w.ended(iid)
        assert done["status"] == "complete" and done["output"]["ping"]["id"] == "ev-1", done
    assert ws[1].ended(started[0])["status"] == "complete"
    rows = _sql(cluster.url, "SELECT count(*) FROM isolde_runs WHERE convert_from(record, 'UTF8')::jsonb->>'workflow' = 'started'")
    assert rows == [(1,)]
    assert _sql(cluster.url, "SELECT count(*) FROM isolde_events") == [(1,)]


BOTH = """
start:
  type: eventsAnd
  correlate: [order]
  events:
  - type: paid
  - type: shipped
states:
- id: a
  type: noop
  transform:
    paid: jq(.paid.data)
    shipped: jq(.shipped.data)
"""


def test_events_and_combines_events_received_by_different_workers(cluster: Cluster) -> None:
    """The events of one ``eventsAnd`` set sent to different workers combine (correlated
    on ``order``), and the set starts one instance, on the worker whose event completed it."""
    cluster.flow("both", BOTH)
    a, b, c = cluster.start(3)

    def post(w: Served, event: dict[str, Any]) -> list[str]:
        status, body = w.json("POST", "/api/namespaces/ns1/events", {"specversion": "1.0", "source": "t", **event})
        assert status == 202, body
        return list(body["instances"])

    assert post(a, {"type": "paid", "id": "p1", "order": "1", "data": "p1"}) == []
    assert post(b, {"type": "paid", "id": "p2", "order": "2", "data": "p2"}) == []
    [first] = post(c, {"type": "shipped", "id": "s2", "order": "2", "data": "s2"})  # a on b, this on c
    assert c.ended(first)["output"] == {"paid": "p2", "shipped": "s2"}
    assert post(a, {"type": "shipped", "id": "s2", "order": "2", "data": "again"}) == []  # the same event: once
    [second] = post(b, {"type": "shipped", "id": "s1", "order": "1", "data": "s1"})
    assert b.ended(second)["output"] == {"paid": "p1", "shipped": "s1"}
    rows = _sql(cluster.url, "SELECT count(*) FROM isolde_runs WHERE convert_from(record, 'UTF8')::jsonb->>'workflow' = 'both'")
    assert rows == [(2,)]
    assert _sql(cluster.url, "SELECT count(*) FROM isolde_gatherings") == [(0,)]  # nothing left half-gathered


class TestPostgresInstanceRecords(InstanceRecordsConformance):
    """The records pass the suite every backend passes.  Its worker never joined (no
    lease), so what it created counts as left by a dead worker, as the suite expects."""

    @pytest.fixture
    def records(self, pg_url: str) -> Iterator[PostgresInstanceRecords]:
        store = PostgresStore(pg_url)
        db = Connections(pg_url, durable=True)
        create_tables(db)
        _empty(pg_url)
        yield PostgresInstanceRecords(store, db, Worker(db, lease=LEASE, log=None), keep=self.KEEP)
        db.close()
        store.close()


class _Bus:
    """A PostgresEventBus as one worker has it (in-process buses inside), on its own pool."""

    def __init__(self, url: str) -> None:
        from isolde.events import InProcessEventBus
        from isolde.plugins.postgres.events import PostgresEventBus

        self.db = Connections(url, durable=True)
        create_tables(self.db)
        self.worker = Worker(self.db, lease=LEASE, log=None)
        self.bus = PostgresEventBus(InProcessEventBus, self.db, self.worker, poll=0.2, log=logging.getLogger("test"))

    def close(self) -> None:
        self.bus.close()
        self.db.close()


class TestPostgresEventBus(EventBusConformance):
    """The shared bus passes the suite every event bus passes (one worker's view)."""

    @pytest.fixture
    def bus(self, pg_url: str) -> Iterator[EventBus]:
        _empty(pg_url)
        b = _Bus(pg_url)
        yield b.bus
        b.close()


def test_an_event_reaches_waiters_on_other_workers_once_and_starts_only_where_received(pg_url: str) -> None:
    _empty(pg_url)
    a, b = _Bus(pg_url), _Bus(pg_url)
    try:
        started: list[str] = []
        b.bus.subscribe("ns", [EventFilter("ping")], lambda got: started.append("b"))
        a.bus.subscribe("ns", [EventFilter("ping")], lambda got: started.append("a"))
        ev = {"type": "ping", "source": "t", "id": "e1"}
        a.bus.publish("ns", ev)
        got = b.bus.wait("ns", [EventFilter("ping")], timeout=TIMEOUT)  # kept on b until taken
        assert got is not None and got[0][1]["id"] == "e1"
        b.bus.publish("ns", ev)  # the same id again, through the other worker: not delivered again
        assert b.bus.wait("ns", [EventFilter("ping")], timeout=0) is None
        assert started == ["a"]  # event starts only where it was received, once
        assert _sql(pg_url, "SELECT count(*) FROM isolde_events") == [(1,)]
    finally:
        a.close()
        b.close()


class _RecordingServices:
    """Daemon services of a test plugin: the single-host ones, with every call recorded."""

    claim_interval = 0.05

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: list[str] = []
        self.looks = 0

    def start(self) -> None:
        self.calls.append("start")

    def records(self, *, keep: int, log: logging.Logger) -> Any:
        from isolde.daemon import LmdbInstanceRecords

        self.calls.append("records")
        services = self

        class Counting(LmdbInstanceRecords):
            def left_running(self) -> list[dict[str, Any]]:
                services.looks += 1
                return super().left_running()

        return Counting(self.store, keep=keep, log=log)

    def scheduler(self, fire: Any, log: logging.Logger) -> Any:
        from isolde.plugin import CronThread

        self.calls.append("scheduler")
        return CronThread(fire, log)

    def events(self, make_local: Any) -> EventBus:
        self.calls.append("events")
        bus: EventBus = make_local()
        return bus

    def gatherings(self) -> None:
        return None  # eventsAnd in the daemon's memory

    def close(self) -> None:
        self.calls.append("close")


def test_hook_isolde_daemon_services(tmp_path: Path, pg_url: str) -> None:
    """A plugin answering the hook gives the daemon its records, scheduler and event bus, is
    started before recovery and closed last, and the daemon looks for orphans every
    ``claim_interval``; the PostgreSQL plugin answers only for its own store."""
    import isolde
    from isolde.daemon import Daemon, DaemonSettings
    from isolde.plugin import hookimpl
    from isolde.plugins.postgres.services import PostgresDaemonServices

    made: list[_RecordingServices] = []

    class Plugin:
        @hookimpl
        def isolde_daemon_services(self, config: Any, store: Any) -> Any:
            made.append(_RecordingServices(store))
            return made[-1]

    root = tmp_path / "flows"
    (root / "ns1").mkdir(parents=True)
    (root / "ns1" / "counter.yaml").write_text(COUNTER.lstrip("\n"))
    engine = isolde.Engine(data_dir=tmp_path / "data", config={"sidecar": {"port": 0}}, plugins=[Plugin()])
    daemon = Daemon(root, engine, DaemonSettings.from_config(engine.config), logger=logging.getLogger("test.hook"))
    try:
        daemon.start(api=False)
        (svc,) = made
        assert svc.calls == ["start", "records", "scheduler"]
        engine.events.pending("ns1")  # the bus is made on first use, by the plugin
        assert svc.calls == ["start", "records", "scheduler", "events"]
        out = daemon.start_and_view("ns1", "counter", None, wait=True, timeout=TIMEOUT)
        assert out["status"] == "complete" and out["output"]["var"]["x"] == 1
        assert daemon.records.get("ns1", out["id"])["status"] == "complete"  # type: ignore[index]
        _until(lambda: svc.looks >= 3, "the daemon looks for orphans again and again")
    finally:
        daemon.stop()
    assert svc.calls[-1] == "close"

    with isolde.Engine(data_dir=tmp_path / "pg", config={"store": {"url": pg_url}}) as pg, \
            isolde.Engine(data_dir=tmp_path / "lmdb", config={}) as lmdb:
        assert lmdb.registry.pm.hook.isolde_daemon_services(config=lmdb.config, store=lmdb.store) is None
        services = pg.registry.pm.hook.isolde_daemon_services(config=pg.config, store=pg.store)
        assert isinstance(services, PostgresDaemonServices)
        services.close()


SINGULAR = """
singular: true
states:
- id: sit
  log: sitting
  type: delay
  duration: PT1S
"""


def test_singular_holds_across_workers(cluster: Cluster) -> None:
    """A singular workflow runs once at a time across the workers: a start on any worker
    is refused (409) while an instance of it is pending or running on another, also when
    two workers are asked at the same moment; once it ended, any worker starts it."""
    cluster.flow("one", SINGULAR)
    a, b, c = cluster.start(3)
    barrier = threading.Barrier(3)
    answers: dict[str, tuple[int, Any]] = {}

    def ask(w: Served, name: str) -> None:
        barrier.wait()
        answers[name] = w.json("POST", "/api/namespaces/ns1/workflows/one/instances")

    threads = [threading.Thread(target=ask, args=(w, n)) for w, n in ((a, "a"), (b, "b"), (c, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, (status, _) in answers.items() if status == 202]
    assert len(won) == 1, answers
    for n, (status, body) in answers.items():
        if n not in won:
            assert status == 409 and body["error"]["code"] == "direktiv.mutex", body
            assert "is singular" in body["error"]["message"], body
    winner = {"a": a, "b": b, "c": c}[won[0]]
    iid = answers[won[0]][1]["id"]
    other = b if winner is not b else c
    status, body = other.json("POST", "/api/namespaces/ns1/workflows/one/instances?wait=true")
    assert status == 409 and iid in body["error"]["message"], body  # still running on the winner
    ended = winner.ended(iid)
    assert ended["status"] == "complete", ended
    assert other.start("one", wait=True)["status"] == "complete"  # ended: any worker starts it again


RESTART_CHAIN = """
states:
- id: first
  type: setter
  variables:
  - key: first
    scope: instance
    value: jq(.n)
  transition: sit
- id: sit
  log: sitting
  type: delay
  duration: PT2S
  transition: last
- id: last
  type: setter
  variables:
  - key: done
    scope: workflow
    value: jq(.n)
"""


def test_the_database_restarted_in_the_middle_of_runs(tmp_path: Path) -> None:
    """A real server restarted (``pg_ctl restart``, fast shutdown: every session is cut)
    while instances sit in a delay and clients run the counter through both workers: the
    workers reconnect, every acknowledged start ends complete, every acknowledged write is
    there, and each counter run either answered complete (and counted) or failed with a
    clear error.  The server is one of the test's own (a fresh cluster on a free port), so
    the restart does not cut the sessions of anything else using the shared one."""
    with private_server() as server:
        cluster = Cluster(tmp_path, server.url)
        try:
            _restarted_in_the_middle_of_runs(cluster, server)
        finally:
            cluster.stop()


def _restarted_in_the_middle_of_runs(cluster: Cluster, server: PrivateServer) -> None:
    cluster.flow("chain", RESTART_CHAIN)
    cluster.flow("counter", COUNTER.replace("    scope: workflow\n  transform", "    scope: workflow\n    lock: true\n  transform"))
    a, b = cluster.start(2)
    status, _ = a.request("PUT", "/api/namespaces/ns1/variables/kept", b'"yes"', {"Content-Type": "application/json"})
    assert status == 201
    started = [(w, w.start("chain", {"n": i}, wait=False)["id"]) for i, w in enumerate([a, b] * 3)]
    for w, iid in started:
        w.wait_log(SITTING, f"id={iid}")
    stop = threading.Event()
    answers: list[tuple[int, Any]] = []

    def client(w: Served) -> None:
        while not stop.is_set():
            answers.append(w.json("POST", "/api/namespaces/ns1/workflows/counter/instances?wait=true"))

    clients = [threading.Thread(target=client, args=(w,)) for w in (a, b)]
    for t in clients:
        t.start()
    try:
        _until(lambda: len(answers) >= 4, "counter runs before the restart")
        before = len(answers)
        booted = _sql(server.url, "SELECT pg_postmaster_start_time()")
        server.restart()
        _until(lambda: len(answers) >= before + 8, "counter runs after the restart")
    finally:
        stop.set()
        for t in clients:
            t.join(TIMEOUT)
    assert _sql(server.url, "SELECT pg_postmaster_start_time()") > booted  # it did restart
    for w, iid in started:  # acknowledged starts: all complete (on their worker, or resumed by the other)
        done = a.ended(iid)
        assert done["status"] == "complete", done
    assert b.var("kept") == b'"yes"'  # an acknowledged write survived
    complete = [body for status, body in answers if status == 200 and body.get("status") == "complete"]
    failed = [(status, body) for status, body in answers if not (status == 200 and body.get("status") == "complete")]
    for status, body in failed:  # in flight when the server went: a clear error, not a hang
        err = body.get("error") or {}
        assert err.get("code") and err.get("message"), (status, body)
    x = int(a.var("x", "counter") or b"0")
    assert len(complete) <= x <= len(answers), (x, len(complete), len(answers))
    assert len(complete) >= 8  # the workers went on after the restart
    print(f"restart during {len(answers)} counter runs: {len(complete)} complete, {len(failed)} failed "
          f"({sorted({b.get('error', {}).get('code') for _, b in failed})}), counter {x}")
    for w in (a, b):  # and each still runs instances
        assert w.start("counter", wait=True)["status"] == "complete"
    logs = a.text() + "\n" + b.text()
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 2000:logs.index("Traceback") + 3000]


SIT = """
states:
- id: mark
  type: setter
  variables:
  - key: marked
    scope: instance
    value: true
  transition: sit
- id: sit
  log: sitting
  type: delay
  duration: PT60S
"""


def test_the_cli_lists_shows_and_cancels_every_workers_instances(cluster: Cluster, cli: Any) -> None:
    """``isolde instances`` with ``--store postgresql://...`` sees the instances of every
    ``isolde serve`` worker on the database, pending, running and finished; its cancel is a
    stored request that the worker holding the instance picks up (the API's too, on any worker)."""
    cluster.flow("counter", COUNTER)
    cluster.flow("sit", SIT)
    (a,) = cluster.start(1, daemon="max_running = 1\n")
    (b,) = cluster.start(1)
    done = b.start("counter", wait=True)["id"]  # finished, on b
    running = a.start("sit", wait=False)["id"]
    a.wait_log("sitting", f"id={running}")
    queued = a.start("sit", wait=False)["id"]  # pending behind it on a
    db = ("-n", "ns1", "--store", cluster.url)

    listed = cli("instances", "list", "--json", *db)
    assert listed.code == 0, listed.stderr
    rows = {r["id"]: (r["workflow"], r["status"]) for r in listed.json["instances"]}
    assert rows == {done: ("counter", "complete"), running: ("sit", "running"), queued: ("sit", "pending")}, rows
    table = cli("instances", "list", "--status", "running", *db).stdout
    assert running in table and queued not in table and done not in table

    shown = cli("instances", "show", running, "--json", *db).json
    assert (shown["status"], shown["state"], shown["workflow"]) == ("running", "sit", "sit"), shown
    text = cli("instances", "show", done[-8:], *db)  # the end of an id is enough
    assert text.code == 0 and "complete" in text.stdout and "a   " in text.stdout, text.stdout
    # the log line of the state under way is stored by the worker's history within [history] flush_interval
    _until(lambda: "[sit] \"sitting\"" in cli("instances", "logs", running, *db).stdout, "the log line stored")

    out = cli("instances", "cancel", running, *db)
    assert out.code == 0 and "cancel requested" in out.stderr, out.stderr
    ended = _until(lambda: (lambda r: r if r.get("status") == "cancelled" else None)(b.instance(running)),
                   f"instance {running} cancelled on a")
    assert ended["error"]["code"] == "direktiv.cancels.api", ended
    a.wait_log("sitting", f"id={queued}")  # then the queued one ran: the API of b cancels it on a
    status, body = b.json("POST", f"/api/namespaces/ns1/instances/{queued}/cancel")
    assert status == 202 and body["status"] == "running", (status, body)
    _until(lambda: b.instance(queued).get("status") == "cancelled", f"instance {queued} cancelled on a")

    rows = {r["id"]: r["status"] for r in cli("instances", "list", "--json", *db).json["instances"]}
    assert rows == {done: "complete", running: "cancelled", queued: "cancelled"}, rows
    again = cli("instances", "cancel", running, *db)
    assert again.code == 1 and "already ended (cancelled)" in again.stderr, again.stderr
    assert "cancelled" in cli("instances", "show", queued, *db).stdout


def test_hook_isolde_instance_history(tmp_path: Path, pg_url: str) -> None:
    """A plugin answering the hook keeps the engine's history (its ``elsewhere`` records are
    listed and found with the others); the PostgreSQL plugin answers only for its own store,
    with the history that reads the workers' ``isolde_runs``."""
    import isolde
    from isolde.history import StoreHistory
    from isolde.plugin import hookimpl
    from isolde.plugins.postgres.history import PostgresHistory

    far = {"v": 1, "id": "far-1", "workflow": "wf", "status": "running", "state": "s", "trigger": "api",
           "created": 5.0, "started": 5.0, "ended": None, "input": {}, "input_truncated": False, "output": None,
           "error": None}

    class Shared(StoreHistory):
        def elsewhere(self, namespace: str) -> list[dict[str, Any]]:
            return [{**far, "namespace": namespace}] if namespace == "ns1" else []

        def get(self, namespace: str, instance_id: str) -> dict[str, Any] | None:
            return super().get(namespace, instance_id) or next(
                (r for r in self.elsewhere(namespace) if r["id"] == instance_id), None)

    class Plugin:
        @hookimpl
        def isolde_instance_history(self, config: Any, store: Any) -> Any:
            return Shared(store)

    with isolde.Engine(data_dir=tmp_path / "own", config={}, plugins=[Plugin()]) as engine:
        assert isinstance(engine.history.history, Shared)
        here = engine.run(COUNTER, namespace="ns1")
        rows, total = engine.history.list("ns1")
        assert [(r["id"], r["status"]) for r in rows] == [(here.instance_id, "complete"), ("far-1", "running")]
        assert engine.history.show("ns1", "far-1")["state"] == "s"
        assert engine.cancel("far-1", "ns1") == "requested"  # a stored request, for whoever runs it

    with isolde.Engine(data_dir=tmp_path / "pg", config={"store": {"url": pg_url}}) as pg, \
            isolde.Engine(data_dir=tmp_path / "lmdb", config={}) as lmdb:
        assert type(lmdb.history.history) is StoreHistory
        assert lmdb.registry.pm.hook.isolde_instance_history(config=lmdb.config, store=lmdb.store) is None
        assert isinstance(pg.history.history, PostgresHistory)


def test_an_isolate_of_a_worker_that_lost_its_claim_cannot_write_through_the_sidecar(cluster: Cluster) -> None:
    """Writes through the sidecar are fenced like a state's commit: once another worker
    claimed the instance (the first one was paused past its lease), every write its isolate
    still sends -- plain, compare-and-set, instance scope -- is refused (409, nothing
    written), while the write it sent before the claim stays."""
    record = cluster.tmp / "probe.jsonl"
    gate = cluster.tmp / "gate"
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(PROBE)], "env": {"RECORD": str(record)}}
    calls = [["POST", "/var?scope=workflow&key=early", '"before"'],
             ["WAIT", str(gate), 60],
             ["POST", "/var?scope=workflow&key=late", '"after"'],
             ["POST", "/var?scope=workflow&key=cas", '"after"', {"If-None-Match": "*"}],
             ["POST", "/var?scope=instance&key=mine", '"after"']]
    cluster.flow("fenced", json.dumps({"functions": [fn], "states": [
        {"id": "call", "type": "action", "action": {"function": "probe", "input": {"op": "sidecar", "calls": calls}}}]}))
    a, b = cluster.start(2)
    iid = a.start("fenced", wait=False)["id"]

    def sidecar_results() -> list[tuple[str, int, str]]:
        lines = [json.loads(ln) for ln in record.read_text().splitlines()] if record.exists() else []
        return [(e["call"][1].split("key=")[1], *e["result"]) for e in lines if e["method"] == "SIDECAR"]

    assert _until(lambda: sidecar_results(), "the first write through the sidecar") == [("early", 200, "")]
    a.proc.send_signal(signal.SIGSTOP)  # paused in the action, its isolate waiting at the gate
    try:
        done = b.ended(iid)  # its lease ran out: b claimed it, and ended it (an action may have started)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    assert done["status"] == "failed" and done["error"]["code"] == "interrupted", done
    gate.touch()  # the isolate goes on writing through a's sidecar
    results = _until(lambda: (lambda r: r if len(r) == 4 else None)(sidecar_results()), "the isolate's writes")
    assert [(key, status) for key, status, _ in results] == [("early", 200), ("late", 409), ("cas", 409), ("mine", 409)]
    for _, _, body in results[1:]:
        assert f"instance {iid} was claimed by another worker" in body and "nothing of this write was committed" in body
    a.wait_log("instance taken over by another worker", f"id={iid}")  # then its own commit was refused too
    assert b.var("early", "fenced") == b'"before"'
    assert b.var("late", "fenced") is None and b.var("cas", "fenced") is None
    assert _sql(cluster.url, "SELECT count(*) FROM isolde_variables WHERE owner = %s", iid) == [(0,)]
    assert cluster.run_row(iid) == (b.worker, 2, "failed")


def test_cancelled_instances_are_finished_listed_and_pruned(pg_url: str) -> None:
    """A cancelled instance is a finished one on PostgreSQL: listed with the complete and
    failed ones, and pruned under the same retention (``keep``), oldest first."""
    store = PostgresStore(pg_url)
    db = Connections(pg_url, durable=True)
    _empty(pg_url)
    records = PostgresInstanceRecords(store, db, Worker(db, lease=LEASE, log=None), keep=3)
    try:
        statuses = ["cancelled", "complete", "cancelled", "failed", "cancelled", "cancelled", "complete", "cancelled"]
        for n, status in enumerate(statuses):
            iid = f"i{n}"
            records.create({"id": iid, "namespace": "ns1", "workflow": "wf", "status": "running", "created": float(n)})
            records.finish({"id": iid, "namespace": "ns1", "workflow": "wf", "status": status, "created": float(n),
                            "ended": float(n) + 0.5})
        rows = _sql(pg_url, "SELECT id, status FROM isolde_runs WHERE namespace = 'ns1' ORDER BY id")
        assert rows == [("i5", "cancelled"), ("i6", "complete"), ("i7", "cancelled")], rows
        assert [r["id"] for r in records.list("ns1")] == ["i7", "i6", "i5"]
    finally:
        db.close()
        store.close()


def test_an_instances_store_writes_only_while_its_worker_holds_the_claim(pg_url: str) -> None:
    """``instance_store`` (what the sidecar and subflows write through): a write, an update
    and a compare-and-set commit while the row names this worker and the run's epoch, or
    while the instance has no row and this worker never recorded it (``?wait=true``, nothing
    committed yet); once another worker claimed it, each is refused whole (``ClaimLost``)."""
    from isolde.plugin import Put, Ref, StoreError

    store = PostgresStore(pg_url)
    db = Connections(pg_url, durable=True)
    _empty(pg_url)
    worker = Worker(db, lease=LEASE, log=None)
    records = PostgresInstanceRecords(store, db, worker, keep=10)
    try:
        fresh = records.instance_store(store, "ns1", "fresh")  # no row: nobody else's
        fresh.write([Put(Ref("ns1", "workflow", "wf", "a"), b"1")])
        records.create({"id": "held", "namespace": "ns1", "workflow": "wf", "status": "running", "created": 1.0})
        held = records.instance_store(store, "ns1", "held")
        held.write([Put(Ref("ns1", "workflow", "wf", "b"), b"1")])
        assert held.compare_and_set(Ref("ns1", "workflow", "wf", "c"), None, b"1") > 0
        assert held.update(Ref("ns1", "workflow", "wf", "c"), lambda v: (b"2", "application/json")) is not None

        _sql(pg_url, "UPDATE isolde_runs SET owner = 'someone-else', epoch = 2 WHERE id = 'held' RETURNING 1")
        refused = [
            lambda: held.write([Put(Ref("ns1", "workflow", "wf", "b"), b"2"), Put(Ref("ns1", "workflow", "wf", "d"), b"2")]),
            lambda: held.write([], register_instance=("ns1", "held")),
            lambda: held.compare_and_set(Ref("ns1", "workflow", "wf", "e"), None, b"2"),
            lambda: held.update(Ref("ns1", "workflow", "wf", "c"), lambda v: (b"3", "application/json")),
        ]
        for attempt in refused:
            with pytest.raises(StoreError, match="claimed by another worker") as info:
                attempt()
            assert getattr(info.value, "instance_lost", False) and info.value.code == "isolde.claim.lost"
        values = {k: bytes(v.data) for k, v in store.list("ns1", "workflow", "wf")}
        assert values == {"a": b"1", "b": b"1", "c": b"2"}  # nothing of a refused write
        # a run that began before its own worker claimed the instance again is fenced as well
        _sql(pg_url, "UPDATE isolde_runs SET owner = %s, epoch = 3 WHERE id = 'held' RETURNING 1", worker.id)
        with pytest.raises(StoreError, match="claimed by another worker"):
            held.write([Put(Ref("ns1", "workflow", "wf", "b"), b"3")])
        # and an instance this worker recorded whose row is gone is no longer its own
        fresh.write([Put(Ref("ns1", "workflow", "wf", "a"), b"2")])
        records.create({"id": "fresh", "namespace": "ns1", "workflow": "wf", "status": "running", "created": 1.0})
        _sql(pg_url, "DELETE FROM isolde_runs WHERE id = 'fresh' RETURNING 1")
        with pytest.raises(StoreError, match="claimed by another worker"):
            fresh.write([Put(Ref("ns1", "workflow", "wf", "a"), b"3")])
    finally:
        db.close()
        store.close()
