"""``GET /metrics`` scrape time of a daemon serving many workflows that ran many instances.

    python benchmarks/bench_metrics.py                     # 1,000 workflows, 10,000 instances
    python benchmarks/bench_metrics.py --workflows 100 --instances 1000

A daemon (in this process, API on a free loopback port) serves ``--workflows`` workflows
(a setter and a noop each, spread over 10 namespaces); ``--instances`` instances run
through the API (``?wait=true``, 8 clients), so every workflow has its counters and every
state type its histogram.  Then ``/metrics`` is fetched ``--scrapes`` times over one
keep-alive connection; the table shows the median and the 90th percentile, the body's size
and its number of samples.  Floor: ``GET /api/status`` on the same connection (the
server's own cost of one small answer).  Benchmarks are not tests: nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import isolde
from isolde.daemon import Daemon, DaemonSettings

FLOW = """states:
- id: count
  type: setter
  variables:
  - key: runs
    scope: workflow
    value: 'jq(.n)'
  transition: done
- id: done
  type: noop
"""


def timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - start
    assert resp.status == 200, (resp.status, body[:200])
    return elapsed, body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args(argv)
    logging.getLogger("isolde").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="isolde-bench-metrics-"))
    root = base / "flows"
    names = []
    for i in range(args.workflows):
        ns, wf = f"ns{i % 10}", f"wf{i}"
        (root / ns).mkdir(parents=True, exist_ok=True)
        (root / ns / f"{wf}.yaml").write_text(FLOW)
        names.append((ns, wf))
    engine = isolde.Engine(data_dir=base / "data", config={"store": {"durability": "fast"}})
    daemon = Daemon(root, engine, DaemonSettings.from_config(engine.config, api="127.0.0.1:0"),
                    logger=logging.getLogger("isolde.bench"))
    daemon.start()
    try:
        port = daemon.api.port
        started = time.perf_counter()

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for j in range(k, args.instances, 8):
                ns, wf = names[j % len(names)]
                conn.request("POST", f"/api/namespaces/{ns}/workflows/{wf}/instances?wait=true", body=b'{"n": 1}')
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status
            conn.close()

        pool = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        ran = time.perf_counter() - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        timed(conn, "/metrics")
        scrapes, floor = [], []
        body = b""
        for _ in range(args.scrapes):
            t, body = timed(conn, "/metrics")
            scrapes.append(t)
            floor.append(timed(conn, "/api/status")[0])
        conn.close()
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        q = statistics.quantiles(scrapes, n=10)
        print(f"isolde {isolde.__version__}, Python {sys.version.split()[0]}; {args.workflows} workflows, "
              f"{args.instances} instances (ran in {ran:.1f}s)", file=sys.stderr)
        print("| request | median | p90 | body | samples |")
        print("|---|---|---|---|---|")
        print(f"| GET /metrics | {statistics.median(scrapes) * 1000:.1f} ms | {q[8] * 1000:.1f} ms | "
              f"{len(body) / 1024:.0f} KiB | {samples} |")
        print(f"| GET /api/status (floor) | {statistics.median(floor) * 1000:.2f} ms | "
              f"{statistics.quantiles(floor, n=10)[8] * 1000:.2f} ms | - | - |")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
