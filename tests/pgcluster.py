"""A PostgreSQL server of a test's own: a fresh cluster in a temporary folder on a free
loopback port, so a test can stop and restart a *real* server without touching the one the
other tests (and other suites on the machine) share."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """``url`` of its ``postgres`` database; ``stop``/``start``/``restart`` the server."""

    def __init__(self, folder: Path) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server programs (pg_ctl, initdb) are not installed")
        self.bindir = bindir
        self.data = folder / "data"
        self.port = _free_port()
        self.log = folder / "server.log"
        self._user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root: run it as postgres
            pw = pwd.getpwnam("postgres")
            os.chown(folder, pw.pw_uid, pw.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{folder}'\nfsync = off\n")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._user, str(self.bindir / program), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(args)}: exit {done.returncode}: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart")


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    """Start a server of its own in a new temporary folder (its own, not under the test's
    ``tmp_path``: when the tests run as root the server runs as ``postgres``, which must be
    able to reach it); the server is stopped and the folder removed on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="isolde-pg-"))
    try:
        server = PrivateServer(folder)
        try:
            yield server
        finally:
            with contextlib.suppress(RuntimeError):
                server.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
