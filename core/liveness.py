"""Process identity and aliveness: who registered an instance, and is it still running?

A registration value is ``<IQd`` -- pid, the process start time in clock ticks
(from ``/proc``; 0 if unknown, guards against pid reuse), registration time --
then ``hostname NUL boot-id NUL pid-namespace``.  ``is_orphan`` judges one from
this host: registrations of another host are never orphans here.
"""

from __future__ import annotations

import os
import struct
import time

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["machine", "registration", "is_orphan"]

# pid, process start ticks, registration time
_REG: Final[struct.Struct] = struct.Struct("<IQd")

_machine_id: tuple[str, str, str] | None = None
_self_ident: tuple[int, int] | None = None


def machine() -> tuple[str, str, str]:
    """Host name, boot id and pid namespace: a pid only means something on the
    same host, within the same boot, seen from the same pid namespace (two
    containers sharing a data directory may share a host name)."""
    global _machine_id
    if _machine_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                boot = f.read().strip()
        except OSError:
            boot = ""
        try:
            pidns = os.readlink("/proc/self/ns/pid")
        except OSError:
            pidns = ""
        _machine_id = (_hostname(), boot, pidns)
    return _machine_id


def _hostname() -> str:
    """``socket.gethostname()``: on POSIX the node name of ``uname`` (what gethostname
    returns), without importing the socket module at every start."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # pragma: no cover  (Windows)

    return socket.gethostname()  # pragma: no cover


def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot, or None if it is gone
    or a zombie.  Returns 0 where /proc does not exist (no pid-reuse guard)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None if os.path.isdir("/proc/self") else 0
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    if not fields or fields[0] == b"Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


def self_identity() -> tuple[int, int]:
    """(pid, start ticks) of this process, recomputed after a fork."""
    global _self_ident
    pid = os.getpid()
    if _self_ident is None or _self_ident[0] != pid:
        _self_ident = (pid, _proc_start(pid) or 0)
    return _self_ident


def alive(pid: int, start: int) -> bool:
    """Whether the registering process still runs.  Errs towards "alive":
    wrongly sweeping a live instance's variables is worse than keeping an
    orphan a little longer."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: exists, owned by another user; /proc may hide it
    now = _proc_start(pid)
    if now is None:
        return False
    if start and now and now != start:
        return False  # the pid was reused by another process
    return True


def registration() -> bytes:
    """The registration value for this process, now."""
    pid, start = self_identity()
    host, boot, pidns = machine()
    return _REG.pack(pid, start, time.time()) + f"{host}\x00{boot}\x00{pidns}".encode()


def is_orphan(value: bytes | memoryview, here: tuple[str, str, str]) -> bool:
    """Whether a registration's process died on this host ``here`` (from
    ``machine()``), or registered before this host's last reboot."""
    if len(value) < _REG.size:
        return False
    pid, start, _ = _REG.unpack_from(value)
    rhost, rboot, rpidns = (bytes(value[_REG.size :]).decode(errors="replace").split("\x00") + ["", ""])[:3]
    host, boot, pidns = here
    if rhost != host:
        return False  # another machine's pids mean nothing here
    if boot and rboot and rboot != boot:
        return True  # registered before a reboot: its process is gone
    if pidns and rpidns and rpidns != pidns:
        return False  # another container's pid namespace: cannot judge
    return not alive(pid, start)
