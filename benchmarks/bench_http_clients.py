"""Why the isolate connection pool is http.client, not urllib3: client CPU per call, side by side.

Run:  pip install urllib3 && python benchmarks/bench_http_clients.py [--calls N] [--reps R]

Issue 9 asked to move the isolate pool onto a library made for it unless a side-by-side
benchmark showed a cost above 10 %.  Both clients POST the same small action request over
one kept-alive connection to the same trivial isolate (a stdlib HTTP/1.1 server in another
process); what is measured is the *client's* CPU time per call (``time.process_time``), which
is what isolde adds to every action, independent of how loaded the machine is.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r'''
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''
HEADERS = {"Content-Type": "application/json", "Direktiv-ActionID": "x" * 22, "Direktiv-InstanceID": "0" * 36,
           "Direktiv-Namespace": "default", "Direktiv-Step": "1", "Direktiv-Deadline": "2030-01-01T00:00:00Z"}
BODY = b'{"n":1}'


def stdlib(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t = time.process_time()
    for _ in range(n):
        conn.request("POST", "/", BODY, HEADERS)
        conn.getresponse().read()
    conn.close()
    return (time.process_time() - t) / n


def pooled(pool: object, n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        pool.request("POST", "/", body=BODY, headers=HEADERS)  # type: ignore[attr-defined]
    return (time.process_time() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    import urllib3

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "server.py"
        script.write_text(SERVER)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PORT": str(port)})
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=8, retries=False)
            a: list[float] = []
            b: list[float] = []
            for _ in range(args.reps):
                a.append(stdlib(port, args.calls))
                b.append(pooled(pool, args.calls))
        finally:
            server.terminate()
            server.wait(10)
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"client CPU per call, median of {args.reps} x {args.calls} calls")
    print(f"{'http.client (isolde)':<24}{ma * 1e6:>8.0f}µs")
    print(f"{'urllib3 pool':<24}{mb * 1e6:>8.0f}µs   {mb / ma:.2f}x")


if __name__ == "__main__":
    main()
