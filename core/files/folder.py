"""The per-action folder an isolate works in (SPEC §4.3).

Life of one folder::

    folders = ActionFolders(base=..., limits=..., keep=...)      # one per engine
    with folders.new(max_variable_bytes=...) as folder:
        folder.write_files(specs, open_value)   # variables -> files, before the call
        folder.start_watch(out_watcher)         # optional, while the isolate runs
        ... call the isolate with Direktiv-TempDir = folder.path ...
        outputs = folder.collect_outputs()      # out/<scope>/ -> values, after the call
        ... stage each o.view() with o.scope, o.key, o.mime, then commit ...

* **Layout.** ``<base>/isolde-action-<owner>-XXXXXXXX`` made by ``mkdtemp``
  (mode 0700, unguessable) holding ``out/instance``, ``out/workflow`` and
  ``out/namespace`` (0700).  ``<base>`` is ``[actions] temp_dir``, else the
  system temp directory.
* **Owner.** ``<owner>`` is ``<pid>-<start ticks>-<machine>``: the creating
  process and its start time (as the variable store marks its registrations,
  so a reused pid is not taken for the owner) and a short hash of the host,
  boot and pid namespace.  The first folder an :class:`ActionFolders` makes
  sweeps ``<base>``: folders (and staging areas) whose owner is dead on this
  machine are removed, those of live owners and of other machines are left
  alone.  So a ``kill -9`` of ``isolde run`` or of the daemon does not keep
  unpacked inputs forever.  A folder kept for debugging (``keep``) carries no
  owner and is never swept.
* **Removal.** :meth:`ActionFolder.close` (or garbage collection, or exit)
  stops the watcher and removes the folder and its staging area, whatever
  the isolate did to permissions or depth inside it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ..liveness import alive, machine, self_identity
from ..store import SCOPES
from .archive import ArchiveLimits
from .inputs import FileSpec, Materialiser, OpenValue
from .outputs import Collector, Output
from .paths import DIR_FLAGS, remove_tree
from .staging import StageArea
from .watch import FolderWatch, OutWatcher

__all__ = ["ActionFolder", "ActionFolders", "sweep_dead_folders"]

FOLDER_PREFIX: Final = "isolde-action-"
STAGE_PREFIX: Final = "isolde-stage-"
READY_MAX: Final = 2
"""Folders an engine keeps made ahead for its next calls (:meth:`ActionFolders.premake`)."""
_OWNED: Final = re.compile(r"isolde-(?:action|stage)-(\d+)-(\d+)-([0-9a-f]{8})-")


@functools.cache
def _machine_tag() -> str:
    host, boot, pidns = machine()
    return hashlib.sha256(f"{host}\x00{boot}\x00{pidns}".encode()).hexdigest()[:8]


def _owner_tag() -> str:
    pid, start = self_identity()
    return f"{pid}-{start}-{_machine_tag()}-"


def sweep_dead_folders(base: str | None = None) -> int:
    """Remove action folders and staging areas in ``base`` (default: the system
    temp directory) whose owner process is dead; returns how many.

    Only names this module makes are considered, only directories of this
    user (never through a link), and only owners on this machine: a pid of
    another host, boot or pid namespace means nothing here.  Best effort: an
    entry that cannot be judged or removed is left."""
    where = tempfile.gettempdir() if base is None else base
    machine = _machine_tag()
    me = self_identity()
    uid = os.getuid()
    removed = 0
    try:
        entries = os.listdir(where)
    except OSError:
        return 0
    for name in entries:
        m = _OWNED.match(name)
        if m is None or m.group(3) != machine:
            continue
        pid, start = int(m.group(1)), int(m.group(2))
        if (pid, start) == me or alive(pid, start):
            continue
        path = os.path.join(where, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue
        remove_tree(path)
        removed += 1
    return removed


# --------------------------------------------------------------------------- one folder


def _make(base: str | None, owner: str) -> tuple[str, int]:
    """A new, empty folder with ``out/<scope>/``: its path and an open descriptor of it."""
    path = tempfile.mkdtemp(prefix=FOLDER_PREFIX + owner, dir=base)  # 0700, unguessable
    try:
        root_fd = os.open(path, DIR_FLAGS)
        try:  # four mkdirs relative to the folder: no lookups of the path or checks first
            os.mkdir("out", dir_fd=root_fd)
            for scope in SCOPES:
                os.mkdir(f"out/{scope}", mode=0o700, dir_fd=root_fd)
        except BaseException:
            os.close(root_fd)
            raise
    except BaseException:
        remove_tree(path)
        raise
    return path, root_fd


def _discard_all(ready: list[tuple[str, int]], lock: threading.Lock) -> None:
    with lock:
        taken = ready[:]
        ready.clear()
    for made in taken:
        _discard(made)


def _discard(made: tuple[str, int]) -> None:
    try:
        os.close(made[1])
    except OSError:
        pass
    remove_tree(made[0])


class _Resources:
    """What the folder, its watcher and its finalizer share.

    Kept apart from :class:`ActionFolder` so neither the watcher nor the
    finalizer holds the folder alive: a forgotten folder is still removed
    when it is garbage-collected or at exit.
    """

    def __init__(self, path: str, root_fd: int, stage: StageArea, keep: bool) -> None:
        self.path = path
        self.root_fd = root_fd
        self.stage = stage
        self.keep = keep
        self.lock = threading.Lock()
        self.watch: FolderWatch | None = None
        self.watch_over = False  # collected or closed: no watch starts any more
        self.closed = False

    def stop_watch(self) -> None:
        with self.lock:
            self.watch_over = True
            watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop()


def _cleanup(res: _Resources) -> None:
    """Stop the watcher, remove the staging area and (unless kept) the folder."""
    res.closed = True
    res.stop_watch()
    try:
        os.close(res.root_fd)
    except OSError:
        pass
    res.stage.remove()
    if not res.keep:
        remove_tree(res.path)


class ActionFolder:
    """A fresh per-action folder with ``out/instance``, ``out/workflow``,
    ``out/namespace`` (see the module docstring).

    ``base`` is where it is made (default: the system temp directory);
    ``keep=True`` leaves it in place after :meth:`close` for debugging.  Use
    it as a context manager, or call :meth:`close` (idempotent).
    """

    def __init__(
        self,
        *,
        base: str | None = None,
        limits: ArchiveLimits = ArchiveLimits(),
        max_variable_bytes: int = 64 << 20,
        keep: bool = False,
        made: tuple[str, int] | None = None,
    ) -> None:
        owner = "" if keep else _owner_tag()
        path, root_fd = _make(base, owner) if made is None else made  # (made: by ActionFolders.premake)
        res = _Resources(path, root_fd, StageArea(base, STAGE_PREFIX + owner), keep)
        self.path = Path(path)
        self.limits = limits
        self.max_variable_bytes = max_variable_bytes
        self._res = res
        self._finalizer = weakref.finalize(self, _cleanup, res)

    def __enter__(self) -> ActionFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ActionFolder({str(self.path)!r})"

    def close(self) -> None:
        """Stop the watcher and remove the folder (unless ``keep``); idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._res.closed

    def _check_open(self) -> None:
        if self._res.closed:
            raise RuntimeError(f"action folder {self.path} is closed")

    def write_files(self, files: Sequence[FileSpec], open_value: OpenValue) -> None:
        """Materialise ``files:`` before the call (:mod:`isolde.files.inputs`).

        ``open_value(scope, key)`` returns a readable binary stream of the
        value (with ``mime`` and ``size``; the store's ``open(ref)``) or None
        when the variable is missing; each stream is read in chunks and closed.
        """
        self._check_open()
        Materialiser(self._res.path, self._res.root_fd, self.limits).write(files, open_value)

    def start_watch(self, watcher: OutWatcher | None = None) -> None:
        """Follow ``out/<scope>/`` while the isolate runs (purely an
        optimisation, :mod:`isolde.files.watch`); a no-op after collection.

        Pass the engine's shared :class:`OutWatcher` (adding and removing
        this folder's watches then costs about 0.5 ms); without one the
        folder starts and stops a private observer, which costs a few ms.
        """
        self._check_open()
        res = self._res
        with res.lock:
            if res.watch is not None or res.watch_over:
                return
            watch = FolderWatch(res.path, res.root_fd, res.stage, self.max_variable_bytes)
            watch.start(watcher)
            res.watch = watch

    def collect(self) -> list[tuple[str, str, bytes, str]]:
        """``(scope, key, bytes, mime)`` for everything in ``out/<scope>/``:
        the simple form of :meth:`collect_outputs`, every value in memory."""
        return [(o.scope, o.key, o.read_bytes(), o.mime) for o in self.collect_outputs()]

    def collect_outputs(self) -> list[Output]:
        """Sweep ``out/<scope>/`` (:mod:`isolde.files.outputs`).  Authoritative:
        stops the watcher first and re-examines every entry.  All or nothing:
        the first problem raises WorkflowError and no value is returned."""
        self._check_open()
        res = self._res
        res.stop_watch()
        return Collector(res.root_fd, res.stage, self.limits, self.max_variable_bytes).collect()


