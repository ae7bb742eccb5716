"""The cost of instance history: the same engine setup with ``[history] enabled`` on and off,
alternating blocks of instances in one process, after both stores ran past ``keep``
instances (the retention at work, the history's keys at their full depth).  Each block ends
with ``history.flush()``, so the background writer's work is counted: CPU time of every
thread and wall-clock time (what ``bench_core.py`` measures: a durable instance waits for
its commit's fsync) per instance.

    python benchmarks/bench_history.py                 # counter, durable and fast store; chain100
    python benchmarks/bench_history.py --blocks 12 --size 500
    python benchmarks/bench_history.py --long 40000    # the background writer's share (retention)

The machines are shared and noisy: the ratios are taken between adjacent blocks, and their
median is shown with their range.  (An earlier version took the minimum over short blocks,
which left out the background writer and ran before the retention did: it understated
history's cost in a long run.)  (For a comparison with the code before history, run
``bench_core.py`` from a worktree of the older commit beside this one.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import isolde
from isolde.history.service import RETAIN_BATCH

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import COUNTER, chain_yaml  # noqa: E402


def measure(case: str, blocks: int, size: int) -> tuple[dict[bool, list[float]], dict[bool, list[float]]]:
    """Per block, for history on and off in turn: CPU time per instance (every thread of the
    process) and wall-clock time per instance, each block ending with ``history.flush()``
    so that the background writer's work on it is counted.  Both stores are warmed up past
    ``keep`` first: the retention runs and the history's keys have their full depth, as on
    any machine that has run more than a thousand instances."""
    engines = {}
    with tempfile.TemporaryDirectory() as tmp:
        for on in (True, False):
            config: dict = {"history": {"enabled": on}}
            if case == "counter, fast store":
                config["store"] = {"durability": "fast"}
            if case == "chain100":
                config["limits"] = {"max_steps": 101}
            engine = isolde.Engine(data_dir=Path(tmp) / str(on), config=config)
            wf = engine.load(chain_yaml(100) if case == "chain100" else COUNTER)
            for _ in range(engine.history.settings.keep + 2 * RETAIN_BATCH):
                engine.run(wf)
            engine.history.flush()
            engines[on] = (engine, wf)
        cpu: dict[bool, list[float]] = {True: [], False: []}
        wall: dict[bool, list[float]] = {True: [], False: []}
        try:
            for _ in range(blocks):
                for on, (engine, wf) in engines.items():
                    start, t = time.process_time(), time.perf_counter()
                    for _ in range(size):
                        engine.run(wf)
                    engine.history.flush()
                    wall[on].append((time.perf_counter() - t) / size)
                    cpu[on].append((time.process_time() - start) / size)
        finally:
            for engine, _ in engines.values():
                engine.close()
    return cpu, wall


def long_run(n: int) -> None:
    """The fast-store counter with history on for ``n`` instances (after 3,000): CPU time per
    instance, the background writer's share (its rounds: retention deletes and rescans), and
    the records kept once it caught up (``keep`` is 1,000)."""
    from isolde.history import HistoryService

    spent = [0.0]
    round_ = HistoryService._round

    def timed(self: HistoryService, *, poll: bool) -> None:
        start = time.thread_time()
        try:
            round_(self, poll=poll)
        finally:
            spent[0] += time.thread_time() - start

    HistoryService._round = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        with isolde.Engine(data_dir=Path(tmp), config={"store": {"durability": "fast"}}) as engine:
            wf = engine.load(COUNTER)
            for _ in range(3000):
                engine.run(wf)
            spent[0] = 0.0
            start = time.process_time()
            for _ in range(n):
                engine.run(wf)
            cpu = time.process_time() - start
            engine.history.flush()
            engine.history.flush()
            kept = len(engine.store.list("default", "instance", "~isolde-history"))
    print(f"| {n} instances | {cpu / n * 1e6:.1f} µs CPU / instance | background writer {spent[0] / n * 1e6:.2f} µs "
          f"| records kept {kept} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--size", type=int, default=500, help="instances per block (chain100: a tenth)")
    ap.add_argument("--long", type=int, default=0, metavar="N",
                    help="instead: one long run of N fast-store counter instances, history on (retention's cost)")
    args = ap.parse_args()
    if args.long:
        long_run(args.long)
        return
    print("Medians over the blocks (each block ends with the background writer's work on it), and")
    print("on / off as the median and range of the adjacent blocks' ratios:")
    print("| case | CPU off | CPU on | CPU on / off | wall off | wall on | wall on / off |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in ("counter (durable)", "counter, fast store", "chain100"):
        size = max(1, args.size // 10) if case == "chain100" else args.size
        cpu, wall = measure(case, args.blocks, size)
        unit = 100 if case == "chain100" else 1
        what = "µs / state" if case == "chain100" else "µs / instance"
        row = [f"| {case} "]
        for got in (cpu, wall):
            pairs = sorted(a / b for a, b in zip(got[True], got[False]))
            on, off = statistics.median(got[True]), statistics.median(got[False])
            row.append(f"| {off / unit * 1e6:.1f}{' ' + what if got is cpu else ''} | {on / unit * 1e6:.1f} "
                       f"| {statistics.median(pairs):.2f} ({pairs[0]:.2f}-{pairs[-1]:.2f}) ")
        print("".join(row) + "|")


if __name__ == "__main__":
    main()
