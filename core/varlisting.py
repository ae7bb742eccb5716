"""The text of ``isolde vars list``: one tab-separated line per variable (key, size, MIME
type, local update time), shared by the click command and the console script's fast path."""

from __future__ import annotations

import time
from typing import Any, Iterable


def variable_lines(rows: Iterable[tuple[str, Any]]) -> str:
    """``rows``: (key, variable metadata with ``size``, ``mime``, ``updated``)."""
    lines = []
    stamps: dict[int, str] = {}  # one strftime per distinct second
    for key, var in rows:
        second = int(var.updated)
        updated = stamps.get(second)
        if updated is None:
            updated = stamps[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        lines.append(f"{key}\t{var.size}\t{var.mime}\t{updated}\n")
    return "".join(lines)
