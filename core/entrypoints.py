"""Entry points of the ``isolde`` group, read once per Python environment.

Reading entry points means importing ``importlib.metadata`` and scanning every installed
distribution: tens of milliseconds on each start of a short command.  What was found is
kept in the user's cache directory under a fingerprint of the environment (the
interpreter, the import path, and the modification time of each directory on it: pip
installing or removing a distribution changes its site directory), so only the first
start after an install pays for the scan.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from .records import Frozen

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any


class EntryPoint(Frozen):
    __slots__ = ("name", "value", "dist", "version")
    __match_args__ = ("name", "value", "dist", "version")
    name: str
    value: str  # "module:attr" or "module"
    dist: str
    version: str

    def __init__(self, name: str, value: str, dist: str, version: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "version", version)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(name={self.name!r}, value={self.value!r}, dist={self.dist!r}, "
                f"version={self.version!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: EntryPoint = other
            return (self.name, self.value, self.dist, self.version) == (o.name, o.value, o.dist, o.version)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.value, self.dist, self.version))

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` installed in this environment."""
    fingerprint = _fingerprint(group)
    path = _cache_file(fingerprint)
    if path is not None:
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
            if kept["fingerprint"] == fingerprint:
                return [EntryPoint(**e) for e in kept["entry_points"]]
        except (OSError, ValueError, TypeError, KeyError):
            pass
    found = _scan(group)
    if path is not None:
        _store(path, fingerprint, found)
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


def _fingerprint(group: str) -> str:
    """The interpreter, the group, and each import path entry with its modification time."""
    parts = [sys.executable, sys.version, group]
    for entry in sys.path:
        try:
            parts.append(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}\0-")
    return "\n".join(parts)


def _cache_file(fingerprint: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    # FNV-1a (64 bits) names the file: no hashlib (OpenSSL) to load at start; the file
    # holds the whole fingerprint, so two environments that share a name only rescan.
    digest = 0xCBF29CE484222325
    for byte in fingerprint.encode("utf-8", "surrogateescape"):
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return folder / f"entry-points-{digest:016x}.json"


def _store(path: Path, fingerprint: str, found: list[EntryPoint]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "entry_points": [_fields(e) for e in found]}),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: scan again next time


def _fields(e: EntryPoint) -> dict[str, str]:
    return {"name": e.name, "value": e.value, "dist": e.dist, "version": e.version}


__all__ = ["EntryPoint", "cache_dir", "entry_points"]
