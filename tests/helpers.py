"""Small helpers shared by tests that run instances in threads."""

from __future__ import annotations

import threading
import time
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


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)
