"""The PostgreSQL store's own cost against the same SQL in plain psycopg, in one process.

    python benchmarks/bench_pg_commit.py [--url postgresql://root@127.0.0.1:5432/root] [-n 2000]

A counter instance's SQL as ``bench_scale.py``'s floor sends it -- the read (one
autocommit statement) and a state's commit (one pipeline: BEGIN, the fenced record, the
variable, the timeline chunk, the transaction id; then COMMIT) -- once through
``PostgresStore`` (``get_many``, ``write`` with a ``RecordWrite``) and once as plain psycopg
calls, alternating, on a scratch database with ``synchronous_commit = off`` (so the CPU of
the client shows, not the disk).  Prints the client's CPU time (``time.process_time``) and
wall time per operation.  Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale as b  # noqa: E402  (the floor's SQL)

from isolde.plugin import Put, Ref  # noqa: E402
from isolde.plugins.postgres import PostgresStore  # noqa: E402
from isolde.plugins.postgres.claims import RecordWrite  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="postgresql://root@127.0.0.1:5432/root")
    ap.add_argument("-n", type=int, default=2000, help="operations per measurement")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    db = f"isolde_bench_{secrets.token_hex(4)}"
    with psycopg.connect(a.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {db}")
    parts = urlsplit(a.url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + db, parts.query, parts.fragment))
    try:
        store = PostgresStore(url, durable=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = off")
            var = Ref("floor", "workflow", "counter", "x")

            def floor_commit() -> None:
                iid, now = str(uuid.uuid4()), time.time()
                with conn.pipeline():
                    conn.execute("BEGIN")
                    fenced = conn.execute(b.RUN, ("floor", iid, "floor", 1, "complete", now, now, b.RECORD, "counter"))
                    with conn.cursor() as cur:
                        cur.executemany(b.VAR, [
                            ("floor", "workflow", "counter", "x", "application/json", b"1", 1, now, now),
                            ("floor", "instance", f"~isolde-timeline/{iid}", "c000000", "application/json", b.TIMELINE,
                             len(b.TIMELINE), now, now)])
                    xid = conn.execute(b.XID)
                fenced.fetchone()
                xid.fetchone()
                conn.execute("COMMIT")

            def store_commit() -> None:
                iid, now = str(uuid.uuid4()), time.time()
                store.write([RecordWrite(Ref("floor", "instance", "~isolde-daemon", "i-" + iid), b.RECORD, owner="floor",
                                         epoch=1, status="complete", created=now, ended=now, workflow="counter"),
                             Put(var, b"1"),
                             Put(Ref("floor", "instance", f"~isolde-timeline/{iid}", "c000000"), b.TIMELINE)])

            def floor_read() -> None:
                conn.execute(b.GET, (["floor"], ["workflow"], ["counter"], ["x"])).fetchall()

            def store_read() -> None:
                store.get_many([var])

            cases: list[tuple[str, Callable[[], None]]] = [
                ("commit, plain psycopg", floor_commit), ("commit, PostgresStore.write", store_commit),
                ("read, plain psycopg", floor_read), ("read, PostgresStore.get_many", store_read)]
            for _ in range(a.reps):
                for name, fn in cases:
                    for _ in range(200):
                        fn()
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(a.n):
                        fn()
                    c1, t1 = time.process_time(), time.perf_counter()
                    print(f"{name:32s} cpu {1e6 * (c1 - c0) / a.n:4.0f} us   wall {1e6 * (t1 - t0) / a.n:4.0f} us", flush=True)
        store.close()
    finally:
        with psycopg.connect(a.url, autocommit=True) as c:
            c.execute(f"DROP DATABASE {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
