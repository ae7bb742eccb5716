"""Daemon mode: API instance starts per second, and drop-folder latency.

Run:  python benchmarks/bench_daemon.py [--requests N] [--files N] [--reps R]

Every case runs in the same process run, interleaved over several repetitions;
the table shows medians (the machines are shared and noisy).  ``isolde serve``
runs as its own process on a temp folder, the client is this process, using
``http.client`` over keep-alive connections.

Instance starts (a one-``noop`` workflow):

* ``floor: raw http.server + N durable puts`` -- a trivial ``ThreadingHTTPServer``
  (its own process) doing what an instance start must at least do: answer a
  POST after one durable LMDB commit (``?wait=true``: the daemon writes the
  outcome when the instance ends) or two (without wait, the record is also made
  durable before the id is handed out);
* ``engine.run, in-process`` -- the same workflow without HTTP or records;
* ``serve: POST ?wait=true`` -- one client, each request waits for the result;
* ``serve: POST (no wait)`` -- one client, each answer is the 202 with the id;
* ``serve: 4 clients, ?wait=true`` -- four keep-alive connections at once.

Drop folder: time from ``write_bytes`` returning (the file closed) in
``DIR/ns/.vars/`` until the variable reads back from the store (polled every
0.5 ms by this process), against the floor of watchdog delivering the
close-write event to a handler in this process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FLOOR_SERVER = r"""
import json, sys, lmdb
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
env = lmdb.open(sys.argv[1], map_size=1 << 28, sync=True, metasync=True)
n = [0]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n[0] += 1
        key = b"i-%d" % n[0]
        if self.path == "/2":
            with env.begin(write=True) as t:
                t.put(key, b'{"status":"pending"}')
        with env.begin(write=True) as t:
            t.put(key, b'{"status":"complete"}')
        body = json.dumps({"id": key.decode(), "status": "complete", "output": {}, "error": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
"""

WORKFLOW = """\
direktiv_api: workflow/v1
states:
- id: a
  type: noop
  transform:
    ok: true
"""


def _post_loop(port: int, path: str, n: int, expect: int) -> float:
    c = http.client.HTTPConnection("127.0.0.1", port)
    body = b'{"n":1}'
    hdrs = {"Content-Type": "application/json"}
    for _ in range(20):
        c.request("POST", path, body=body, headers=hdrs)
        c.getresponse().read()
    t = time.perf_counter()
    for _ in range(n):
        c.request("POST", path, body=body, headers=hdrs)
        r = c.getresponse()
        r.read()
        if r.status != expect:
            raise SystemExit(f"{path}: status {r.status}")
    rate = n / (time.perf_counter() - t)
    c.close()
    return rate


def _parallel(port: int, path: str, n: int, clients: int) -> float:
    rates: list[float] = []
    t = time.perf_counter()
    threads = [threading.Thread(target=lambda: rates.append(_post_loop(port, path, n // clients, 200))) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return (n // clients * clients) / (time.perf_counter() - t)


class Daemon:
    def __init__(self, root: Path, data: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isolde.cli", "serve", str(root), "--data-dir", str(data), "--api", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode()
            if "daemon ready" in line:
                self.port = int(line.rsplit("api=http://127.0.0.1:", 1)[1].split()[0])
                break
        else:
            raise SystemExit("isolde serve did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _drop_latency(root: Path, data: Path, n: int) -> list[float]:
    from isolde.store import LmdbStore, Ref

    store = LmdbStore(data)
    out = []
    try:
        for i in range(n):
            want = f"v{i}".encode()
            t = time.perf_counter()
            (root / "ns" / ".vars" / f"k{i}").write_bytes(want)
            while True:
                var = store.get(Ref("ns", "namespace", "", f"k{i}"))
                if var is not None and var.data == want:
                    break
                time.sleep(0.0005)
            out.append(time.perf_counter() - t)
            time.sleep(0.01)
    finally:
        store.close()
    return out


def _watchdog_floor(folder: Path, n: int) -> list[float]:
    from watchdog.events import FileClosedEvent
    from watchdog.observers import Observer

    seen = threading.Event()

    class H:
        def dispatch(self, event: object) -> None:
            if isinstance(event, FileClosedEvent):
                seen.set()

    obs = Observer()
    obs.schedule(H(), str(folder), recursive=True, event_filter=[FileClosedEvent])  # type: ignore[arg-type]
    obs.start()
    out = []
    try:
        time.sleep(0.2)
        for i in range(n):
            seen.clear()
            t = time.perf_counter()
            (folder / f"f{i}").write_bytes(b"x")
            seen.wait(5)
            out.append(time.perf_counter() - t)
            time.sleep(0.01)
    finally:
        obs.stop()
        obs.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import isolde

    results: dict[str, list[float]] = {}
    lat: dict[str, list[float]] = {"drop folder -> variable readable": [], "floor: watchdog close event": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "flows"
        (root / "ns" / ".vars").mkdir(parents=True)
        (root / "ns" / "noop.yaml").write_text(WORKFLOW)
        (base / "floor").mkdir()
        floor = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(base / "floor")], stdout=subprocess.PIPE)
        assert floor.stdout is not None
        floor_port = int(floor.stdout.readline())
        d = Daemon(root, base / "data")
        path = "/api/namespaces/ns/workflows/noop/instances"
        try:
            with isolde.Engine(data_dir=base / "engine", config={}) as engine:
                wf = engine.load(root / "ns" / "noop.yaml")
                for rep in range(args.reps):
                    results.setdefault("floor: raw http.server + 1 durable put", []).append(_post_loop(floor_port, "/1", args.requests, 200))
                    results.setdefault("floor: raw http.server + 2 durable puts", []).append(_post_loop(floor_port, "/2", args.requests, 200))
                    t = time.perf_counter()
                    for _ in range(args.requests):
                        engine.run(wf, {"n": 1}, namespace="ns")
                    results.setdefault("engine.run, in-process", []).append(args.requests / (time.perf_counter() - t))
                    results.setdefault("serve: POST ?wait=true", []).append(_post_loop(d.port, path + "?wait=true", args.requests, 200))
                    results.setdefault("serve: POST (no wait)", []).append(_post_loop(d.port, path, args.requests, 202))
                    time.sleep(0.5)  # let the background instances finish
                    results.setdefault("serve: 4 clients, ?wait=true", []).append(_parallel(d.port, path + "?wait=true", args.requests, 4))
                    lat["drop folder -> variable readable"] += _drop_latency(root, base / "data", args.files // args.reps)
                    sub = base / f"w{rep}"
                    sub.mkdir()
                    lat["floor: watchdog close event"] += _watchdog_floor(sub, args.files // args.reps)
        finally:
            d.close()
            floor.terminate()
            floor.wait()
    floors = {"?wait=true": "floor: raw http.server + 1 durable put", "no wait": "floor: raw http.server + 2 durable puts"}
    print(f"\nAPI instance starts ({args.requests} requests x {args.reps} reps, medians; {os.cpu_count()} cpus)")
    print(f"{'case':44} {'per second':>12} {'vs floor':>9}")
    for name, rates in results.items():
        med = statistics.median(rates)
        floor_name = next((f for k, f in floors.items() if k in name), None)
        ratio = f"{med / statistics.median(results[floor_name]):9.2f}" if floor_name else f"{'':9}"
        span = ""
        if floor_name:
            each = [a / b for a, b in zip(rates, results[floor_name])]
            span = f"  ({min(each):.2f}-{max(each):.2f} over the repetitions)"
        if name == "serve: POST ?wait=true":
            span += "  target >= 0.85"
        print(f"{name:44} {med:12,.0f} {ratio}{span}")
    print(f"\nDrop-folder latency ({len(lat['drop folder -> variable readable'])} files)")
    print(f"{'case':44} {'median ms':>10} {'p90 ms':>8} {'max ms':>8}")
    for name, xs in lat.items():
        xs.sort()
        print(f"{name:44} {statistics.median(xs) * 1000:10.2f} {xs[int(len(xs) * 0.9)] * 1000:8.2f} {xs[-1] * 1000:8.2f}")


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main()
