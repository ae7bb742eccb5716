"""What a path under the served folder means: namespaces, workflows, drop files.

``DIR/<namespace>/**/*.yaml`` (and ``.yml``) are workflows; a workflow's id is its path
inside the namespace folder without the extension.  ``NAME.yaml.KEY`` beside
``NAME.yaml`` is workflow variable ``KEY``; ``DIR/<ns>/.vars/KEY`` is namespace variable
``KEY``.  Hidden files, editors' temporary files and files directly in ``DIR`` are ignored.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..variables import sniff_mime

__all__ = ["Item", "VARS_DIR", "WORKFLOW_SUFFIXES", "classify", "guess_mime", "is_under", "valid_namespace", "workflow_id"]

VARS_DIR: Final = ".vars"
WORKFLOW_SUFFIXES: Final = (".yaml", ".yml")
_VAR_FILE = re.compile(r"(.+)\.(yaml|yml)\.(.+)")
_TEMP_SUFFIXES: Final = ("~", ".swp", ".swo", ".swx", ".swpx", ".tmp", ".part", ".crdownload", ".kate-swp")


def workflow_id(reference: str) -> str:
    """A workflow id from any of the forms Direktiv used: ``/sub/wf.yaml``, ``sub/wf.yml``, ``sub/wf``."""
    ref = reference.strip().lstrip("/")
    for suffix in WORKFLOW_SUFFIXES:
        if ref.endswith(suffix):
            return ref[: -len(suffix)]
    return ref


def _ignored(name: str) -> bool:
    """Hidden files, editors' swap/backup files and vim's write test file ``4913``."""
    return (
        not name
        or name.startswith(".")
        or (name.startswith("#") and name.endswith("#"))
        or name.endswith(_TEMP_SUFFIXES)
        or name == "4913"
    )


def valid_namespace(name: str) -> bool:
    return not _ignored(name) and "\x00" not in name and len(name.encode()) <= 255


def is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Item:
    """What a path under ``DIR`` means: a namespace folder, a workflow file, a variable
    (file or directory), a namespace's ``.vars`` folder, or some other folder."""

    kind: str  # "ns" | "wf" | "wvar" | "nvar" | "vars" | "dir"
    namespace: str
    path: Path
    workflow: str = ""
    key: str = ""


def classify(root: Path, path: Path) -> Item | None:
    """Map a path to the item it belongs to (a file inside a variable directory belongs to
    that directory), or None when the daemon ignores it."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if not parts or not valid_namespace(parts[0]):
        return None
    ns = parts[0]
    base = root / ns
    if len(parts) == 1:
        return Item("ns", ns, base)
    if parts[1] == VARS_DIR:
        if len(parts) == 2:
            return Item("vars", ns, base / VARS_DIR)
        if _ignored(parts[2]):
            return None
        return Item("nvar", ns, base / VARS_DIR / parts[2], key=parts[2])
    for i in range(1, len(parts)):
        part = parts[i]
        if _ignored(part):
            return None
        last = i == len(parts) - 1
        if last and part.endswith(WORKFLOW_SUFFIXES):
            return Item("wf", ns, path, workflow=workflow_id("/".join(parts[1:])))
        m = _VAR_FILE.fullmatch(part)
        if m:
            wid = "/".join((*parts[1:i], m.group(1)))
            return Item("wvar", ns, base.joinpath(*parts[1 : i + 1]), workflow=wid, key=m.group(3))
    return Item("dir", ns, path)


def guess_mime(name: str, data: bytes) -> str:
    """A drop file's mime type: from its extension when known, else from its bytes
    (JSON, UTF-8 text, or octet-stream).  A getter decodes by content either way."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed and not encoding:
        return guessed
    return sniff_mime(data)
