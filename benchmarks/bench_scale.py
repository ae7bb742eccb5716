"""Workers on one PostgreSQL: throughput with 1, 2, 4 (8) ``isolde serve`` workers, in one run.

    python benchmarks/bench_scale.py [--url postgresql://root@127.0.0.1:5432/root] [--seconds 2] [--reps 3]

Eight worker processes serve one folder on one database (a scratch database, dropped
afterwards); each case drives the first N of them with closed-loop HTTP clients
(``POST .../instances?wait=true`` over keep-alive connections, ``--clients`` per
worker, one for the I/O-bound case) for ``--seconds`` and counts completed instances
(``--reps`` times, alternating with the floor; medians are shown):

* ``counter``: ``examples/counter.yaml`` (a getter, then a setter of the same variable);
* ``chain``: ten setter states, each writing one workflow variable;
* ``io``: one action calling a ``process`` isolate that answers after 20 ms.

The PostgreSQL floor runs the same SQL isolde issues for an instance (statement for
statement, transaction for transaction, round trip for round trip: a read as one
autocommit statement, a state's commit as one pipeline then COMMIT, with the state's
timeline row) in plain psycopg loops, one process per client in flight; its records
belong to a worker row with a live lease, so the workers never claim them.
``commits/instance`` is the delta of ``pg_stat_database.xact_commit`` of the scratch
database (every transaction, reads included) over a run of one worker per workload,
with 11 s before and after for the backends to flush their counters, less the idle
workers' background rate (heartbeats, claim looks, event polls).  Not a test:
nothing is asserted; the numbers go to docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
ISOLATE = r'''
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(0.02)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''
CHAIN = "states:\n" + "".join(
    f"- id: s{i}\n  type: setter\n  variables:\n  - key: k{i}\n    scope: workflow\n    value: jq(.n // {i})\n"
    + (f"  transition: s{i + 1}\n" if i < 9 else "") for i in range(10))

# The SQL isolde sends per instance (plugins/postgres: store.py, claims.py), for the floor.
GET = ("SELECT q.i, v.mime, v.data, v.size, v.created, v.updated, v.version FROM unnest(%s::text[], %s::text[], "
       "%s::text[], %s::text[]) WITH ORDINALITY AS q(ns, sc, ow, k, i) JOIN isolde_variables v ON v.namespace = q.ns "
       "AND v.scope = q.sc AND v.owner = q.ow AND v.key = q.k")
RUN = ("INSERT INTO isolde_runs AS r (namespace, id, owner, epoch, status, created, ended, record, workflow) "
       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, id) DO UPDATE SET status = EXCLUDED.status, "
       "ended = EXCLUDED.ended, record = EXCLUDED.record WHERE r.owner = EXCLUDED.owner AND r.epoch = EXCLUDED.epoch "
       "RETURNING 1")
VAR = ("INSERT INTO isolde_variables AS v (namespace, scope, owner, key, mime, data, size, created, updated, version) "
       "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, nextval('isolde_version_seq')) "
       "ON CONFLICT (namespace, scope, owner, key) DO UPDATE SET mime = EXCLUDED.mime, data = EXCLUDED.data, "
       "size = EXCLUDED.size, updated = EXCLUDED.updated, version = EXCLUDED.version RETURNING version, created")
TIMELINE = json.dumps({"state": "b", "type": "setter", "at": 0.0, "took": 0.001, "writes": ["workflow/x"],
                       "transition": None, "status": "complete"}).encode()
XID = "SELECT pg_current_xact_id_if_assigned()::text"
RECORD = json.dumps({"v": 1, "id": "x" * 36, "namespace": "floor", "workflow": "counter", "status": "running",
                     "state": None, "trigger": "api", "created": 0.0, "started": 0.0, "ended": None, "output": {"var": {"x": 1}},
                     "error": None, "resumed": False, "data": None, "ivars": False, "log": []}).encode()


def floor_loop(url: str, kind: str, seconds: float, out: Any) -> None:
    """One client's worth of the SQL of ``kind`` instances, as fast as it goes, sent the
    way the store sends it: a read as one autocommit statement; a state's commit as one
    pipeline (BEGIN, the fenced record, the variables, the transaction id), its results
    read, then COMMIT."""
    import uuid

    def commit(conn: psycopg.Connection[Any], iid: str, status: str, ended: float | None, wf: str, key: str) -> None:
        now = time.time()
        with conn.pipeline():
            conn.execute("BEGIN")
            fenced = conn.execute(RUN, ("floor", iid, "floor", 1, status, now, ended, RECORD, wf))
            with conn.cursor() as cur:  # the variable, and the state's line of the instance's timeline
                cur.executemany(VAR, [("floor", "workflow", wf, key, "application/json", b"1", 1, now, now),
                                      ("floor", "instance", f"~isolde-timeline/{iid}", key, "application/json",
                                       TIMELINE, len(TIMELINE), now, now)])
            xid = conn.execute(XID)
        f, x = fenced.fetchone(), xid.fetchone()
        assert f is not None and x is not None, (f, x, fenced.statusmessage, fenced.pgresult and fenced.pgresult.status)
        conn.execute("COMMIT")

    with psycopg.connect(url, autocommit=True) as conn:
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            iid, now = str(uuid.uuid4()), time.time()
            if kind == "counter":
                conn.execute(GET, (["floor"], ["workflow"], ["counter"], ["x"])).fetchall()
                commit(conn, iid, "complete", now, "counter", "x")
            elif kind == "chain":
                for i in range(10):
                    commit(conn, iid, "complete" if i == 9 else "running", now if i == 9 else None, "chain", f"k{i}")
            n += 1
        out.put(n)


def floor(url: str, kind: str, procs: int, seconds: float) -> float:
    with psycopg.connect(url, autocommit=True) as conn:  # a live owner: the workers never claim the floor's rows
        conn.execute("INSERT INTO isolde_workers (id, host, pid, lease_until) VALUES ('floor', 'floor', 0, "
                     "now() + interval '1 day') ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until")
    q: Any = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=floor_loop, args=(url, kind, seconds, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total / seconds


class Worker:
    def __init__(self, root: Path, data: Path, config: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "serve", str(root), "--data-dir", str(data),
                                      "--config", str(config), "--api", "127.0.0.1:0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode()
            if "daemon ready" in line:
                url = next(p[4:] for p in line.split() if p.startswith("api="))
                self.host, port = url.split("//")[1].split(":")
                self.port = int(port)
                break
        else:
            raise SystemExit(f"a worker did not start (exit {self.proc.wait()})")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or ()], daemon=True).start()  # drain

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def drive(workers: list[Worker], wf: str, clients: int, seconds: float) -> int:
    """Closed-loop clients, ``clients`` per worker; instances completed in ``seconds``."""
    done = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def client(w: Worker) -> None:
        conn = http.client.HTTPConnection(w.host, w.port)
        n = 0
        path = f"/api/namespaces/bench/workflows/{wf}/instances?wait=true"
        while not stop.is_set():
            conn.request("POST", path, b'{"n": 1}', {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or b'"complete"' not in body:
                raise SystemExit(f"{wf}: {r.status} {body[:300]!r}")
            n += 1
        with lock:
            done[0] += n
        conn.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in workers for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return done[0]


def commits(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        return int(row[0]) if row else 0


STATS_SETTLE = 11.0
"""Seconds until every backend flushed its pg_stat counters (an idle backend flushes after 10 s)."""


def commit_count(url: str, background: float, run: Callable[[], int]) -> float:
    """Transactions per instance of ``run`` (the idle background subtracted)."""
    time.sleep(STATS_SETTLE)
    before, t = commits(url), time.perf_counter()
    n = run()
    time.sleep(STATS_SETTLE)
    delta = commits(url) - before - background * (time.perf_counter() - t)
    return delta / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="postgresql://root@127.0.0.1:5432/root")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=2, help="clients in flight per worker (counter, chain)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each case (medians are shown)")
    a = ap.parse_args()
    # A scratch database of its own, so that pg_stat_database counts this run's commits only.
    db = f"isolde_bench_{secrets.token_hex(4)}"
    with psycopg.connect(a.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    parts = urlsplit(a.url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, parts.fragment))
    workers: list[Worker] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "flows"
            (root / "bench").mkdir(parents=True)
            (root / "bench" / "counter.yaml").write_text((ROOT / "examples" / "counter.yaml").read_text())
            (root / "bench" / "chain.yaml").write_text(CHAIN)
            script = Path(tmp) / "isolate.py"
            script.write_text(ISOLATE)
            fn = {"id": "slow", "type": "process", "command": [sys.executable, str(script)]}
            (root / "bench" / "io.yaml").write_text("functions:\n- " + json.dumps(fn) + "\nstates:\n- id: a\n  type: action\n"
                                                    "  action:\n    function: slow\n    input: {n: 1}\n")
            config = Path(tmp) / "isolde.toml"
            config.write_text(f'[store]\nurl = "{url}"\n[sidecar]\nport = 0\n[daemon]\nstatus_interval = 0\n'
                              "[plugins.postgres]\nclaim_interval = 5\nevent_poll = 5\n")  # a quieter background
            workers = [Worker(root, Path(tmp) / f"d{i}", config) for i in range(8)]
            for w in workers:  # warm: every workflow loaded, every isolate started
                for wf in ("counter", "chain", "io"):
                    drive([w], wf, 1, 0.2)
            rows: list[tuple[str, int, int, float, float | None]] = []
            plan = (("counter", (1, 2, 4), a.clients), ("chain", (1, 2, 4), a.clients), ("io", (1, 2, 4, 8), 1))
            for wf, counts, clients in plan:
                for n in counts:
                    rates, floors = [], []
                    for _ in range(a.reps):  # isolde and its floor alternate: both see the same load
                        rates.append(drive(workers[:n], wf, clients, a.seconds) / a.seconds)
                        if wf != "io":
                            floors.append(floor(url, wf, n * clients, a.seconds))
                    rows.append((wf, n, n * clients, statistics.median(rates), statistics.median(floors) if floors else None))
            # Commits per instance: one worker per workload, the counters given time to settle.
            time.sleep(STATS_SETTLE)
            t0, c0 = time.perf_counter(), commits(url)
            time.sleep(STATS_SETTLE)
            background = (commits(url) - c0) / (time.perf_counter() - t0)
            per = {wf: commit_count(url, background, lambda: drive(workers[:1], wf, clients, a.seconds))
                   for wf, _, clients in plan}
    finally:
        for w in workers:
            w.stop()
        with psycopg.connect(a.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {db} WITH (FORCE)")
    states = {"counter": 2, "chain": 10, "io": 1}
    one = {wf: rate for wf, n, _, rate, _ in rows if n == 1}
    print(f"background (idle workers): {background:.1f} transactions/s, subtracted\n")
    print("| workload | workers | in flight | instances/s | × 1 worker | PostgreSQL floor/s | isolde / floor | commits/instance | commits/state |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for wf, n, inflight, rate, fl in rows:
        ratio = f"{rate / fl:.2f}" if fl else "-"
        print(f"| {wf} | {n} | {inflight} | {rate:.0f} | {rate / one[wf]:.2f} | {f'{fl:.0f}' if fl else '-'} | {ratio} "
              f"| {per[wf]:.2f} | {per[wf] / states[wf]:.2f} |")


if __name__ == "__main__":
    main()
