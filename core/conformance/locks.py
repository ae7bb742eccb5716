"""LocksConformance: the VariableLocks contract as pytest tests.

A backend runs it by subclassing it and providing a ``locks`` fixture that
yields a fresh VariableLocks (see ``isolde.conformance.store`` for the pattern).
Synchronisation is by events and barriers only; the one bounded wait is a
lock's own ``timeout``.
"""

from __future__ import annotations

import threading

import pytest

from ..errors import WorkflowError
from ..locks import DEADLOCK_CODE, TIMEOUT_CODE, VariableLocks

__all__ = ["LocksConformance"]

X, Y = b"ns\x00w\x00wf\x00x", b"ns\x00w\x00wf\x00y"


class LocksConformance:
    """Tests every VariableLocks must pass; needs a ``locks`` fixture."""

    def test_is_variable_locks(self, locks: VariableLocks) -> None:
        assert isinstance(locks, VariableLocks)

    def test_acquire_holds_release(self, locks: VariableLocks) -> None:
        locks.acquire("a", [X, Y], 1.0)
        assert locks.holds("a", X) and locks.holds("a", Y) and not locks.holds("b", X)
        locks.acquire("a", [X], 0.0)  # already held: counts as taken
        locks.release("a", [X])
        assert not locks.holds("a", X) and locks.holds("a", Y)
        locks.release("a", [X])  # not held: ignored
        locks.release("a")
        assert not locks.holds("a", Y)
        locks.release("nobody")

    def test_exclusive_between_owners(self, locks: VariableLocks) -> None:
        locks.acquire("a", [X], 1.0)
        with pytest.raises(WorkflowError) as ei:
            locks.acquire("b", [X], 0.0, {X: "'x' (workflow scope)"})
        assert ei.value.code == TIMEOUT_CODE and "'x' (workflow scope)" in str(ei.value)
        locks.acquire("b", [Y], 0.0)  # another variable is free
        locks.release("a")
        locks.acquire("b", [X], 0.0)
        assert locks.holds("b", X)
        locks.release("b")

    def test_waiter_takes_over_on_release(self, locks: VariableLocks) -> None:
        locks.acquire("a", [X], 1.0)
        got = threading.Event()
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                locks.acquire("b", [X], 60.0)
                got.set()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=wait)
        t.start()
        assert not got.is_set()
        locks.release("a", [X])
        t.join()
        assert not errors and got.is_set() and locks.holds("b", X)
        locks.release("b")

    def test_deadlock_is_detected(self, locks: VariableLocks) -> None:
        locks.acquire("a", [X], 1.0)
        locks.acquire("b", [Y], 1.0)
        a_waits = threading.Event()
        result: list[BaseException | None] = []

        def a() -> None:
            a_waits.set()
            try:
                locks.acquire("a", [Y], 60.0)
                result.append(None)
            except BaseException as exc:
                result.append(exc)
                locks.release("a")  # what an instance does when it ends failed

        t = threading.Thread(target=a)
        t.start()
        a_waits.wait()
        # "b" waiting for X, held by "a" which waits for Y, held by "b": a cycle,
        # detected by whichever of the two closes it.
        try:
            locks.acquire("b", [X], 60.0)
            mine: BaseException | None = None
        except WorkflowError as exc:
            mine = exc
        if mine is not None:
            assert getattr(mine, "code", "") == DEADLOCK_CODE
            locks.release("b")
            t.join()
            assert result == [None]
        else:
            t.join()
            assert isinstance(result[0], WorkflowError) and result[0].code == DEADLOCK_CODE
        locks.release("a")
        locks.release("b")

    def test_hand_over_passes_the_lock_before_the_write_is_durable(self, locks: VariableLocks) -> None:
        locks.acquire("a", [X, Y], 1.0)
        durable = locks.hand_over("a", [X])
        assert not locks.holds("a", X) and locks.holds("a", Y)
        locks.acquire("b", [X], 0.0)  # at once, in this process
        assert locks.holds("b", X)
        later = locks.hand_over("b", [X])
        durable()
        locks.acquire("c", [X], 0.0)
        later()
        locks.release("c")
        locks.acquire("d", [X], 0.0)
        locks.release("d")
        locks.release("a")
