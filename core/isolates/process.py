"""Isolate processes: a program started with ``$PORT`` and ``$DIREKTIV_SIDECAR``, waited for
until it accepts connections, restarted if it died, stopped with its process group."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import ConfigError, IsoldeError, WorkflowError
from .protocol import OUTPUT_TAIL, STOP_GRACE, UNAVAILABLE_CODE, seconds_text

_SUPERVISOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_supervise.py")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the program binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.25).close()
        return True
    except OSError:
        return False


class IsolateProcess:
    """One isolate program: started with ``$PORT`` / ``$DIREKTIV_SIDECAR``, watched, stopped.

    Its stdout and stderr are read by a thread that forwards each line to
    isolde's stderr (prefixed with the isolate's name) and keeps the last lines
    for error messages.  The program runs in its own process group so that
    stopping it also stops what it spawned.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        cwd: Path,
        env: Mapping[str, str],
        port: int | None,
        startup_timeout: float,
        output: Callable[[str], None] | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        if not command:
            raise ConfigError(f"isolate {name}: command is empty")
        self.command = list(command)
        self.name = name
        self.cwd = cwd
        self.env = dict(env)
        self.base_env = dict(os.environ if base_env is None else base_env)
        """What the program inherits before ``env`` (the runner passes a minimal set)."""
        self.fixed_port = port
        self.port = 0
        self.startup_timeout = startup_timeout
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the program is running now (started and not exited)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure(self, sidecar: str) -> bool:
        """Start the program unless it runs and listens; True when it was (re)started."""
        if self._ready and self.alive():
            return False
        with self._lock:  # a concurrent caller waits here until the program listens
            if self._closed:
                raise IsoldeError(f"isolate {self.name}: the engine is closed")
            if self._ready and self.alive():
                return False
            self._ready = False
            if self._proc is not None:  # it died since the last call: say so, start again
                self._note(f"exited with code {self._proc.returncode}; starting it again")
                self._reap()
            self._start(sidecar)
            self._ready = True
            return True

    def _start(self, sidecar: str) -> None:
        port = self.fixed_port or free_port()
        if self.fixed_port and _listening("127.0.0.1", port):
            raise WorkflowError(
                UNAVAILABLE_CODE,
                f"isolate {self.name}: port {port} is already in use by another program; "
                "choose another `port` or leave it out (isolde then picks a free one)",
            )
        env = {**self.base_env, **self.env, "PORT": str(port)}
        if sidecar:
            env["DIREKTIV_SIDECAR"] = sidecar
        self._tail.clear()
        try:
            # Under the supervisor: it stops the isolate if this process dies (even kill -9).
            proc = subprocess.Popen(
                [sys.executable, _SUPERVISOR, *self.command],
                cwd=self.cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkflowError(
                UNAVAILABLE_CODE,
                f"isolate {self.name}: cannot start {self.command[0]!r} (in {self.cwd}): {exc.strerror or exc}",
            ) from None
        self._proc, self.port = proc, port
        reader = threading.Thread(target=self._pump, args=(proc,), name=f"isolate-output-{proc.pid}", daemon=True)
        self._reader = reader
        reader.start()
        self._wait_listening(proc, port)

    def _wait_listening(self, proc: subprocess.Popen[bytes], port: int) -> None:
        """Poll until the program accepts connections, dies, or the startup time runs out."""
        give_up = time.monotonic() + self.startup_timeout
        pause = 0.002
        while True:
            code = proc.poll()
            if code is not None:
                self._reap()
                raise WorkflowError(
                    UNAVAILABLE_CODE,
                    f"isolate {self.name} exited with code {code} before it listened on port {port}"
                    f"{self._tail_text()}",
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.25).close()
                return
            except OSError:
                pass
            if time.monotonic() >= give_up:
                self.stop()
                raise WorkflowError(
                    UNAVAILABLE_CODE,
                    f"isolate {self.name} did not listen on 127.0.0.1:{port} within {seconds_text(self.startup_timeout)} "
                    f"(it must serve HTTP on the port in $PORT; raise [actions] startup_timeout if it starts slowly)"
                    f"{self._tail_text()}",
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(line)
            if self._output is not None:
                try:
                    self._output(f"[isolate {self.name}] {line}")
                except Exception:  # a closed stderr must not kill the reader
                    pass
        proc.stdout.close()

    def exit_note(self, wait: float = 0.3) -> str:
        """If the program has exited (or exits within ``wait`` seconds): its exit code and
        last output lines, for the error of a call it broke off; else ""."""
        proc = self._proc
        if proc is None:
            return ""
        try:
            code = proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return ""
        return f"; the isolate exited with code {code}{self._tail_text()}"

    def _tail_text(self) -> str:
        if self._reader is not None:
            self._reader.join(0.2)  # let the last lines arrive
        lines = [line for line in self._tail if line.strip()]
        return "; its last output: " + " | ".join(lines[-5:]) if lines else ""

    def _note(self, message: str) -> None:
        if self._output is not None:
            self._output(f"[isolate {self.name}] {message}")

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if proc.stdin is not None:  # the supervisor's lifeline
            try:
                proc.stdin.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(1.0)
            self._reader = None

    def stop(self) -> None:
        """Terminate the program (its process group), kill it if it lingers; idempotent."""
        self._ready = False
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE)
        else:  # the leader exited: still stop anything it left in its group
            self._signal(proc, signal.SIGKILL)
        self._reap()
        self._proc = None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, sig)
            else:  # pragma: no cover - not POSIX
                proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.stop()


def stderr_line(line: str) -> None:
    """Default sink of isolate output: isolde's stderr (the CLI keeps stdout for the result)."""
    stream = sys.stderr
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


__all__ = ["IsolateProcess", "free_port", "stderr_line"]
