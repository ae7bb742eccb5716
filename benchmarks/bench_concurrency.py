"""Concurrency benchmarks (issue 6): contended counter and group commit.

    python benchmarks/bench_concurrency.py

Prints, for 1, 2, 4 and 8 threads of one engine on the durable store: the plain
counter (Direktiv behaviour, updates may be lost), the counter with ``lock: true``
(exact) and its rate relative to one thread (the lock hand-over lets increments of
one variable share a group commit: target >= 1.5 at 8 threads), and raw durable
writes through the store (group commit); medians of a few repetitions.  Timings
are not asserted anywhere: the machines are noisy.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import isolde
from isolde.store import LmdbStore, Put, Ref

COUNTER = (Path(__file__).resolve().parents[1] / "examples" / "counter.yaml").read_text()
LOCKED = COUNTER.replace("    scope: workflow\n  transform:", "    scope: workflow\n    lock: true\n  transform:")
TOTAL = 800
REPEAT = 3


def in_threads(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    per = TOTAL // n
    pool = [threading.Thread(target=lambda i=i: [fn(i) for _ in range(per)]) for i in range(n)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return per * n / (time.perf_counter() - start)


def counter_rate(text: str, n: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as d, isolde.Engine(data_dir=d, config={}) as engine:
        wf = engine.load(text)
        engine.run(wf)
        rate = in_threads(n, lambda i: engine.run(wf))
        final = engine.variables.value("x", scope="workflow", workflow="counter")
    return rate, final - 1


def write_rate(n: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        store = LmdbStore(d)
        try:
            return in_threads(n, lambda i: store.write([Put(Ref("ns", "namespace", "", f"k{i}"), b"1")]))
        finally:
            store.close()


def main() -> None:
    print(f"{'threads':>7} | {'plain counter/s':>15} {'(kept of ' + str(TOTAL) + ')':>13} | {'locked counter/s':>16} {'(kept)':>7} {'÷ 1 thread':>10} | {'durable writes/s':>16}")
    one = 0.0
    for n in (1, 2, 4, 8):
        plain = [counter_rate(COUNTER, n) for _ in range(REPEAT)]
        locked = [counter_rate(LOCKED, n) for _ in range(REPEAT)]
        writes = [write_rate(n) for _ in range(REPEAT)]
        locked_rate = statistics.median(r for r, _ in locked)
        one = one or locked_rate
        print(
            f"{n:>7} | {statistics.median(r for r, _ in plain):>15.0f} {min(k for _, k in plain):>13} | "
            f"{locked_rate:>16.0f} {min(k for _, k in locked):>7} {locked_rate / one:>10.2f} | "
            f"{statistics.median(writes):>16.0f}"
        )


if __name__ == "__main__":
    main()
