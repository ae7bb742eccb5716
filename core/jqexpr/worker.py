"""The killable jq worker processes and their client, a small bounded pool.

The jq C library cannot be interrupted from Python, so guarded programs (:mod:`.analysis`) are
compiled and run in worker processes (``_jqworker.py`` beside this file) that are SIGKILLed at a
deadline.  :class:`WorkerPool` keeps up to ``size`` of them:

- **Lazy**: a worker is started when a request finds no idle one and fewer than ``size`` exist;
  it then stays alive and caches compiled programs itself.  Start-up (~50 ms) is not charged to
  the request that caused it (its deadline moves by the start-up time).
- **Deadlines count from the request**: a run request waits for a free worker (first come, first
  served: a released worker is handed to the longest waiter, nobody barges in) and the time spent
  waiting counts against its ``timeout``.  A program that ran out of time is cut off:
  ``direktiv.limits.jq``; its worker is killed and the slot freed for a new one.
- **Compile requests** (:meth:`WorkerPool.compile`) wait for a worker without a deadline (every
  holder finishes within its own deadline, so the wait is bounded) and then get ``timeout`` for
  the compilation itself: a workflow is never rejected because other instances kept the workers
  busy.  A compilation that hits a limit is a ``direktiv.jq.badCommand`` naming the limit.
- Output over ``max_output`` bytes and a worker that dies (address-space limit ``max_memory``,
  jq abort) are ``direktiv.limits.jq`` for runs.

Requests and responses are length-prefixed frames over the worker's stdin/stdout pipes (protocol
in ``_jqworker.py``); the client waits with ``select.poll`` (no FD_SETSIZE limit).  The worker is
started by file path (not ``-m``) with a minimal environment (PATH, PYTHONPATH, PYTHONHOME, TZ),
so it imports neither isolde's package nor anything the engine's environment could steer, and
has no secret to leak.  POSIX only (pipes + poll).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

from .errors import BAD_COMMAND, LIMITS_JQ, JqError, runtime_error

__all__ = ["WORKER_PATH", "WorkerPool", "fmt_bytes"]

MODE_COMPILE = 2
_REQ = struct.Struct(">BII")
_REPLY = struct.Struct(">cI")
WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jqworker.py")
_STARTUP_TIMEOUT = 30.0
_ENV_KEEP = ("PATH", "PYTHONPATH", "PYTHONHOME", "TZ")


class _Timeout(Exception):
    """The deadline passed while talking to the worker or waiting for one."""


class _WaitTimeout(_Timeout):
    """The deadline passed before a worker became free."""


class _WorkerDied(Exception):
    """The worker closed its pipe (crashed, killed by a limit or by close())."""


class _OutputTooLarge(Exception):
    """The worker announced a response larger than the output limit."""


def fmt_bytes(n: int) -> str:
    """``1073741824`` -> ``1 GiB`` (exact multiples only), else ``N bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill, wait for and close a worker (used directly and as its GC/exit finalizer)."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


