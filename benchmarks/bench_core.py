"""Core benchmarks (PERFORMANCE.md): every isolde case against its floor, in one run.

    python benchmarks/bench_core.py            # full run, a few minutes at most
    python benchmarks/bench_core.py --quick    # smaller counts, for a smoke check
    python benchmarks/bench_core.py --only counter chain

The machines are shared and noisy, so no absolute figure means much on its own:
each case is measured beside its *floor* -- the same work done directly with the
building blocks (raw ``lmdb`` + compiled ``jq`` + ``json``) -- alternating the two,
several repetitions, and the table shows medians and the ratio.  Benchmarks are
not tests: nothing here asserts a timing.

Cases
-----
counter         the seed's counter (examples/counter.yaml) run sequentially through
                ``Engine.run(path)``, durable store.  Floor: one read transaction, the
                compiled ``.var.x += 1``, one durable write transaction (sync +
                metasync, the store's own flags), JSON in and out.
counter-fast    the same with ``[store] durability = "fast"``; floor without syncs.
counter-8thr    8 threads sharing one engine, durable store; compared with the
                sequential isolde rate (commits are batched, never skipped).
chainN          N noop states, each with the transform ``.i += 1``, in transitions/s.
                Floor: a dict lookup to dispatch plus the compiled program per step.
                Shown for N = 10, 100, 1000 to show the per-state cost stays flat.
cold-cli        ``isolde run examples/counter.yaml`` as a new process, wall time
                median; floor: ``python -c "import yaml, jq, lmdb, lark, pluggy,
                watchdog"``.  Bytecode is allowed (PYTHONDONTWRITEBYTECODE is dropped
                for the children, as for a user whose pip compiled it at install).

``--metrics`` makes every engine keep its Prometheus metrics (``engine.metrics``, as
``isolde serve`` does), to show the cost of counting on the hot path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jq
import lmdb

import isolde

REPO = Path(__file__).resolve().parents[1]
COUNTER = REPO / "examples" / "counter.yaml"
STEP = ".i += 1"


@dataclass
class Row:
    name: str
    unit: str
    isolde: float
    floor: float
    higher_is_better: bool
    target: float  # the ratio to meet
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.isolde / self.floor

    @property
    def met(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def rate(fn: Callable[[], None], n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def paired(isolde_fn: Callable[[], float], floor_fn: Callable[[], float], reps: int) -> tuple[float, float]:
    """Alternate the two measurements ``reps`` times; medians of each."""
    a, b = [], []
    for _ in range(reps):
        a.append(isolde_fn())
        b.append(floor_fn())
    return statistics.median(a), statistics.median(b)


# -- counter -------------------------------------------------------------------------------------


class CounterFloor:
    """The counter done by hand: what no engine can beat on this machine."""

    def __init__(self, path: Path, durable: bool) -> None:
        self.env = lmdb.open(
            str(path), map_size=64 << 20, subdir=True, sync=durable, metasync=durable,
            max_dbs=4, max_readers=512, max_spare_txns=4,
        )
        self.db = self.env.open_db(b"vars")
        self.key = b"default\x00w\x00counter\x00x"
        self.program = jq.compile(".var.x += 1")

    def once(self) -> None:
        with self.env.begin(db=self.db) as txn:
            raw = txn.get(self.key)
        x = None if raw is None else json.loads(raw)
        out = self.program.input_value({"var": {"x": x}}).first()
        with self.env.begin(write=True, db=self.db) as txn:
            txn.put(self.key, json.dumps(out["var"]["x"]).encode())

    def close(self) -> None:
        self.env.close()


METRICS = False  # --metrics: every engine counts its Prometheus metrics, as under `isolde serve`


def new_engine(**kw: object) -> isolde.Engine:
    engine = isolde.Engine(**kw)  # type: ignore[arg-type]
    if METRICS:
        engine.metrics  # made on first use: from now on every state, commit and instance is counted
    return engine


def bench_counter(tmp: Path, reps: int, scale: float, durable: bool) -> Row:
    n = max(20, int((400 if durable else 2500) * scale))
    config = {} if durable else {"store": {"durability": "fast"}}
    floor = CounterFloor(tmp / f"floor-{durable}", durable)
    with new_engine(data_dir=tmp / f"isolde-{durable}", config=config) as engine:
        engine.run(COUNTER)
        floor.once()
        got = paired(lambda: rate(lambda: engine.run(COUNTER), n), lambda: rate(floor.once, n), reps)
    floor.close()
    if durable:
        return Row("counter (durable)", "instances/s", *got, True, 0.70)
    return Row("counter, fast store", "instances/s", *got, True, 0.50)


def bench_threads(tmp: Path, reps: int, scale: float, sequential: float | None) -> Row:
    threads, per = 8, max(10, int(60 * scale))

    def run_threaded(engine: isolde.Engine) -> float:
        pool = [threading.Thread(target=lambda: [engine.run(COUNTER) for _ in range(per)]) for _ in range(threads)]
        start = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return threads * per / (time.perf_counter() - start)

    with new_engine(data_dir=tmp / "threads", config={}) as engine:
        engine.run(COUNTER)
        if sequential is None:
            got = paired(lambda: run_threaded(engine), lambda: rate(lambda: engine.run(COUNTER), threads * per), reps)
        else:
            got = (statistics.median(run_threaded(engine) for _ in range(reps)), sequential)
        kept = engine.variables.value("x", scope="workflow", workflow="counter")
    total = 1 + reps * threads * per + (0 if sequential is not None else reps * threads * per)
    note = f"floor = isolde sequential; {total - kept} of {total} updates lost (plain getter/setter)"
    return Row("counter, 8 threads (durable)", "instances/s", *got, True, 1.0, note)


# -- chain ---------------------------------------------------------------------------------------


def chain_yaml(length: int) -> str:
    lines = [f"id: chain{length}", "states:"]
    for i in range(length):
        lines += [f"- id: s{i}", "  type: noop", f"  transform: '{STEP}'"]
        if i + 1 < length:
            lines.append(f"  transition: s{i + 1}")
    return "\n".join(lines) + "\n"


def chain_floor(length: int) -> Callable[[], None]:
    """Dispatch by id and one compiled program per state, as an interpreter's inner loop must."""
    program = jq.compile(STEP)
    states = {f"s{i}": (program, f"s{i + 1}" if i + 1 < length else None) for i in range(length)}

    def once() -> None:
        data: dict[str, object] = {}
        nxt: str | None = "s0"
        while nxt is not None:
            prog, nxt = states[nxt]
            data = prog.input_value(data).first()

    return once


