"""Drop files: ``NAME.yaml.KEY`` and ``<ns>/.vars/KEY`` as workflow and namespace variables.

A file is stored as it is (mime from its extension or its bytes); a directory as a
deterministic tar.gz (``application/gzip``, as ``out/`` directories), packed once it has
been quiet for ``settle`` seconds.  Deleting the file leaves the variable unless
``[daemon] delete_vars_with_files = true``.
"""

from __future__ import annotations

import io
import logging
import os
import stat as _stat
from pathlib import Path
from typing import Any, Callable, Final

from ..store import VariableStore, Put, Ref, StoreError, check_key
from .catalog import Catalog
from .layout import Item, guess_mime
from .settings import DaemonSettings
from .watch import FileReader, Pending

__all__ = ["DIR_MIME", "DropVariables"]

DIR_MIME: Final = "application/gzip"  # the same type as directories collected from out/

PackFn = Callable[[Path, io.BytesIO, str], None]


class DropVariables:
    """Applies drop files and folders to the variable store."""

    def __init__(self, store: VariableStore, catalog: Catalog, pending: Pending, reader: FileReader,
                 settings: DaemonSettings, log: logging.Logger, *, max_variable_bytes: int, pack: PackFn) -> None:
        self.store = store
        self.catalog = catalog
        self.pending = pending
        self.reader = reader
        self.settings = settings
        self.log = log
        self.max_var = max_variable_bytes
        self._pack_dir = pack  # packs a directory as tar.gz into a buffer (raises WorkflowError)

    def sync(self, item: Item) -> None:
        """Store (or, with ``delete_vars_with_files``, delete) the variable a drop path stands for."""
        scope = "namespace" if item.kind == "nvar" else "workflow"
        fields = {"ns": item.namespace, "workflow": item.workflow or None, "key": item.key, "file": str(item.path)}
        try:
            check_key(item.key)
        except StoreError as exc:
            self.log.warning("drop file ignored: its name is not a valid variable key", extra={"fields": {**fields, "error": str(exc)}})
            return
        ref = Ref(item.namespace, scope, item.workflow if scope == "workflow" else "", item.key)
        try:
            st = os.lstat(item.path)
        except FileNotFoundError:
            st = None
        store = self.store
        if st is None:
            if not self.settings.delete_vars_with_files or self.pending.gone_recently(item.path, self.settings.delete_grace):
                return
            if store.get(ref) is not None:
                store.write([Put(ref, None)])
                self.log.info("variable deleted with its file", extra={"fields": fields})
            return
        if _stat.S_ISREG(st.st_mode):
            data = self.reader.read(item.path, st, self.max_var + 1)
            if data is None:
                return
            mime = guess_mime(item.key, data)
        elif _stat.S_ISDIR(st.st_mode):
            packed = self._pack(item.path, fields)
            if packed is None:
                return
            data, mime = packed, DIR_MIME
        else:
            self.log.warning("drop file ignored: not a regular file or directory (links are never followed)", extra={"fields": fields})
            return
        with self.catalog.lock:
            self.catalog.namespaces.add(item.namespace)
        old = store.get(ref)
        if old is not None and old.mime == mime and old.data == data:
            return
        store.write([Put(ref, data, mime)])
        self.log.info("variable stored", extra={"fields": {**fields, "bytes": len(data), "mime": mime}})

    def _pack(self, path: Path, fields: dict[str, Any]) -> bytes | None:
        from ..errors import WorkflowError

        buf = _CappedBuffer(self.max_var)
        try:
            self._pack_dir(path, buf, f"drop folder {path}")
        except WorkflowError as exc:
            self.log.error("variable directory not stored", extra={"fields": {**fields, "error": exc.msg}})
            return None
        except _TooBig:
            self.log.error("variable directory not stored: its tar.gz is over [limits] max_variable_bytes",
                           extra={"fields": {**fields, "limit": self.max_var}})
            return None
        return buf.getvalue()


class _TooBig(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """A BytesIO that refuses to grow past ``cap`` (a packed directory over the variable limit)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.cap:
            raise _TooBig()
        return super().write(data)