class _Worker:
    """One running worker process and its non-blocking pipe ends."""

    def __init__(self, max_output: int, max_memory: int, backstop: float) -> None:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        self.closed = False  # set when close() killed it (not a limit)
        self.proc = subprocess.Popen(
            [sys.executable, WORKER_PATH, str(max_output), str(max_memory), repr(backstop)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # only a crash writes there; the operator should see it
            env=env,
            close_fds=True,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        os.set_blocking(self.fd_in, False)
        os.set_blocking(self.fd_out, False)
        self.poll_in = select.poll()
        self.poll_in.register(self.fd_out, select.POLLIN)
        self.poll_out = select.poll()
        self.poll_out.register(self.fd_in, select.POLLOUT)
        self.finalizer = weakref.finalize(self, _reap, self.proc)

    def stop(self) -> None:
        """SIGKILL, reap and close the pipes; idempotent.  Only by the thread using it."""
        self.finalizer()

    def kill(self) -> None:
        """SIGKILL only: another thread may be reading its pipe (it sees end of file and stops it)."""
        with contextlib.suppress(OSError):
            self.proc.kill()

    def _wait(self, poller: select.poll, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout
        poller.poll(max(1, math.ceil(left * 1000)))

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd_in, view)
            except BlockingIOError:
                self._wait(self.poll_out, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _WorkerDied from None
            view = view[n:]

    def recv(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        left = n
        while left:
            try:
                chunk = os.read(self.fd_out, min(left, 1 << 20))
            except BlockingIOError:
                self._wait(self.poll_in, deadline)
                continue
            if not chunk:
                raise _WorkerDied
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class _Waiter:
    """A request waiting for a worker: handed either an idle worker or a slot to start one."""

    __slots__ = ("event", "served", "worker")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.served = False
        self.worker: _Worker | None = None


class WorkerPool:
    """Up to ``size`` jq worker processes, started lazily, shared first come, first served.

    ``timeout`` bounds a request (counted from the request), ``max_output`` the JSON size of a
    run's outputs, ``max_memory`` each worker's address space (0 = unlimited); ``memory_hint``
    tells the user how to raise that limit (it ends the error message).  Thread-safe.
    """

    def __init__(
        self, *, size: int, timeout: float, max_output: int, max_memory: int, memory_hint: str = ""
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self.timeout = timeout
        self.max_output = max_output
        self.max_memory = max_memory
        self._memory_hint = memory_hint
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._started = 0  # workers alive or starting, i.e. slots taken
        self._waiters: collections.deque[_Waiter] = collections.deque()

    # -- requests -------------------------------------------------------------------------------

    def run(self, mode: int, wire: bytes, data: Any) -> list[Any]:
        """Outputs of program ``wire`` on ``data`` (mode 0 all, mode 1 the first at most)."""
        deadline = time.monotonic() + self.timeout
        try:
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None
        request = _REQ.pack(mode, len(wire), len(payload)) + wire + payload
        try:
            kind, body = self._exchange(request, deadline)
        except _WaitTimeout:
            raise JqError(
                LIMITS_JQ,
                f"jq program exceeded the {self.timeout} s limit waiting for a free jq worker "
                f"(all {self.size} were busy; set [limits] jq_workers or jq_timeout in isolde.toml "
                "to raise them)",
            ) from None
        except _Timeout:
            raise JqError(
                LIMITS_JQ,
                f"jq program exceeded the {self.timeout} s limit "
                "(set [limits] jq_timeout in isolde.toml to raise it)",
            ) from None
        except _OutputTooLarge:
            raise self._output_error() from None
        except _WorkerDied:
            raise JqError(LIMITS_JQ, f"jq program stopped the jq worker process ({self._death()})") from None
        if kind == b"O":
            return json.loads(body)  # type: ignore[no-any-return]
        if kind == b"L":
            raise self._output_error()
        raise runtime_error(ValueError(body.decode("utf-8", "replace")))

    def compile(self, wire: bytes) -> str | None:
        """Compile ``wire`` in a worker: None if it compiles, else jq's error text.

        A compilation cut off by a limit raises JqError(badCommand) at offset 0 naming the limit.
        """
        request = _REQ.pack(MODE_COMPILE, len(wire), 0) + wire
        try:
            kind, body = self._exchange(request, None)
        except _Timeout:
            raise JqError(
                BAD_COMMAND,
                f"compiling the jq program took longer than the {self.timeout} s limit "
                "(set [limits] jq_timeout in isolde.toml to raise it)",
                0,
            ) from None
        except (_WorkerDied, _OutputTooLarge):
            if self.max_memory <= 0:
                why = "it crashed"
            else:
                hint = f"; {self._memory_hint}" if self._memory_hint else ""
                why = (
                    f"most likely at its {fmt_bytes(self.max_memory)} memory limit (jq computes "
                    f'constant expressions such as "x" * 1000000000 while compiling{hint})'
                )
            raise JqError(
                BAD_COMMAND, f"compiling the jq program stopped the jq worker process, {why}", 0
            ) from None
        if kind == b"E":
            return body.decode("utf-8", "replace")
        return None

    def _death(self) -> str:
        if self.max_memory <= 0:
            return "it crashed"
        hint = f"; {self._memory_hint}" if self._memory_hint else ""
        return f"most likely it exceeded the worker's {fmt_bytes(self.max_memory)} memory limit{hint}"

    def _output_error(self) -> JqError:
        return JqError(
            LIMITS_JQ,
            f"jq program output exceeded the {fmt_bytes(self.max_output)} limit "
            "(set [limits] jq_max_output in isolde.toml to raise it)",
        )

    def _exchange(self, request: bytes, deadline: float | None) -> tuple[bytes, bytes]:
        """Send one request to a free worker and read its reply.

        With ``deadline`` None the wait for a worker is unbounded and the exchange gets
        ``timeout`` from the moment a worker is free.
        """
        worker, startup = self._acquire(deadline)
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        else:
            deadline += startup
            if time.monotonic() >= deadline:  # expired while handed over: keep the worker
                self._release(worker, True)
                raise _WaitTimeout
        healthy = False
        try:
            worker.send(request, deadline)
            kind, length = _REPLY.unpack(worker.recv(_REPLY.size, deadline))
            if length > self.max_output + 1024:
                raise _OutputTooLarge
            body = worker.recv(length, deadline)
            healthy = True
            return kind, body
        except _WorkerDied:
            if worker.closed:
                raise JqError(BAD_COMMAND, "the jq runtime was closed while the program ran") from None
            raise
        finally:
            # Any failure mid-exchange (a limit, KeyboardInterrupt) leaves the pipe out of
            # sync: the worker is killed and its slot freed for a fresh one.
            self._release(worker, healthy)

    # -- the pool -------------------------------------------------------------------------------

    def _acquire(self, deadline: float | None) -> tuple[_Worker, float]:
        """A worker for one exchange, and the seconds spent starting it (0 if it was idle)."""
        with self._lock:
            worker: _Worker | None = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.proc.poll() is None:
                    worker = candidate
                    break
                self._forget(candidate)  # died while idle: its slot is free again
            if worker is not None:
                return worker, 0.0
            if self._started < self.size:
                self._started += 1
                waiter = None
            else:
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is not None:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            waiter.event.wait(left)
            with self._lock:
                if not waiter.served:
                    self._waiters.remove(waiter)
                    raise _WaitTimeout
            if waiter.worker is not None:
                return waiter.worker, 0.0
        t0 = time.monotonic()
        try:
            worker = self._start()
        except BaseException:
            self._release(None, False)
            raise
        return worker, time.monotonic() - t0

    def _start(self) -> _Worker:
        """Start a worker and wait for its ready byte."""
        worker = _Worker(self.max_output, self.max_memory, self.timeout + 2.0)
        with self._lock:
            self._live.add(worker)
        try:
            ready = worker.recv(1, time.monotonic() + max(_STARTUP_TIMEOUT, self.timeout))
        except (_Timeout, _WorkerDied):
            self._kill(worker)
            raise JqError(BAD_COMMAND, f"could not start the jq worker ({sys.executable} {WORKER_PATH})") from None
        if ready != b"R":  # pragma: no cover - protocol violation
            self._kill(worker)
            raise JqError(BAD_COMMAND, "jq worker sent an unexpected greeting")
        return worker

    def _kill(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self._live.discard(worker)

    def _forget(self, worker: _Worker) -> None:
        """Drop a dead worker and free its slot (caller holds the lock)."""
        worker.stop()
        self._live.discard(worker)
        self._give_slot()

    def _give_slot(self) -> None:
        """A slot became free: hand it to the longest waiter, else shrink (lock held)."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.served = True
            waiter.event.set()
        else:
            self._started -= 1

    def _release(self, worker: _Worker | None, healthy: bool) -> None:
        """Return a worker after an exchange; an unhealthy one is killed and its slot freed."""
        if worker is not None and not healthy:
            worker.stop()
        with self._lock:
            if worker is not None and healthy and not worker.closed:
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.worker = worker
                    waiter.served = True
                    waiter.event.set()
                else:
                    self._idle.append(worker)
                return
            if worker is not None:
                worker.stop()
                self._live.discard(worker)
            self._give_slot()

    def close(self) -> None:
        """Kill every worker (idle and busy); idempotent.  Later requests start new ones.

        A busy worker is only signalled: the thread using it sees end of file, gets an error
        and reaps it (closing its pipes here could hand their numbers to another file).
        """
        with self._lock:
            idle, self._idle = self._idle, []
            busy = [w for w in self._live if w not in idle]
            for worker in self._live:
                worker.closed = True
            for worker in idle:
                self._live.discard(worker)
                self._give_slot()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()