# --------------------------------------------------------------------------- an engine's folders


class ActionFolders:
    """Makes one engine's action folders, all in ``base`` with the same
    ``limits`` and ``keep``.  The first :meth:`new` sweeps ``base`` of the
    folders of dead owners (:func:`sweep_dead_folders`) once."""

    def __init__(self, *, base: str | None = None, limits: ArchiveLimits = ArchiveLimits(), keep: bool = False) -> None:
        self.base = base
        self.limits = limits
        self.keep = keep
        self._lock = threading.Lock()
        self._swept = False
        self._ready: list[tuple[str, int]] = []  # made ahead by premake, never used by a call yet
        self._closed = False
        # (as a folder's own finalizer does: at exit, an engine not closed leaves none made ahead)
        self._finalizer = weakref.finalize(self, _discard_all, self._ready, self._lock)

    def new(self, *, max_variable_bytes: int) -> ActionFolder:
        if not self._swept:
            with self._lock:
                if not self._swept:
                    sweep_dead_folders(self.base)
                    self._swept = True
        made = None
        if self._ready:
            with self._lock:
                made = self._ready.pop() if self._ready else None
        return ActionFolder(base=self.base, limits=self.limits, max_variable_bytes=max_variable_bytes, keep=self.keep,
                            made=made)

    def premake(self) -> None:
        """Make the next call's folder ahead (off the call's path: a background thread calls
        this after a call ended), up to :data:`READY_MAX` of them.  A made-ahead folder is as
        fresh as one made by :meth:`new`: empty, never given to a call before; the folders
        of a process are only ever made, used once and removed.  Not for kept folders."""
        if self.keep or self._closed or len(self._ready) >= READY_MAX:
            return
        made = _make(self.base, _owner_tag())
        with self._lock:
            if not self._closed and len(self._ready) < READY_MAX:
                self._ready.append(made)
                return
        _discard(made)

    def close(self) -> None:
        """Remove the folders made ahead and not used; no more are made."""
        with self._lock:
            self._closed = True
        self._finalizer()
