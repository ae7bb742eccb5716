"""Folder -> store: the served folder's workflows and namespaces, kept in step (drop files
are ``dropvars``'s).

A due path (see ``watch``) is classified (``layout``) and synced: a workflow file is read
whole and built; one that does not build is registered invalid with its located errors
and never replaces the version that serves.  Renames carry variables along; a workflow
or namespace that disappears takes its variables with it.  ``Manifests`` remember which
workflows the daemon manages, so deletions while it was down are applied at start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat as _stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Final, Iterable, cast

from ..errors import ValidationError
from ..store import Put, Ref, VariableStore
from .catalog import Catalog, WorkflowEntry
from .dropvars import DropVariables
from .layout import Item, classify, is_under, valid_namespace
from .records import DAEMON_OWNER
from .runs import Runs
from .settings import DaemonSettings
from .triggers import Triggers
from .watch import MOVE_HINT_TTL, FileReader, Pending

if TYPE_CHECKING:
    from ..workflow import Workflow

__all__ = ["FolderSync", "Manifests"]

MANIFEST_KEY: Final = "workflows"
"""The per-namespace record listing the workflow files the daemon manages (id -> digest)."""

BuildFn = Callable[[bytes, str, str], "Workflow"]


class Manifests:
    """Per namespace: the workflow ids the daemon manages and their files' digests."""

    def __init__(self, store: VariableStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._by_ns: dict[str, dict[str, str]] = {}

    def load(self) -> dict[str, dict[str, str]]:
        """Read what the last run left; returns a copy."""
        for ns in cast("Iterable[str]", self.store.namespaces()):
            var = self.store.get(Ref(ns, "instance", DAEMON_OWNER, MANIFEST_KEY))
            if var is None:
                continue
            try:
                self._by_ns[ns] = dict(json.loads(var.data))
            except (ValueError, TypeError):
                self._by_ns[ns] = {}
        return {ns: dict(m) for ns, m in self._by_ns.items()}

    def set(self, ns: str, wid: str, digest: str | None) -> None:
        with self._lock:
            man = self._by_ns.setdefault(ns, {})
            if man.get(wid) == digest:
                return
            if digest is None:
                man.pop(wid, None)
            else:
                man[wid] = digest
            data = json.dumps(man, sort_keys=True).encode() if man else None
        self.store.write([Put(Ref(ns, "instance", DAEMON_OWNER, MANIFEST_KEY), data)])

    def drop(self, ns: str) -> None:
        with self._lock:
            self._by_ns.pop(ns, None)


class FolderSync:
    """Applies due paths of the served folder to the catalog and the store."""

    def __init__(self, root: Path, catalog: Catalog, pending: Pending, reader: FileReader, settings: DaemonSettings,
                 log: logging.Logger, *, store: VariableStore, manifests: Manifests, triggers: Triggers, runs: Runs,
                 drop: DropVariables, build: BuildFn, delete_workflow: Callable[[str, str], int],
                 delete_namespace: Callable[[str], int], max_yaml_bytes: int) -> None:
        self.root = root
        self.catalog = catalog
        self.pending = pending
        self.reader = reader
        self.settings = settings
        self.log = log
        self.store = store
        self.manifests = manifests
        self.triggers = triggers
        self.runs = runs
        self._build = build  # (bytes, filename, workflow id) -> Workflow, raises ValidationError
        self._delete_workflow_vars = delete_workflow  # (wid, ns) -> variables deleted
        self._delete_namespace_vars = delete_namespace
        self.drop = drop
        self.max_yaml = max_yaml_bytes
        self.stopping = False
        self._thread: threading.Thread | None = None

    # -- the sync thread --------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="isolde-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.pending.close()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self.stopping:
            paths = self.pending.take(1.0)
            if not paths:
                continue
            try:
                self.sync(paths)
            except Exception as exc:  # a bug must not stop the watcher
                self.log.error("sync failed", exc_info=exc, extra={"fields": {"paths": len(paths)}})
            finally:
                self.pending.synced()

    def sync(self, paths: list[Path]) -> None:
        items: list[Item] = []
        for p in paths:
            item = classify(self.root, p)
            if item is not None:
                items.append(item)
        order = {"ns": 0, "vars": 1, "dir": 2, "wf": 3, "wvar": 4, "nvar": 4}
        items.sort(key=lambda it: order[it.kind])
        for item in items:
            if self.stopping:
                return
            try:
                self._sync_item(item)
            except Exception as exc:  # one bad path must not hold up the others
                self.log.error("sync failed", exc_info=exc, extra={"fields": {"file": str(item.path)}})

    def _sync_item(self, item: Item) -> None:
        if item.kind == "ns":
            self._sync_ns(item)
        elif item.kind == "vars":
            if item.path.is_dir():
                self._scan_tree(item.path)
        elif item.kind == "dir":
            self._sync_dir(item)
        elif item.kind == "wf":
            self.sync_workflow(item)
        else:
            self.drop.sync(item)

    def _gone_recently(self, path: Path) -> bool:
        return self.pending.gone_recently(path, self.settings.delete_grace)

    # -- scanning ---------------------------------------------------------------
    def scan_all(self) -> None:
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.is_symlink() and valid_namespace(child.name):
                self._scan_namespace(child.name)

    def _scan_namespace(self, ns: str) -> None:
        with self.catalog.lock:
            new = ns not in self.catalog.namespaces
            self.catalog.namespaces.add(ns)
        if new:
            self.log.info("namespace added", extra={"fields": {"ns": ns}})
        self._scan_tree(self.root / ns)

    def _scan_tree(self, top: Path) -> None:
        """Register everything under ``top`` (a namespace or a subfolder of one)."""
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                item = classify(self.root, here / name)
                if item is None:
                    continue
                if item.kind in ("nvar", "wvar"):
                    self.drop.sync(item)  # a variable directory: don't walk into it
                elif item.kind in ("vars", "dir"):
                    keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                item = classify(self.root, here / name)
                if item is None or item.kind == "dir":
                    continue
                if item.kind == "wf":
                    self.sync_workflow(item)
                elif item.kind in ("nvar", "wvar"):
                    self.drop.sync(item)

    # -- namespaces and folders ---------------------------------------------------
    def _sync_ns(self, item: Item) -> None:
        ns = item.namespace
        if item.path.is_dir() and not item.path.is_symlink():
            src = self.pending.moved_from(item.path)
            if src is not None and src.parent == self.root and not src.exists():
                self._move_namespace(src.name, ns)
            self._scan_namespace(ns)
            return
        if self._gone_recently(item.path):
            return
        with self.catalog.lock:
            known = ns in self.catalog.namespaces
        if known:
            self.remove_namespace(ns)

    def _sync_dir(self, item: Item) -> None:
        path = item.path
        if path.is_dir() and not path.is_symlink():
            src = self.pending.moved_from(path)
            if src is not None:  # a folder renamed: its workflows move (hints per file)
                with self.catalog.lock:
                    entries = [e for e in self.catalog.workflows.values() if is_under(e.path, src)]
                for e in entries:
                    self.pending.move(e.path, path / e.path.relative_to(src))
            self._scan_tree(path)
            return
        if path.exists():
            return  # some other file
        if self._gone_recently(path):
            return
        with self.catalog.lock:
            entries = [e for e in self.catalog.workflows.values() if is_under(e.path, path)]
        for e in entries:
            self.sync_workflow(Item("wf", e.namespace, e.path, workflow=e.id))

    def _move_namespace(self, old: str, new: str) -> None:
        """A namespace folder renamed: namespace and workflow variables move with it."""
        store = self.store
        puts: list[Put] = []
        for k, v in store.list(old, "namespace", ""):
            puts.append(Put(Ref(new, "namespace", "", k), v.data, v.mime))
        for wid in cast("Iterable[str]", store.workflows(old)):
            for k, v in store.list(old, "workflow", wid):
                puts.append(Put(Ref(new, "workflow", wid, k), v.data, v.mime))
        if puts:
            store.write(puts)
        for e in self.catalog.in_namespace(old):
            with self.catalog.lock:
                self.catalog.workflows.pop((old, e.id), None)
                ne = WorkflowEntry(new, e.id, self.root / new / e.path.relative_to(self.root / old), e.workflow, e.digest, e.errors, time.time())
                self.catalog.workflows[(new, e.id)] = ne
            self.triggers.remove(e)
            self.manifests.set(new, e.id, e.digest)
            self.triggers.apply(ne)
        self.log.info("namespace renamed", extra={"fields": {"from": old, "ns": new, "variables": len(puts)}})
        self.remove_namespace(old)

    def remove_namespace(self, ns: str) -> None:
        with self.catalog.lock:
            self.catalog.namespaces.discard(ns)
            entries = self.catalog.in_namespace(ns)
            for e in entries:
                del self.catalog.workflows[(ns, e.id)]
        self.manifests.drop(ns)
        self.runs.cancel_where(ns, None, f"namespace '{ns}' was removed")
        for e in entries:
            self.triggers.remove(e)
        n = self._delete_namespace_vars(ns)
        self.log.info("namespace removed", extra={"fields": {"ns": ns, "workflows": len(entries), "variables": n}})

    # -- workflows ----------------------------------------------------------------
    def sync_workflow(self, item: Item) -> None:
        path, ns, wid = item.path, item.namespace, item.workflow
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not _stat.S_ISREG(st.st_mode):
            if st is not None and _stat.S_ISLNK(st.st_mode):
                self.log.warning("symbolic link ignored (never followed)", extra={"fields": {"file": str(path)}})
                return
            if st is not None:
                return
            self._workflow_gone(path, ns, wid)
            return
        data = self.reader.read(path, st, self.max_yaml + 1)
        if data is None:
            return
        digest = hashlib.sha256(data).hexdigest()
        entry = self.catalog.get(ns, wid)
        with self.catalog.lock:
            self.catalog.namespaces.add(ns)
        src = self.pending.moved_from(path)
        if entry is None and src is not None:
            old = classify(self.root, src)
            moved = self.catalog.get(old.namespace, old.workflow) if old is not None and old.kind == "wf" else None
            if moved is not None and not src.exists():
                entry = self.rename_workflow(moved, ns, wid, path)
        if entry is not None and entry.digest == digest and entry.path == path:
            return
        wf, errors = self._load(data, path, ns, wid)
        now = time.time()
        with self.catalog.lock:
            created = entry is None
            if entry is None:
                entry = WorkflowEntry(ns, wid, path)
                self.catalog.workflows[(ns, wid)] = entry
            entry.path = path
            entry.digest = digest
            entry.errors = errors
            entry.updated = now
            if wf is not None:
                entry.workflow = wf
        self.manifests.set(ns, wid, digest)
        fields = {"ns": ns, "workflow": wid, "file": str(path)}
        if wf is None:
            msg = "invalid workflow" + (", the previous version keeps serving" if entry.workflow is not None else ", not registered")
            self.log.error(msg, extra={"fields": {**fields, "errors": len(errors)}})
            for line in errors:
                self.log.error(line, extra={"fields": {"ns": ns, "workflow": wid}})
            return
        self.log.info("workflow registered" if created else "workflow updated", extra={"fields": fields})
        self.triggers.apply(entry)

    def _load(self, data: bytes, path: Path, ns: str, wid: str) -> tuple[Workflow | None, list[str]]:
        """Build from the bytes just read and hashed (reading the file again might see a newer
        write than the digest describes).  Whatever goes wrong makes an invalid workflow
        with a located error: a hostile file must never stop the daemon."""
        try:
            wf = self._build(data, str(path), wid)
        except ValidationError as exc:
            return None, [str(d) for d in exc.diagnostics]
        except (Exception, RecursionError) as exc:  # MemoryError, RecursionError, a bug in a plugin's check
            self.log.error("workflow could not be loaded", exc_info=exc, extra={"fields": {"file": str(path)}})
            return None, [f"{path}:1:1: the workflow could not be loaded: {type(exc).__name__}: {str(exc)[:200]}"]
        wf.id = wid  # the file is the name, whatever `id:` says
        wf.root = self.root / ns  # a leading / in subflows and file keys
        return wf, []

    def _workflow_gone(self, path: Path, ns: str, wid: str) -> None:
        for dest in self.pending.moved_to(path):
            moved = classify(self.root, dest)
            if moved is not None and moved.kind == "wf" and dest.is_file():
                return  # renamed: handled when the new name is synced
        if self._gone_recently(path):
            return
        entry = self.catalog.get(ns, wid)
        if entry is None or entry.path != path:
            return
        twin = self._twin(entry)
        if twin is not None:  # moved without a rename event (e.g. into a folder not watched yet)
            self.rename_workflow(entry, twin.namespace, twin.id, twin.path)
        else:
            self.delete_workflow(entry)

    def _twin(self, gone: WorkflowEntry) -> WorkflowEntry | None:
        """A workflow that appeared in the last ``MOVE_HINT_TTL`` seconds with the same content
        as one that disappeared: the file was moved.  inotify reports a move into a folder it
        does not watch yet (one just created) as a deletion plus a new file."""
        now = time.time()
        with self.catalog.lock:
            candidates = [e for e in self.catalog.workflows.values()
                          if e is not gone and e.digest == gone.digest and now - e.created < MOVE_HINT_TTL]
        for e in candidates:
            if e.path.is_file() and not self.store.list(e.namespace, "workflow", e.id):
                return e
        return None

    def delete_workflow(self, entry: WorkflowEntry) -> None:
        ns, wid = entry.namespace, entry.id
        with self.catalog.lock:
            self.catalog.workflows.pop((ns, wid), None)
        self.runs.cancel_where(ns, wid, f"workflow '{wid}' was deleted")
        self.triggers.remove(entry)
        n = self._delete_workflow_vars(wid, ns)
        self.manifests.set(ns, wid, None)
        self.log.info("workflow deleted", extra={"fields": {"ns": ns, "workflow": wid, "file": str(entry.path), "variables": n}})

    def rename_workflow(self, entry: WorkflowEntry, ns: str, wid: str, path: Path) -> WorkflowEntry:
        """A workflow file renamed or moved: its variables follow it (across namespaces too)."""
        old_ns, old_wid = entry.namespace, entry.id
        store = self.store
        if old_ns == ns:
            n = store.rename_workflow(ns, old_wid, wid)
        else:
            rows = store.list(old_ns, "workflow", old_wid)
            puts = [Put(Ref(ns, "workflow", wid, k), v.data, v.mime) for k, v in rows]
            puts += [Put(Ref(old_ns, "workflow", old_wid, k), None) for k, _ in rows]
            store.write(puts)
            n = len(rows)
        with self.catalog.lock:
            self.catalog.workflows.pop((old_ns, old_wid), None)
            replaced = self.catalog.workflows.get((ns, wid))
            new = WorkflowEntry(ns, wid, path, entry.workflow, entry.digest, entry.errors, time.time())
            if new.workflow is not None:
                new.workflow.id = wid
            self.catalog.workflows[(ns, wid)] = new
        if replaced is not None and replaced.subscription is not None:
            replaced.subscription()
        self.triggers.remove(entry)
        self.manifests.set(old_ns, old_wid, None)
        self.manifests.set(ns, wid, entry.digest)
        self.triggers.apply(new)
        self.log.info("workflow renamed", extra={"fields": {"ns": ns, "from": f"{old_ns}/{old_wid}" if old_ns != ns else old_wid, "workflow": wid, "variables": n}})
        return new

    def reconcile(self, manifests: dict[str, dict[str, str]]) -> None:
        """Apply what happened while the daemon was down: a managed workflow whose file is
        gone is deleted, unless a new file with the same content appeared (a rename); a
        managed namespace whose folder is gone is removed."""
        with self.catalog.lock:
            namespaces = set(self.catalog.namespaces)
        for ns, man in manifests.items():
            if ns not in namespaces:
                self.remove_namespace(ns)
                continue
            present = {e.id: e for e in self.catalog.in_namespace(ns)}
            fresh = {e.digest: e for wid, e in present.items() if wid not in man}
            for wid, digest in man.items():
                if wid in present:
                    continue
                twin = fresh.pop(digest, None)
                if twin is not None:
                    self.rename_workflow(WorkflowEntry(ns, wid, self.root / ns / wid, twin.workflow, digest), ns, twin.id, twin.path)
                else:
                    n = self._delete_workflow_vars(wid, ns)
                    self.manifests.set(ns, wid, None)
                    self.log.info("workflow deleted (its file went while the daemon was down)",
                                  extra={"fields": {"ns": ns, "workflow": wid, "variables": n}})
