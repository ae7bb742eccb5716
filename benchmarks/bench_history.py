"""The cost of instance history: the same engine setup with ``[history] enabled`` on and off,
alternating blocks of instances in one process; the minimum CPU time per instance of each,
and the wall-clock time (what ``bench_core.py`` measures: a durable instance waits for its
commit's fsync).

    python benchmarks/bench_history.py                 # counter, durable and fast store; chain100
    python benchmarks/bench_history.py --blocks 30 --size 100
    python benchmarks/bench_history.py --long 40000    # the background writer's share (retention)

The machines are shared and noisy: the minimum over many short alternating blocks is the
figure least moved by other work.  (For a comparison with the code before history, run
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import COUNTER, chain_yaml  # noqa: E402


def measure(case: str, blocks: int, size: int) -> tuple[dict[bool, float], dict[bool, list[float]]]:
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
            engine.run(wf)
            engines[on] = (engine, wf)
        best = {True: float("inf"), False: float("inf")}
        wall: dict[bool, list[float]] = {True: [], False: []}
        try:
            for _ in range(blocks):
                for on, (engine, wf) in engines.items():
                    start, t = time.process_time(), time.perf_counter()
                    for _ in range(size):
                        engine.run(wf)
                    wall[on].append((time.perf_counter() - t) / size)
                    best[on] = min(best[on], (time.process_time() - start) / size)
        finally:
            for engine, _ in engines.values():
                engine.close()
    return best, wall


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
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--long", type=int, default=0, metavar="N",
                    help="instead: one long run of N fast-store counter instances, history on (retention's cost)")
    args = ap.parse_args()
    if args.long:
        long_run(args.long)
        return
    print("CPU: the minimum over the blocks; wall clock (what the counter and chain benchmarks time):")
    print("the median of the blocks, and on / off as the median and range of the adjacent pairs' ratios")
    print("| case | CPU off | CPU on | CPU on / off | wall off | wall on | wall on / off |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in ("counter (durable)", "counter, fast store", "chain100"):
        size = max(1, args.size // 10) if case == "chain100" else args.size
        got, wall = measure(case, args.blocks, size)
        unit = 100 if case == "chain100" else 1
        what = "µs / state" if case == "chain100" else "µs / instance"
        pairs = sorted(a / b for a, b in zip(wall[True], wall[False]))
        w_on, w_off = statistics.median(wall[True]), statistics.median(wall[False])
        print(f"| {case} | {got[False] / unit * 1e6:.1f} {what} | {got[True] / unit * 1e6:.1f} | {got[True] / got[False]:.2f} "
              f"| {w_off / unit * 1e6:.1f} | {w_on / unit * 1e6:.1f} | {statistics.median(pairs):.2f} "
              f"({pairs[0]:.2f}-{pairs[-1]:.2f}) |")


if __name__ == "__main__":
    main()
