"""The counter on PostgreSQL beside the same counter on LMDB, in one run.

    python benchmarks/bench_postgres.py [--url postgresql://...] [--runs 200] [--reps 3]

``examples/counter.yaml`` through ``Engine.run``, sequentially, on LMDB and on a
PostgreSQL store (a scratch schema, dropped afterwards), durable and fast,
alternating the stores each repetition; prints the median runs/s.  Not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

import isolde

COUNTER = Path(__file__).parent.parent / "examples" / "counter.yaml"


def rate(config: dict[str, Any], runs: int) -> float:
    with tempfile.TemporaryDirectory() as d, isolde.Engine(data_dir=d, config={"sidecar": {"port": 0}, **config}) as engine:
        wf = engine.load(COUNTER)
        engine.run(wf)
        t = time.perf_counter()
        for _ in range(runs):
            engine.run(wf)
        return runs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    schema = f"isolde_bench_{secrets.token_hex(4)}"
    with psycopg.connect(a.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{a.url}{'&' if '?' in a.url else '?'}options=-csearch_path%3D{schema}"
    cases: dict[str, dict[str, Any]] = {
        "lmdb durable": {}, "postgres durable": {"store": {"url": url}},
        "lmdb fast": {"store": {"durability": "fast"}}, "postgres fast": {"store": {"url": url, "durability": "fast"}},
    }
    seen: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(a.reps):
            for name, config in cases.items():
                seen[name].append(rate(config, a.runs))
    finally:
        with psycopg.connect(a.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print("| case | counter runs/s (median) |\n| --- | --- |")
    for name, rates in seen.items():
        print(f"| {name} | {statistics.median(rates):.0f} |")


if __name__ == "__main__":
    main()
