"""Files in and out of an isolate's action folder, and the archive rules (SPEC §4.3, §7).

One package for an isolate file's whole way:

* :mod:`~isolde.files.paths`: touching paths an isolate or an archive could
  have planted (open flags that never follow a link, safe names, removal);
* :mod:`~isolde.files.archive`: the tar safety rules and extraction;
  :mod:`~isolde.files.packing`: packing a directory as a deterministic tar.gz;
* :mod:`~isolde.files.folder`: the action folder itself (creation 0700,
  ``out/<scope>`` directories, removal, sweeping folders of dead processes);
* :mod:`~isolde.files.inputs`: materialising ``files:`` entries from the
  store's readable streams (``open_value(scope, key)``);
* :mod:`~isolde.files.outputs`: collecting ``out/<scope>/`` as values;
* :mod:`~isolde.files.watch` and :mod:`~isolde.files.staging`: following
  ``out/`` while the isolate runs and staging big files as they complete.
"""

from __future__ import annotations

from .archive import INVALID_CODE, LIMIT_CODE, MAX_META_BYTES, MAX_META_CHAIN, UNSAFE_CODE, ArchiveLimits, extract
from .folder import ActionFolder, ActionFolders, sweep_dead_folders
from .inputs import FILE_TYPES, MODE_MASK, FileSpec, OpenValue, ValueStream
from .outputs import DIR_MIME, FILE_MIME, INLINE_MAX, Output
from .packing import pack_dir
from .paths import MAX_DEPTH, file_kind, remove_tree, safe_relpath
from .watch import SETTLE_NS, OutWatcher

__all__ = [
    "ActionFolder",
    "ActionFolders",
    "ArchiveLimits",
    "DIR_MIME",
    "FILE_MIME",
    "FILE_TYPES",
    "FileSpec",
    "INLINE_MAX",
    "INVALID_CODE",
    "LIMIT_CODE",
    "MAX_DEPTH",
    "MAX_META_BYTES",
    "MAX_META_CHAIN",
    "MODE_MASK",
    "OpenValue",
    "Output",
    "OutWatcher",
    "SETTLE_NS",
    "UNSAFE_CODE",
    "ValueStream",
    "extract",
    "file_kind",
    "pack_dir",
    "remove_tree",
    "safe_relpath",
    "sweep_dead_folders",
]
