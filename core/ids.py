"""Instance ids."""

from __future__ import annotations

import os
import threading
import time

_last = 0  # the last id's 60-bit time stamp (milliseconds and 12 bits of a millisecond)
_last_lock = threading.Lock()


def new_instance_id() -> str:
    """A time-ordered (version 7) UUID as text, without the cost of building a ``uuid.UUID``:
    48 bits of Unix time in milliseconds, 12 bits of a millisecond (RFC 9562's "increased
    clock precision"), then random bits.  Within a process each id sorts after the one made
    before it, even in the same millisecond (the stamp is at least the last one plus one);
    so the instance history's keys (``isolde.history``) are appended to the store's B-tree
    instead of scattered over it, and key order is the order the instances started."""
    global _last
    ms, sub = divmod(time.time_ns(), 1_000_000)
    stamp = (ms << 12) | (sub * 4096 // 1_000_000)
    with _last_lock:
        if stamp <= _last:
            stamp = _last + 1
        _last = stamp
    ms, frac = stamp >> 12, stamp & 0xFFF
    h = os.urandom(8).hex()
    return f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{frac:03x}-{'89ab'[int(h[0], 16) & 3]}{h[1:4]}-{h[4:16]}"


__all__ = ["new_instance_id"]
