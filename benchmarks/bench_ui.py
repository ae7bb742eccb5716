"""The web UI: how long each page takes to load with many instances and variables.

Run:  python benchmarks/bench_ui.py [--instances 10000] [--variables 1000] [--reps 5]

``isolde serve`` runs as its own process on a temp folder (``[daemon] keep_instances`` raised
so every instance is kept); this process starts ``--instances`` instances through the API
(four keep-alive clients, ``?wait=true``), writes ``--variables`` namespace variables and as
many workflow variables, then opens each page in headless Chromium (Debian's ``chromium``,
driven by Playwright) ``--reps`` times and prints the median of:

* **load**: a fresh document (``page.goto``) until the page has drawn everything it shows,
  counted from the navigation's start (HTML, CSS, scripts, every API call, the DOM);
* **switch**: arriving from another page of the UI (a hash change) until drawn.

"Drawn" is the UI's own mark (``performance.measure("isolde:page:<name>")``, set when the
page's data is in the DOM).  Target (issue 13): every page under 300 ms on this machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

FLOWS = {
    "fails.yaml": "direktiv_api: workflow/v1\nstates:\n- id: boom\n  type: error\n  error: bench.boom\n  message: boom\n",
    "quick.yaml": "direktiv_api: workflow/v1\nstates:\n- id: a\n  type: noop\n  transform:\n    n: jq(.n)\n",
    "greet.yaml": """direktiv_api: workflow/v1
states:
- id: check
  type: switch
  conditions:
  - condition: jq(.name != null)
    transition: greet
  defaultTransition: anonymous
- id: greet
  type: noop
  transform:
    greeting: jq("hello " + .name)
  catch:
  - error: "*"
    transition: anonymous
- id: anonymous
  type: noop
""",
}


def serve(base: Path) -> tuple[subprocess.Popen[bytes], str]:
    root = base / "flows"
    (root / "bench").mkdir(parents=True)
    for name, text in FLOWS.items():
        (root / "bench" / name).write_text(text)
    cfg = base / "isolde.toml"
    cfg.write_text("[daemon]\nkeep_instances = 1000000\nstop_grace = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "serve", str(root), "--data-dir", str(base / "data"),
                             "--config", str(cfg), "--api", "127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode()
        if "daemon ready" in line:
            url = next(p[4:] for p in line.split() if p.startswith("api="))
            threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()  # drain
            return proc, url
    raise SystemExit("isolde serve did not start")


def fill(url: str, instances: int, variables: int) -> str:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    left = list(range(instances))
    lock = threading.Lock()
    last: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                if not left:
                    break
                n = left.pop()
            wf = "fails" if n % 100 == 1 else "greet" if n % 10 == 0 else "quick"
            conn.request("POST", f"/api/namespaces/bench/workflows/{wf}/instances?wait=true", json.dumps({"n": n, "name": "x"}))
            r = conn.getresponse()
            body = json.loads(r.read())
            assert r.status == 200, body
            last[:] = [body["id"]]
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    for scope in ("", "/workflows/quick"):
        for n in range(variables):
            conn.request("PUT", f"/api/namespaces/bench{scope}/variables/var{n:05d}", json.dumps({"n": n, "pad": "x" * 100}),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status in (200, 201)
    conn.close()
    print(f"filled: {instances} instances in {took:.1f} s, {variables} namespace + {variables} workflow variables", flush=True)
    return last[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--variables", type=int, default=1_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        proc, url = serve(Path(tmp))
        try:
            iid = fill(url, args.instances, args.variables)
            pages = [
                ("namespaces", "/"),
                ("workflows", "/ns/bench"),
                ("instances", "/ns/bench/instances"),
                ("instances, failed only", "/ns/bench/instances?status=failed"),
                ("instances, page 100", "/ns/bench/instances?offset=4950"),
                ("instance", f"/ns/bench/i/{iid}"),
                ("namespace variables", "/ns/bench/variables"),
                ("workflow (graph + variables)", "/ns/bench/wf/quick"),
                ("events", "/ns/bench/events"),
            ]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                page = browser.new_page()
                results: dict[str, tuple[list[float], list[float], int]] = {}
                for _ in range(args.reps):
                    for name, hash_ in pages:
                        loads, switches, _rows = results.setdefault(name, ([], [], 0))
                        page.goto("about:blank")
                        page.goto(f"{url}/ui/#{hash_}")
                        page.wait_for_selector("body[data-ready]:not([data-ready='error'])")
                        loads.append(_mark(page)[1])
                        rows = page.evaluate("document.querySelectorAll('main tr').length")
                        page.evaluate("delete document.body.dataset.ready; location.hash = '#/nowhere'")
                        page.wait_for_selector("body[data-ready='error']")
                        page.evaluate(f"delete document.body.dataset.ready; location.hash = {json.dumps('#' + hash_)}")
                        page.wait_for_selector("body[data-ready]:not([data-ready='error'])")
                        switches.append(_mark(page)[0])
                        results[name] = (loads, switches, rows)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"\n{args.instances} instances, {args.variables} variables per scope; median of {args.reps}, ms")
    print(f"| page | load | switch | table rows in the DOM |\n| --- | --- | --- | --- |")
    for name, (loads, switches, rows) in results.items():
        print(f"| {name} | {statistics.median(loads):.0f} | {statistics.median(switches):.0f} | {rows} |")


def _mark(page: Any) -> tuple[float, float]:
    """(the last page's own duration, its end since the navigation started), in ms."""
    e = page.evaluate("(() => { const m = performance.getEntriesByType('measure').filter(x => x.name.startsWith('isolde:page:'));"
                      " const e = m[m.length - 1]; return [e.duration, e.startTime + e.duration]; })()")
    return float(e[0]), float(e[1])


if __name__ == "__main__":
    main()
