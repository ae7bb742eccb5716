"""Benchmark: files in and out of an action folder, against ``tar`` on the same data.

    python benchmarks/bench_files.py [--mb 100] [--runs 3] [--tmp DIR]

What it measures (PERFORMANCE.md, "files"):

* **in**: a tar.gz variable of ``--mb`` MB (unpacked) into an action folder.
  Floor: ``tar -xzf`` of the same file.  isolde rows: ``files.extract`` from
  the file, and the real path, ``ActionFolder.write_files`` reading the value
  as a stream the store opens (``store.open(ref)``; a value this large is a
  blob file beside LMDB, see core/store.py "Large values").
* **out**: a ``--mb`` MB directory in ``out/instance/`` back as one value.
  Floor: ``tar -czf`` (gzip level 6, as ``pack_dir``).  isolde rows:
  ``ActionFolder.collect_outputs`` (a staged tar.gz), and the same plus the
  durable store put of ``Output.view()`` (blob file written from the mmap,
  then one LMDB transaction).

Every isolde case runs in a fresh subprocess that reports its wall time for
the operation and its peak memory above the baseline taken just before:
``VmHWM`` (peak resident, including file pages mapped by LMDB or by an mmap)
and the peak of ``RssAnon`` (heap only; sampled every 2 ms).  Times are
medians of ``--runs``; the ratio is isolde / tar.  All data lives in a
temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- data


def make_tree(root: Path, total_mb: int, seed: int = 7) -> None:
    """About ``total_mb`` MB in a small tree of mixed files: half random bytes,
    half repetitive text, so gzip gets roughly 2:1, like real build output."""
    rng = random.Random(seed)
    total = total_mb << 20
    written = 0
    i = 0
    line = b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % n for n in range(64))
    while written < total:
        d = root / f"d{i % 8}" / f"s{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = min(total - written, rng.choice((4 << 10, 64 << 10, 512 << 10, 2 << 20)))
        half = size // 2
        data = rng.randbytes(half) + (line * (size // len(line) + 1))[: size - half]
        (d / f"f{i:05d}.bin").write_bytes(data)
        written += size
        i += 1


# --------------------------------------------------------------------------- child side


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1]) * 1024
    return 0


class _AnonPeak:
    """Samples RssAnon; VmHWM has no heap-only counterpart."""

    def __init__(self) -> None:
        self.peak = _status("RssAnon")
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _status("RssAnon"))

    def __enter__(self) -> _AnonPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _status("RssAnon"))


def _reset_hwm() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def child(case: str, work: Path) -> dict[str, Any]:
    from isolde.files import ActionFolder, ArchiveLimits, FileSpec, extract
    from isolde.store import LmdbStore, Put, Ref

    limits = ArchiveLimits()
    big = 1 << 40
    tgz = work / "in.tgz"
    ref = Ref("bench", "namespace", "", "tree")
    store = LmdbStore(str(work / "db"), durable=True) if case in ("in-store", "out-store") else None
    folder = ActionFolder(base=str(work), limits=limits, max_variable_bytes=big)
    try:
        if case.startswith("out"):
            shutil.copytree(work / "tree", folder.path / "out" / "namespace" / "tree")
        _reset_hwm()
        hwm0 = _status("VmHWM")
        anon0 = _status("RssAnon")
        with _AnonPeak() as anon:
            t0 = time.perf_counter()
            if case == "in-file":
                with open(tgz, "rb") as f:
                    extract(f, folder.path / "tree", gzip=True, limits=limits)
            elif case == "in-store":
                assert store is not None
                folder.write_files([FileSpec("tree", "namespace", None, "tar.gz")], lambda s, k: store.open(ref))
            elif case == "out":
                outs = folder.collect_outputs()
            elif case == "out-store":
                assert store is not None
                outs = folder.collect_outputs()
                view = outs[0].view()
                store.write([Put(ref, view, outs[0].mime)])
                del view
            else:
                raise SystemExit(f"unknown case {case}")
            elapsed = time.perf_counter() - t0
        hwm1 = _status("VmHWM")
        return {"time": elapsed, "hwm": hwm1 - hwm0, "anon": anon.peak - anon0}
    finally:
        folder.close()
        if store is not None:
            store.close()


# --------------------------------------------------------------------------- parent side


def run_child(case: str, work: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--tmp", str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="where to put the data (default: system temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.tmp))))
        return
    if not shutil.which("tar"):
        raise SystemExit("tar not found: the floor needs GNU tar")

    work = Path(tempfile.mkdtemp(prefix="isolde-bench-files-", dir=args.tmp))
    try:
        tree = work / "tree"
        tree.mkdir()
        make_tree(tree, args.mb)
        subprocess.run(["tar", "-czf", str(work / "in.tgz"), "-C", str(tree), "."], check=True)
        tgz_size = (work / "in.tgz").stat().st_size

        from isolde.store import LmdbStore, Put, Ref

        with LmdbStore(str(work / "db"), durable=True) as store:
            store.write([Put(Ref("bench", "namespace", "", "tree"), (work / "in.tgz").read_bytes(), "application/gzip")])

        rows: dict[str, list[dict[str, Any]]] = {}
        floors: dict[str, list[float]] = {"in": [], "out": []}
        for _ in range(args.runs):
            dest = work / "tar-x"
            dest.mkdir()
            floors["in"].append(timed(["tar", "-xzf", str(work / "in.tgz"), "-C", str(dest)]))
            shutil.rmtree(dest)
            floors["out"].append(timed(["tar", "-czf", str(work / "tar-c.tgz"), "-C", str(tree), "."]))
            os.unlink(work / "tar-c.tgz")
            for case in ("in-file", "in-store", "out", "out-store"):
                rows.setdefault(case, []).append(run_child(case, work))

        mb = 1 << 20
        print(f"files benchmark: {args.mb} MB tree, tar.gz {tgz_size / mb:.1f} MB, median of {args.runs} runs")
        print()
        print(f"{'case':<46} {'time s':>8} {'tar s':>7} {'ratio':>6} {'VmHWM +MB':>10} {'heap +MB':>9}")
        labels = {
            "in-file": ("in", "extract(file) -> folder"),
            "in-store": ("in", "write_files(store.open) -> folder"),
            "out": ("out", "collect_outputs() -> staged tar.gz"),
            "out-store": ("out", "collect_outputs() + durable store put"),
        }
        for case, samples in rows.items():
            kind, label = labels[case]
            t = statistics.median(s["time"] for s in samples)
            floor = statistics.median(floors[kind])
            hwm = max(s["hwm"] for s in samples) / mb
            anon = max(s["anon"] for s in samples) / mb
            print(f"{kind + ': ' + label:<46} {t:8.3f} {floor:7.3f} {t / floor:6.2f} {hwm:10.1f} {anon:9.1f}")
        print()
        print("memory columns: worst run; VmHWM counts file pages an mmap keeps resident (Output.view()),")
        print("heap is RssAnon (sampled).  Target: <= 64 MB above baseline, time <= 1.5 x tar.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
