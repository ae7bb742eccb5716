"""The text of ``isolde vars list``: one tab-separated line per variable (key, size, MIME
type, local update time), shared by the click command and the console script's fast path."""

from __future__ import annotations

import time

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Iterable


def variable_lines(rows: Iterable[tuple[str, Any]]) -> str:
    """``rows``: (key, variable metadata with ``size``, ``mime``, ``updated``)."""
    return listing_lines((key, var.size, var.mime, var.updated) for key, var in rows)


def listing_lines(rows: Iterable[tuple[str, int, str, float]]) -> str:
    """``rows``: (key, size, MIME type, updated) as the LMDB store's ``list_listing`` reads them."""
    lines = []
    stamps: dict[int, str] = {}  # one strftime per distinct second
    for key, size, mime, updated in rows:
        second = int(updated)
        stamp = stamps.get(second)
        if stamp is None:
            stamp = stamps[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
        lines.append(f"{key}\t{size}\t{mime}\t{stamp}\n")
    return "".join(lines)
