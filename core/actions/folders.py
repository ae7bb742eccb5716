"""The action folder side of a call: ``files:`` in, the sidecar's action id, ``out/`` back.

:class:`ActionFiles` is made once per engine with its collaborators (the sidecar, the
``out/`` watcher, the archive limits); :meth:`ActionFiles.prepare` gives one call its
folder (:class:`FolderCall`), and everything about that folder is done by it: the
files are written before the call, ``out/`` is collected after it, the action id is
revoked and the folder removed (in the background) whatever happened.
"""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import WorkflowError
from ..expr import Expr
from ..files import ActionFolder, ActionFolders, ArchiveLimits, FileSpec, OutWatcher, ValueStream
from ..isolates.background import Later, Reaper
from ..sidecar import Sidecar, SidecarError
from ..store import InvalidKey, check_key
from .spec import ActionSpec

if TYPE_CHECKING:
    from ..isolates.settings import ActionSettings
    from .caller import CallerContext

Stage = Callable[[str, str, Any, str], None]
"""Where collected ``out/`` variables go: ``(scope, key, data, mime)``; ``ctx.set`` by default."""

WATCH_AFTER = 0.05
"""Seconds a call runs before its ``out/`` watcher starts (a faster call is swept only)."""

class ActionFiles:
    """Action folders, the sidecar and the ``out/`` watcher of one engine."""

    def __init__(self, sidecar: Sidecar, settings: ActionSettings, limits: ArchiveLimits, max_variable_bytes: int) -> None:
        self.sidecar = sidecar
        self.settings = settings
        self.max_variable_bytes = max_variable_bytes
        self.folders = ActionFolders(base=settings.temp_dir, limits=limits, keep=settings.keep_folders)
        """Makes the folders; its first folder sweeps those left by dead processes."""
        self.watcher = OutWatcher()
        self.later = Later()
        self.reaper = Reaper()

    def revoke_instance(self, instance_id: str) -> None:
        """Calls still running for an instance that ended (or moved on) can no longer write."""
        self.sidecar.revoke_instance(instance_id)

    def close(self) -> None:
        self.later.close()
        self.reaper.close()
        self.folders.close()  # after the reaper: it may be making one ahead
        self.watcher.close()
        self.sidecar.close()

    @contextmanager
    def prepare(self, ctx: CallerContext, spec: ActionSpec, source: dict[str, Any]) -> Iterator[FolderCall]:
        folder = self.folders.new(max_variable_bytes=self.max_variable_bytes)
        call = FolderCall(ctx, folder)
        try:
            folder.write_files(_file_specs(spec, source), call.open_value)
            try:
                call.action_id = self.sidecar.grant(ctx.namespace, ctx.workflow.id, ctx.instance_id, ctx.log,
                                                    store=ctx.store)
                call.sidecar = self.sidecar.address
            except SidecarError as exc:
                raise WorkflowError("isolde.sidecar.unavailable", str(exc)) from None
            call.watch = _DeferredWatch(folder, self.watcher)
            self.later.call_later(WATCH_AFTER, call.watch.start)
            yield call
        finally:
            call.call_ended()
            if call.action_id and self.sidecar.revoke(call.action_id):
                # instance variables the isolate wrote through the sidecar end with the instance
                ctx.owns_instance_variables()
            self.reaper.put(folder.close)  # removing the tree is disk work the instance need not wait for
            self.reaper.put(self.folders.premake)  # and so is making the next call's folder


class FolderCall:
    """One call's folder: its path, action id and sidecar address, and its ``out/``."""

    def __init__(self, ctx: CallerContext, folder: ActionFolder) -> None:
        self._ctx = ctx
        self.folder = folder
        self.path = str(folder.path)
        self.action_id = ""
        self.sidecar = ""
        self.watch: _DeferredWatch | None = None

    def open_value(self, scope: str, key: str) -> ValueStream | None:
        """A ``files:`` value as a readable stream (None: the variable is missing)."""
        if scope == "file":
            data = self._ctx.read_file(key)
            return None if data is None else _InMemory(data, "application/octet-stream")
        return self._ctx.open_value(scope, key)

    def call_ended(self) -> None:
        if self.watch is not None:
            self.watch.finish()

    def stage_outputs(self, stage: Stage) -> None:
        """After a result: ``out/`` values are staged with the state (big ones stay mapped)."""
        for out in self.folder.collect_outputs():
            stage(out.scope, out.key, out.view(), out.mime)

    def flush_outputs(self, error: WorkflowError, stage: Stage, flush: Callable[[], None]) -> None:
        """After an error reply, what the isolate left in ``out/`` is committed at once
        (one transaction, SPEC §4.3), since the failing state commits nothing itself."""
        try:
            outputs = self.folder.collect_outputs()
        except WorkflowError as exc:
            self._ctx.log(f"out/ not stored after error {error.code}: {exc.code}: {exc.msg}")
            return
        if outputs:
            for out in outputs:
                stage(out.scope, out.key, out.view(), out.mime)
            flush()


class _DeferredWatch:
    """Starts the folder's ``out/`` watcher if the call is still running after
    ``WATCH_AFTER`` seconds, never after the call returned."""

    __slots__ = ("folder", "watcher", "lock", "done")

    def __init__(self, folder: ActionFolder, watcher: OutWatcher) -> None:
        self.folder = folder
        self.watcher = watcher
        self.lock = threading.Lock()
        self.done = False

    def start(self) -> None:
        with self.lock:
            if not self.done:
                try:
                    self.folder.start_watch(self.watcher)
                except Exception:  # only an optimisation: the sweep after the call is authoritative
                    pass

    def finish(self) -> None:
        with self.lock:  # waits for a start under way, so collect stops what it started
            self.done = True


def _file_specs(spec: ActionSpec, data: dict[str, Any]) -> list[FileSpec]:
    out = []
    for i, item in enumerate(spec.files):
        key = item.key
        if isinstance(key, Expr):
            key = key.eval(data)
            if not isinstance(key, str):
                raise WorkflowError("direktiv.var.invalidKey", f"files[{i}]: computed key must be a string, got {key!r}")
        scope = "instance" if item.scope == "thread" else item.scope
        if scope != "file":
            try:
                check_key(key)
            except InvalidKey as exc:
                raise WorkflowError("direktiv.var.invalidKey", f"files[{i}] of function '{spec.function_id}': {exc}") from None
        elif not key or "\x00" in key:
            raise WorkflowError("direktiv.var.invalidKey", f"files[{i}]: scope file needs a path as key")
        if item.permissions == -1:
            raise WorkflowError("direktiv.var.invalidPermissions", f"files[{i}]: permissions must be octal digits like \"0755\"")
        name = item.as_ or (key.lstrip("/") if scope == "file" else key)
        out.append(FileSpec(key, scope=scope, as_=name, type=item.type, mode=item.permissions))
    return out


class _InMemory(io.BytesIO):
    """Bytes as the readable stream ``files:`` reads (``mime``, ``size``)."""

    def __init__(self, data: bytes, mime: str) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)


__all__ = ["ActionFiles", "FolderCall", "Stage", "WATCH_AFTER"]
