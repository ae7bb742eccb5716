"""Entry points of the ``isolde`` group, read once per Python environment.

Reading entry points means importing ``importlib.metadata`` and scanning every installed
distribution: tens of milliseconds on each start of a short command.  What was found is
kept in the user's cache directory under a fingerprint of the environment (the
interpreter, the import path, and the modification time of each directory on it: pip
installing or removing a distribution changes its site directory), so only the first
start after an install pays for the scan.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class EntryPoint:
    name: str
    value: str  # "module:attr" or "module"
    dist: str
    version: str

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` installed in this environment."""
    path = _cache_file(group)
    if path is not None:
        try:
            return [EntryPoint(**e) for e in json.loads(path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            pass
    found = _scan(group)
    if path is not None:
        _store(path, found)
    return found


def _scan(group: str) -> list[EntryPoint]:
    from importlib import metadata

    out = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        out.append(EntryPoint(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?"))
    return out


def cache_dir() -> Path | None:
    """isolde's directory in the user's cache (``$XDG_CACHE_HOME/isolde``, else
    ``~/.cache/isolde``; None without an absolute one); not made here."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "isolde" if os.path.isabs(base) else None


def _cache_file(group: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    parts = [sys.executable, sys.version, group]
    for entry in sys.path:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return folder / f"entry-points-{digest}.json"


def _store(path: Path, found: list[EntryPoint]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps([_fields(e) for e in found]), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: scan again next time


def _fields(e: EntryPoint) -> dict[str, str]:
    return {"name": e.name, "value": e.value, "dist": e.dist, "version": e.version}


__all__ = ["EntryPoint", "cache_dir", "entry_points"]
