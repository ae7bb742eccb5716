"""Isolate-call overhead: an action on a trivial ``process`` isolate vs a raw loopback POST.

Run:  python benchmarks/bench_isolate.py [--calls N] [--reps R]

Target (issue 14, tightening PERFORMANCE.md's 2 ms): an action on a trivial ``process``
isolate, no files, costs at most 1 ms more than a raw loopback POST to the same server.  All
cases run in one process, interleaved over several repetitions; the table
shows medians per call:

* ``raw POST``: the floor -- ``http.client`` over one keep-alive connection to
  the trivial isolate (a stdlib ``ThreadingHTTPServer``, HTTP/1.1,
  TCP_NODELAY, answering ``{}``), with the same headers isolde sends;
* ``noop instance``: ``engine.run`` of a one-state ``noop`` workflow: what
  running any instance costs, without the action;
* ``action instance``: ``engine.run`` of a one-state ``action`` workflow
  calling the same program as ``type: process`` (started once, reused): the
  full path -- input, runner lookup, action folder, sidecar grant, the
  ``out/`` watcher, the call, the ``out/`` sweep, clean-up;
* ``overhead``: action instance - raw POST (the target's measure), and
  action instance - noop instance - raw POST (the action alone).

The store is durable (the default), but an action without ``out/`` files
writes nothing, so no sync happens on this path.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISOLATE = r'''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''

HEADERS = {
    "Content-Type": "application/json",
    "Direktiv-ActionID": "x" * 43,
    "Direktiv-InstanceID": "00000000-0000-0000-0000-000000000000",
    "Direktiv-Namespace": "default",
    "Direktiv-Workflow": "bench",
    "Direktiv-Step": "1",
    "Direktiv-Iterator": "0",
    "Direktiv-Deadline": "2030-01-01T00:00:00Z",
    "Direktiv-TempDir": "/tmp/isolde-action-xxxxxxxx",
    "Direktiv-Sidecar": "127.0.0.1:8889",
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_post(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = b'{"n":1}'
    for _ in range(20):
        conn.request("POST", "/", body, HEADERS)
        conn.getresponse().read()
    t = time.perf_counter()
    for _ in range(n):
        conn.request("POST", "/", body, HEADERS)
        r = conn.getresponse()
        r.read()
    dt = (time.perf_counter() - t) / n
    conn.close()
    return dt


def engine_runs(engine: object, wf: object, n: int) -> float:
    for _ in range(10):
        res = engine.run(wf)  # type: ignore[attr-defined]
        assert res.ok, res.error
    t = time.perf_counter()
    for _ in range(n):
        engine.run(wf)  # type: ignore[attr-defined]
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300, help="calls per case and repetition")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import isolde

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "isolate.py"
        script.write_text(ISOLATE)
        port = free_port()
        server = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PORT": str(port)})
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=0.2).connect()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            fn = {"id": "trivial", "type": "process", "command": [sys.executable, str(script)]}
            action_wf = (
                "functions:\n- " + json.dumps(fn) + "\nstates:\n"
                "- id: a\n  type: action\n  action:\n    function: trivial\n    input: {n: 1}\n"
            )
            noop_wf = "states:\n- id: a\n  type: noop\n  transform: {n: 1}\n"
            cases: dict[str, list[float]] = {"raw POST": [], "noop instance": [], "action instance": []}
            with isolde.Engine(data_dir=Path(tmp) / "data", config={"sidecar": {"port": 0}}) as engine:
                wf_action = engine.load(action_wf)
                wf_noop = engine.load(noop_wf)
                for _ in range(args.reps):
                    cases["raw POST"].append(raw_post(port, args.calls))
                    cases["noop instance"].append(engine_runs(engine, wf_noop, args.calls))
                    cases["action instance"].append(engine_runs(engine, wf_action, args.calls))
        finally:
            server.terminate()
            server.wait(10)

    med = {k: statistics.median(v) for k, v in cases.items()}
    print(f"isolate call: {args.calls} calls x {args.reps} repetitions, medians per call")
    print(f"{'case':<38}{'median':>12}{'ratio':>10}")
    for name, value in med.items():
        print(f"{name:<38}{value * 1e6:>10.0f}µs{value / med['raw POST']:>9.2f}x")
    over = med["action instance"] - med["raw POST"]
    alone = med["action instance"] - med["noop instance"] - med["raw POST"]
    per_rep = [a - r for a, r in zip(cases["action instance"], cases["raw POST"])]
    print(f"{'overhead: action - raw POST':<38}{over * 1e6:>10.0f}µs   (target <= 1000µs; "
          f"{min(per_rep) * 1e6:.0f}-{max(per_rep) * 1e6:.0f}µs over the repetitions)")
    print(f"{'overhead: action - noop - raw POST':<38}{alone * 1e6:>10.0f}µs")


if __name__ == "__main__":
    main()
