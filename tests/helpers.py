"""Small helpers shared by tests that run instances in threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; its return value (or exception) lands in the list."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test, which re-raises
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def wait_until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``cond`` until it holds.  ``timeout`` is a hang guard, not a bound the
    test measures: keep it far above what a loaded machine needs."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def install_plugin(site: Path, module: str, source: str, entry: str, version: str = "1.0") -> Path:
    """Lay out a plugin the way pip would: ``module.py`` plus a ``*.dist-info`` whose
    ``entry_points.txt`` names it in the ``isolde`` group; ``site`` goes on a path."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[isolde]\n{entry} = {module}\n")
    return site


def tree(root: Path) -> dict[str, bytes | None]:
    """Everything under ``root``: relative path -> bytes (None for a directory)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in files:
            out[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return out
