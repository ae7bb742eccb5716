"""The event bus conformance suite: what every :class:`isolde.events.EventBus` backend keeps.

A backend's tests subclass :class:`EventBusConformance` and provide a fixture
``bus`` giving a fresh, open bus (closed by the fixture afterwards; closing
twice must be harmless) that keeps an event nobody waits for at least 10
seconds and at least 10 events per namespace::

    class TestMyBus(EventBusConformance):
        @pytest.fixture
        def bus(self) -> Iterator[EventBus]:
            b = MyBus(...)
            yield b
            b.close()

Threads are synchronised through the bus's own ``waiting`` view (a wait in
progress is visible there), never by sleeping a fixed time.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest

from ..errors import IsoldeError
from ..events.errors import CANCELLED, Cancelled, EventError
from ..events.filters import EventFilter
from ..events.protocol import EventBus

_PATIENCE = 10.0
"""Seconds a test waits for something that should happen at once (only a broken bus reaches it)."""


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test, which checks it
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _until(cond: Callable[[], bool]) -> None:
    """Poll ``cond`` (a view of the bus) until it holds; fails after :data:`_PATIENCE`."""
    deadline = time.monotonic() + _PATIENCE
    gate = threading.Event()
    while not cond():
        assert time.monotonic() < deadline, "the bus did not reach the expected state"
        gate.wait(0.002)


def _joined(t: threading.Thread, out: list[Any]) -> Any:
    t.join(_PATIENCE)
    assert not t.is_alive(), "a wait did not return"
    return out[0]


def ev(type: str, **attrs: Any) -> dict[str, Any]:
    return {"type": type, "source": "conformance", **attrs}


class EventBusConformance:
    """Delivery rules of docs/events.md, checked on the ``bus`` fixture."""

    def test_publish_completes_and_checks_the_event(self, bus: EventBus) -> None:
        sent = bus.publish("ns", ev("t", data={"x": 1}))
        assert sent["specversion"] == "1.0" and sent["id"] and sent["time"]
        assert (sent["type"], sent["source"], sent["data"]) == ("t", "conformance", {"x": 1})
        with pytest.raises(EventError, match="'type' is required"):
            bus.publish("ns", {"source": "s"})
        with pytest.raises(EventError):
            bus.publish_later("ns", {"type": "t"}, 30)

    def test_kept_event_goes_to_the_first_waiter_once(self, bus: EventBus) -> None:
        sent = [bus.publish("ns", ev("t", seq=i)) for i in range(3)]
        assert [e["id"] for e in bus.pending("ns")] == [e["id"] for e in sent]
        for i in range(3):
            got = bus.wait("ns", [EventFilter("t")], 0)
            assert got is not None and got[0][1]["seq"] == i
        assert bus.wait("ns", [EventFilter("t")], 0) is None
        assert bus.pending("ns") == []

    def test_namespaces_are_separate(self, bus: EventBus) -> None:
        bus.publish("a", ev("t"))
        assert bus.pending("b") == []
        assert bus.wait("b", [EventFilter("t")], 0) is None
        assert bus.wait("a", [EventFilter("t")], 0) is not None

    def test_publish_reaches_every_current_waiter_with_its_own_copy(self, bus: EventBus) -> None:
        def waiter(ns: str) -> Callable[[], Any]:
            return lambda: bus.wait(ns, [EventFilter("t")], _PATIENCE)

        waits = [_in_thread(waiter(ns)) for ns in ("a", "a", "b")]
        _until(lambda: len(bus.waiting("a")) == 2 and len(bus.waiting("b")) == 1)
        sent = bus.publish("a", ev("t", data={"n": 1}))
        first, second = (_joined(*w) for w in waits[:2])
        assert first == [(0, sent)] and second == [(0, sent)]
        assert first[0][1] is not second[0][1]
        first[0][1]["data"]["n"] = 2
        assert second[0][1]["data"] == {"n": 1}
        assert bus.pending("a") == []  # taken: not kept
        bus.publish("b", ev("t"))
        assert _joined(*waits[2]) is not None

    def test_filters_match_context_globs(self, bus: EventBus) -> None:
        bus.publish("ns", ev("order", subject="bookings.sydney", count=3))
        assert bus.wait("ns", [EventFilter("order", {"subject": "bookings.melbourne"})], 0) is None
        assert bus.wait("ns", [EventFilter("order", {"missing": "x"})], 0) is None
        got = bus.wait("ns", [EventFilter("order", {"subject": "bookings.*", "count": 3})], 0)
        assert got is not None and got[0][1]["subject"] == "bookings.sydney"

    def test_wait_all_collects_one_event_per_filter(self, bus: EventBus) -> None:
        bus.publish("ns", ev("b", n=1))
        t, out = _in_thread(lambda: bus.wait("ns", [EventFilter("a"), EventFilter("b")], _PATIENCE, all=True))
        _until(lambda: bus.waiting("ns") != [])
        owner, filters, all_ = bus.waiting("ns")[0]
        assert (owner, [f.type for f in filters], all_) == (None, ["a", "b"], True)
        bus.publish("ns", ev("b", n=2))  # b is filled already: kept, not taken
        bus.publish("ns", ev("a", n=3))
        got = _joined(t, out)
        assert [(i, e["type"], e["n"]) for i, e in got] == [(0, "a", 3), (1, "b", 1)]
        assert [e["n"] for e in bus.pending("ns")] == [2]

    def test_wait_any_takes_the_first_match(self, bus: EventBus) -> None:
        bus.publish("ns", ev("b"))
        got = bus.wait("ns", [EventFilter("a"), EventFilter("b")], 0)
        assert got is not None and [(i, e["type"]) for i, e in got] == [(1, "b")]

    def test_wait_times_out_with_none(self, bus: EventBus) -> None:
        assert bus.wait("ns", [EventFilter("t")], 0.01) is None
        assert bus.waiting("ns") == []

    def test_interrupt_cancels_the_owners_waits_and_sleeps(self, bus: EventBus) -> None:
        w = _in_thread(lambda: bus.wait("ns", [EventFilter("t")], _PATIENCE, owner="i1"))
        s = _in_thread(lambda: bus.sleep(_PATIENCE, owner="i1", namespace="ns"))
        other = _in_thread(lambda: bus.wait("ns", [EventFilter("t")], _PATIENCE, owner="i2"))
        _until(lambda: len(bus.waiting("ns")) == 3)
        assert sorted(o or "" for o, _, _ in bus.waiting("ns")) == ["i1", "i1", "i2"]
        assert bus.interrupt("i1", "stop") == 2
        for res in (_joined(*w), _joined(*s)):
            assert isinstance(res, Cancelled) and res.code == CANCELLED and res.msg == "stop"
        assert [o for o, _, _ in bus.waiting("ns")] == ["i2"]
        bus.publish("ns", ev("t"))
        assert _joined(*other) is not None

    def test_subscriptions_see_events_without_taking_them(self, bus: EventBus) -> None:
        seen: list[Any] = []
        stop = bus.subscribe("ns", [EventFilter("start", {"region": "eu-*"})], seen.append)
        both: list[Any] = []
        bus.subscribe("ns", [EventFilter("x"), EventFilter("y")], both.append, all=True)
        bus.publish("ns", ev("start", region="eu-west"))
        bus.publish("ns", ev("start", region="us-east"))
        bus.publish("other", ev("start", region="eu-west"))
        for n, t in ((1, "x"), (2, "x"), (3, "y")):
            bus.publish("ns", ev(t, n=n))
        _until(lambda: len(seen) == 1 and len(both) == 1)
        assert seen[0][0][1]["region"] == "eu-west"
        assert [(i, e["n"]) for i, e in both[0]] == [(0, 1), (1, 3)]
        assert len(bus.pending("ns")) == 5
        stop()
        bus.publish("ns", ev("start", region="eu-north"))
        bus.publish("ns", ev("x", n=4))
        bus.publish("ns", ev("y", n=5))  # a later event fills the subscription's next round
        _until(lambda: len(both) == 2)
        assert len(seen) == 1

    def test_publish_later_delivers_after_the_delay(self, bus: EventBus) -> None:
        sent = bus.publish_later("ns", ev("later"), 0.01)
        got = bus.wait("ns", [EventFilter("later")], _PATIENCE)
        assert got is not None and got[0][1]["id"] == sent["id"]

    def test_close_cancels_waiters_and_refuses_publishing(self, bus: EventBus) -> None:
        w = _in_thread(lambda: bus.wait("ns", [EventFilter("t")], None))
        s = _in_thread(lambda: bus.sleep(_PATIENCE))
        _until(lambda: bus.waiting("ns") != [])
        bus.publish_later("ns", ev("never"), 30)
        assert not bus.closed
        bus.cancel_all()
        assert bus.closed
        assert isinstance(_joined(*w), Cancelled)
        assert isinstance(_joined(*s), Cancelled)
        with pytest.raises(IsoldeError, match="closed"):
            bus.publish("ns", ev("t"))
        with pytest.raises(Cancelled):
            bus.wait("ns", [EventFilter("t")], 1)
        with pytest.raises(Cancelled):
            bus.sleep(1)
        bus.close()  # idempotent
