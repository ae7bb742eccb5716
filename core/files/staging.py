"""The staging area of one action folder: a private directory beside it,
unknown to the isolate, where big outputs are copied (by the watcher while the
isolate runs, or by the collector after the call) and directories are packed.

A staged copy is remembered with the identity (device, inode, size, mtime and
ctime in ns) the source file had when it was copied; the collector uses a copy
only when the file still has that identity.
"""

from __future__ import annotations

import os
import tempfile
import threading

from .paths import remove_tree

__all__ = ["Identity", "StageArea", "identity"]

Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """What must not change between a staged copy and the collected file."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StageArea:
    """Made on first use as ``<base>/<prefix>XXXXXXXX`` (0700); thread-safe."""

    def __init__(self, base: str | None, prefix: str) -> None:
        self._base = base
        self._prefix = prefix
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._copies: dict[tuple[str, str], tuple[Identity, str]] = {}

    def new_file(self) -> tuple[int, str]:
        """A fresh file in the area: ``(fd, path)``; the caller closes the fd."""
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix=self._prefix, dir=self._base)
            return tempfile.mkstemp(dir=self._dir)

    def known(self, scope: str, name: str) -> Identity | None:
        """The identity of the file ``out/<scope>/<name>`` had when it was last staged."""
        with self._lock:
            got = self._copies.get((scope, name))
        return None if got is None else got[0]

    def copy_of(self, scope: str, name: str, ident: Identity) -> str | None:
        """The staged copy of ``out/<scope>/<name>`` if it was made from exactly ``ident``."""
        with self._lock:
            got = self._copies.get((scope, name))
        return got[1] if got is not None and got[0] == ident else None

    def remember(self, scope: str, name: str, ident: Identity, path: str) -> None:
        """Record a finished copy (an older copy of the same file is removed)."""
        with self._lock:
            old = self._copies.get((scope, name))
            self._copies[(scope, name)] = (ident, path)
        if old is not None:
            os.unlink(old[1])

    def remove(self) -> None:
        with self._lock:
            path, self._dir = self._dir, None
            self._copies.clear()
        if path is not None:
            remove_tree(path)
