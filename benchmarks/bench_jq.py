"""The guarded jq path: what a per-request deadline costs with 8 concurrent guarded programs.

    python benchmarks/bench_jq.py              # ~1 minute
    python benchmarks/bench_jq.py --quick      # a smoke check
    python benchmarks/bench_jq.py --reps 5 --requests 300

Guarded programs (``def``, ``range``, regexes, ``*``, ...) run in killable worker processes, each
request under its own deadline counted from the request (waiting for a free worker included);
``[limits] jq_workers`` sets how many workers run at once.  Every case runs 8 threads that each
send ``--requests`` requests through one ``JqRuntime``; rows alternate within each repetition and
the table shows medians over the repetitions.

Cases
-----
in-process floor   the same program compiled by the ``jq`` binding and run in-process by 8
                   threads: no worker, no deadline (what the guard costs is measured above it).
8 quick            8 threads running a quick guarded program (``[range(.n)] | length``), with
                   pool size 1 and with the default; requests/s and latency percentiles.
1 slow + 7 quick   one thread runs a slow guarded program (~20-50 ms) in a loop, 7 threads run
                   the quick one: the quick ones' latency shows whether they queue behind it.

Benchmarks are not tests: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import jq

from isolde.jqexpr import JqRuntime
from isolde.jqexpr.runtime import DEFAULT_WORKERS

QUICK = "[range(.n)] | length"
SLOW = "[range(.n)] | length"
QUICK_DATA = {"n": 10}
SLOW_DATA = {"n": 100_000}
THREADS = 8


def _drive(jobs: list[Callable[[], Any]], requests: int, timed: list[bool]) -> tuple[float, list[float]]:
    """Run each job ``requests`` times on its own thread; (requests/s of timed jobs, latencies)."""
    barrier = threading.Barrier(len(jobs) + 1)
    latencies: list[list[float]] = [[] for _ in jobs]
    stop = threading.Event()

    def worker(i: int) -> None:
        job, lat = jobs[i], latencies[i]
        barrier.wait()
        if timed[i]:
            for _ in range(requests):
                t0 = time.perf_counter()
                job()
                lat.append(time.perf_counter() - t0)
        else:  # background load: runs until the timed jobs are done
            while not stop.is_set():
                job()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t, is_timed in zip(threads, timed):
        if is_timed:
            t.join()
    elapsed = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    done = [x for lat, is_timed in zip(latencies, timed) if is_timed for x in lat]
    return len(done) / elapsed, done


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are shown)")
    ap.add_argument("--requests", type=int, default=200, help="requests per thread and case")
    ap.add_argument("--quick", action="store_true", help="30 requests per thread, 2 repetitions")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.requests = 2, 30

    runtimes = {1: JqRuntime(workers=1), DEFAULT_WORKERS: JqRuntime(workers=DEFAULT_WORKERS)}
    floor_prog = jq.compile(QUICK)
    cases: list[tuple[str, int | None, Callable[[], tuple[float, list[float]]]]] = []

    def floor() -> tuple[float, list[float]]:
        job = lambda: floor_prog.input_value(QUICK_DATA).first()  # noqa: E731
        return _drive([job] * THREADS, args.requests, [True] * THREADS)

    cases.append(("in-process floor, 8 quick", None, floor))
    for size, rt in runtimes.items():
        quick, slow = rt.compile(QUICK), rt.compile(SLOW + " ")  # two cache entries
        assert quick.guarded and slow.guarded
        for _ in range(size):  # start the workers outside the measurement
            quick.first(QUICK_DATA)

        def eight(q: Any = quick) -> tuple[float, list[float]]:
            job = lambda: q.first(QUICK_DATA)  # noqa: E731
            return _drive([job] * THREADS, args.requests, [True] * THREADS)

        def mixed(q: Any = quick, s: Any = slow) -> tuple[float, list[float]]:
            jobs = [lambda: s.first(SLOW_DATA)] + [lambda: q.first(QUICK_DATA)] * (THREADS - 1)
            return _drive(jobs, args.requests, [False] + [True] * (THREADS - 1))

        cases.append(("8 quick", size, eight))
        cases.append(("1 slow + 7 quick", size, mixed))

    results: dict[tuple[str, int | None], list[tuple[float, float, float]]] = {}
    try:
        for _ in range(args.reps):
            for name, size, fn in cases:
                rps, lat = fn()
                results.setdefault((name, size), []).append((rps, _pct(lat, 0.5), _pct(lat, 0.99)))
    finally:
        for rt in runtimes.values():
            rt.close()

    print(f"{THREADS} threads x {args.requests} requests, {args.reps} repetitions (medians)")
    print("| case | jq_workers | requests/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for (name, size), rows in results.items():
        rps = statistics.median(r[0] for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        p99 = statistics.median(r[2] for r in rows)
        print(f"| {name} | {'-' if size is None else size} | {rps:,.0f} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
