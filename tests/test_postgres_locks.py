"""``lock: true`` on PostgreSQL (plugins/postgres/locks.py) against the real server:
the locks conformance suite, exactness across worker processes, and a dead holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import pg_schema_url, pg_sessions, wait_until

import isolde
from isolde.conformance.locks import LocksConformance
from isolde.plugins.postgres import PostgresLocks, PostgresStore

LOCKED_COUNTER = """
id: locked
states:
- id: get
  type: getter
  variables:
  - key: n
    scope: namespace
    lock: true
  transform: '.var.n += 1'
  transition: set
- id: set
  type: setter
  variables:
  - key: n
    scope: namespace
    value: '.var.n'
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[tuple[str, str]]:
    url, app, drop = pg_schema_url("locks")
    PostgresStore(url).close()  # the tables exist before processes race to make them
    try:
        yield url, app
    finally:
        drop()


@pytest.fixture(scope="module")
def store(pg: tuple[str, str]) -> Iterator[PostgresStore]:
    s = PostgresStore(pg[0])
    yield s
    s.close()


class TestPostgresLocks(LocksConformance):
    @pytest.fixture
    def locks(self, store: PostgresStore) -> Iterator[PostgresLocks]:
        locks = PostgresLocks(store)
        yield locks
        locks.close()


def test_two_lock_services_exclude_each_other_through_the_server(store: PostgresStore) -> None:
    """Two PostgresLocks (as two processes would have) on one key: the second waits in
    the server and gets the lock the moment the first lets it go."""
    a, b = PostgresLocks(store), PostgresLocks(store)
    key = b"ns\x00namespace\x00\x00two"
    try:
        a.acquire("x", [key], 1.0)
        with pytest.raises(isolde.WorkflowError) as ei:
            b.acquire("y", [key], 0.0)
        assert ei.value.code == "isolde.lock.timeout"
        got = threading.Event()
        t = threading.Thread(target=lambda: (b.acquire("y", [key], 60.0), got.set()))
        t.start()
        durable = a.hand_over("x", [key])  # handed over in a's process only: b still waits
        assert not got.is_set()
        durable()
        t.join(60)
        assert got.is_set() and b.holds("y", key)
        b.release("y")
    finally:
        a.close()
        b.close()


def test_hook_isolde_locks(pg: tuple[str, str], data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"store": {"url": pg[0]}}) as engine:
        assert isinstance(engine.locks, PostgresLocks)
        assert engine.run(LOCKED_COUNTER, namespace="pick").output == {"var": {"n": 1}}
    assert not (data_dir / "locks").exists()


WORKER = textwrap.dedent("""
    import sys, isolde
    url, data_dir, runs, workflow = sys.argv[1], sys.argv[2], int(sys.argv[3]), open(sys.argv[4]).read()
    with isolde.Engine(data_dir=data_dir, config={"store": {"url": url}, "limits": {"lock_wait": 120}}) as engine:
        wf = engine.load(workflow)
        engine.locks  # connected before the start signal
        print("ready", flush=True)
        sys.stdin.readline()
        for _ in range(runs):
            res = engine.run(wf, namespace="count4")
            if not res.ok:
                print("failed", res.error, flush=True)
                sys.exit(1)
    print("done", flush=True)
""")


def test_four_worker_processes_count_exactly(pg: tuple[str, str], tmp_path: Path) -> None:
    """4 processes (each its own engine, data directory and connections, like separate
    hosts) x 50 runs of a locked counter end at exactly 200."""
    url = pg[0]
    wf = tmp_path / "locked.yaml"
    wf.write_text(LOCKED_COUNTER)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(tmp_path / f"d{i}"), "50", str(wf)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        start = time.perf_counter()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=300)[0] for p in procs]
        elapsed = time.perf_counter() - start
        assert all(p.returncode == 0 for p in procs), outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    store = PostgresStore(url)
    try:
        var = store.get(isolde.store.Ref("count4", "namespace", "", "n"))
        assert var is not None and var.data == b"200"
    finally:
        store.close()
    print(f"locked counter, 4 processes x 50 runs: {200 / elapsed:.0f} runs/s")


HOLDER = textwrap.dedent("""
    import sys
    from isolde.plugins.postgres import PostgresLocks, PostgresStore
    locks = PostgresLocks(PostgresStore(sys.argv[1]))
    locks.acquire("dying", [b"ns\\x00namespace\\x00\\x00held"], 10.0)
    print("held", flush=True)
    sys.stdin.readline()
""")


def test_a_lock_of_a_killed_worker_is_released_at_once(pg: tuple[str, str], store: PostgresStore) -> None:
    """kill -9 of the holder: the server ends its session with its locks, and the waiter,
    blocked in the server, proceeds (on loopback within moments of the kill)."""
    url, app = pg
    key = b"ns\x00namespace\x00\x00held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    locks = PostgresLocks(store)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waited: list[Any] = []

        def wait() -> None:
            locks.acquire("waiter", [key], 120.0)
            waited.append(time.monotonic())

        before = pg_sessions(app, waiting=True)
        t = threading.Thread(target=wait)
        t.start()
        wait_until(lambda: pg_sessions(app, waiting=True) > before)  # blocked in the server
        assert not waited
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        holder.wait()
        t.join(120)
        assert waited and locks.holds("waiter", key)
        print(f"lock of a killed holder taken over after {waited[0] - killed:.3f} s")
        locks.release("waiter")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()  # reaps it and closes its pipes
        locks.close()


def test_a_commit_after_its_lock_was_lost_is_refused(pg: tuple[str, str], store: PostgresStore) -> None:
    """The holder's lock session ends (as in a database restart) and another process takes
    the lock: the holder's next commit from its thread is refused, nothing of it applied."""
    import psycopg
    from helpers import PG_BASE

    from isolde.store import Put, Ref, StoreError

    holder, other = PostgresLocks(store), PostgresLocks(store)
    key, ref = b"ns\x00namespace\x00\x00lost", Ref("lost", "namespace", "", "n")
    try:
        store.write([Put(ref, b"0")])
        holder.acquire("holder", [key], 1.0)  # this thread's commits now check the lock
        store.write([Put(ref, b"1")])
        pid = holder.sessions("holder")[0][0]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        taken = threading.Thread(target=other.acquire, args=("thief", [key], 60.0))  # a context of its own
        taken.start()
        taken.join(60)
        assert other.holds("thief", key)
        with pytest.raises(StoreError, match="variable lock of this instance was lost"):
            store.write([Put(ref, b"2")])
        var = store.get(ref)
        assert var is not None and var.data == b"1"
        holder.release("holder")  # its session is gone: nothing to give back
    finally:
        holder.close()
        other.close()
