"""Instance ids."""

from __future__ import annotations

import os
import time


def new_instance_id() -> str:
    """A time-ordered (version 7) UUID as text, without the cost of building a ``uuid.UUID``:
    48 bits of Unix time in milliseconds, then random bits.  Ids made later sort after earlier
    ones, so the instance history's keys (``isolde.history``) are appended to the store's
    B-tree instead of scattered over it (a write touches a page or two, not one per record)."""
    ms = time.time_ns() // 1_000_000
    h = os.urandom(10).hex()
    return f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{h[:3]}-{'89ab'[int(h[3], 16) & 3]}{h[4:7]}-{h[7:19]}"


__all__ = ["new_instance_id"]