def bench_chain(tmp: Path, reps: int, scale: float, length: int) -> Row:
    runs = max(3, int(20_000 * scale) // length)
    floor = chain_floor(length)
    with new_engine(data_dir=tmp / f"chain{length}", config={"limits": {"max_steps": length + 1}}) as engine:
        wf = engine.load(chain_yaml(length))
        assert engine.run(wf).output == {"i": length}
        got = paired(lambda: rate(lambda: engine.run(wf), runs) * length, lambda: rate(floor, runs) * length, reps)
    target = 0.50 if length == 100 else 0.0
    note = f"{1e6 / got[0]:.1f} µs/state isolde, {1e6 / got[1]:.1f} µs/state floor"
    return Row(f"chain{length}", "transitions/s", *got, True, target, note)


# -- cold CLI ------------------------------------------------------------------------------------


def wall(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()}")
    return elapsed


def bench_cold_cli(tmp: Path, reps: int) -> Row:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["ISOLDE_DATA_DIR"] = str(tmp / "cold")
    script = Path(sys.executable).with_name("isolde")
    isolde_cmd = [str(script)] if script.exists() else [sys.executable, "-m", "isolde.cli"]
    isolde_cmd += ["run", str(COUNTER)]
    floor_cmd = [sys.executable, "-c", "import yaml, jq, lmdb, lark, pluggy, watchdog"]
    cwd = tmp  # no isolde.toml / pyproject.toml to find there
    for _ in range(2):  # bytecode, page cache, the grammar cache
        wall(isolde_cmd, env, cwd)
        wall(floor_cmd, env, cwd)
    n = max(reps * 2, 10)
    got = paired(lambda: wall(isolde_cmd, env, cwd) * 1000, lambda: wall(floor_cmd, env, cwd) * 1000, n)
    bare = statistics.median(wall([sys.executable, "-c", "pass"], env, cwd) * 1000 for _ in range(5))
    return Row("cold CLI run", "ms", *got, False, 2.0, f"python -c pass: {bare:.0f} ms; median of {n}")


# -- table ---------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ("benchmark", "unit", "isolde", "floor", "ratio", "target", "met")
    body = []
    for r in rows:
        fmt = "{:,.0f}" if r.unit != "ms" else "{:,.1f}"
        if r.target:
            target = (">= " if r.higher_is_better else "<= ") + f"{r.target:.2f}"
            met = "yes" if r.met else "NO"
        else:
            target, met = "(flat)", "-"
        body.append((r.name, r.unit, fmt.format(r.isolde), fmt.format(r.floor), f"{r.ratio:.2f}", target, met))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    notes = [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(out + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case (medians are shown)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations, 3 repetitions")
    parser.add_argument("--only", nargs="*", default=None, help="cases to run: counter fast threads chain cold")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (on the disk to measure)")
    parser.add_argument("--metrics", action="store_true", help="engines count Prometheus metrics (engine.metrics), as under isolde serve")
    args = parser.parse_args(argv)
    global METRICS
    METRICS = args.metrics
    scale = 0.1 if args.quick else 1.0
    reps = 3 if args.quick else args.reps
    only = set(args.only or ["counter", "fast", "threads", "chain", "cold"])

    tmp = Path(tempfile.mkdtemp(prefix="isolde-bench-", dir=args.dir))
    rows: list[Row] = []
    try:
        print(f"isolde {isolde.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"scratch {tmp}; {reps} repetitions", file=sys.stderr)
        sequential = None
        if "counter" in only:
            rows.append(bench_counter(tmp, reps, scale, durable=True))
            sequential = rows[-1].isolde
        if "fast" in only:
            rows.append(bench_counter(tmp, reps, scale, durable=False))
        if "threads" in only:
            rows.append(bench_threads(tmp, reps, scale, sequential))
        if "chain" in only:
            for length in (10, 100, 1000):
                rows.append(bench_chain(tmp, reps, scale, length))
        if "cold" in only:
            rows.append(bench_cold_cli(tmp, reps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows))


if __name__ == "__main__":
    main()
