"""Instance ids."""

from __future__ import annotations

import os


def new_instance_id() -> str:
    """A random (version 4) UUID as text, without the cost of building a ``uuid.UUID``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


__all__ = ["new_instance_id"]
