"""The event bus (``engine.events``), the event states, and ``isolde run --event``.

Waiting instances run in a thread; the test publishes once the bus shows the
instance waiting (``engine.events.waiting``), so nothing depends on sleeps.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import isolde
from helpers import in_thread, wait_until
from conftest import Cli
from isolde.conformance.events import EventBusConformance
from isolde.events import EventBus, EventError, EventFilter, InProcessEventBus, normalize


def run_waiting(engine: isolde.Engine, wf: str | Path, *, namespace: str = "default", waits: int = 1,
                **kw: Any) -> tuple[threading.Thread, list[Any]]:
    """Start an instance in a thread and return once it waits on the bus."""
    t, out = in_thread(lambda: engine.run(wf, namespace=namespace, **kw))
    wait_until(lambda: len(engine.events.waiting(namespace)) >= waits or bool(out))
    return t, out


def finish(t: threading.Thread, out: list[Any]) -> isolde.Result:
    t.join(5)
    assert not t.is_alive(), "instance still waiting"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def ev(type: str, **attrs: Any) -> dict[str, Any]:
    return {"type": type, "source": "test", **attrs}


# -- the bus itself ---------------------------------------------------------------------------


class TestInProcessBusConformance(EventBusConformance):
    """The in-process bus passes the suite every event bus backend runs."""

    @pytest.fixture
    def bus(self) -> Iterator[EventBus]:
        b = InProcessEventBus()
        yield b
        b.close()


def test_normalize_fills_in_and_checks() -> None:
    e = normalize({"type": "t", "source": "s", "data": {"x": 1}, "hello": "w"})
    assert e["specversion"] == "1.0" and e["id"] and e["time"].endswith("Z")
    assert (e["type"], e["source"], e["hello"], e["data"]) == ("t", "s", "w", {"x": 1})
    bad = [
        ({"source": "s"}, "'type' is required"),
        ({"type": "t"}, "'source' is required"),
        ({"type": "t", "source": "s", "specversion": "0.3"}, "specversion '0.3' is not supported"),
        ({"type": "t", "source": "s", "Hello": "x"}, "attribute name 'Hello' is invalid"),
        ({"type": "t", "source": "s", "x": {"a": 1}}, "'x' must be a string, number or boolean"),
        ({"type": "t", "source": "s", "data": 1, "data_base64": "AA=="}, "not both"),
        ({"type": "t", "source": "s", "data_base64": "%%%"}, "must be a base64 string"),
        ({"type": "t", "source": "s", "time": 5}, "'time' must be a string"),
        ([1], "must be a JSON object"),
    ]
    for event, msg in bad:
        with pytest.raises(EventError, match=msg):
            normalize(event)
    with pytest.raises(EventError, match=r"over the 100-byte limit \(raise \[limits\] max_event_bytes"):
        normalize({"type": "t", "source": "s", "data": "x" * 100}, max_bytes=100)


def test_filters_match_type_and_context_globs() -> None:
    e = normalize(ev("order", subject="bookings.sydney", customer="c1", count=3, flag=True))
    assert EventFilter("order").matches(e)
    assert not EventFilter("orders").matches(e)
    assert EventFilter("order", {"subject": "bookings.*", "customer": "c1"}).matches(e)
    assert not EventFilter("order", {"subject": "bookings.melbourne"}).matches(e)
    assert EventFilter("order", {"count": 3, "flag": True}).matches(e)
    assert EventFilter("order", {"count": "3", "flag": "true"}).matches(e)
    assert not EventFilter("order", {"missing": "x"}).matches(e)
    assert EventFilter("order", {"missing": None}).matches(e)
    assert not EventFilter("order", {"customer": None}).matches(e)


def test_an_event_nobody_waits_for_is_kept_once_and_bounded() -> None:
    bus = InProcessEventBus(retain_count=2, retain_seconds=60)
    for i in range(3):
        bus.publish("ns", ev("t", seq=i))
    assert [e["seq"] for e in bus.pending("ns")] == [1, 2]  # the oldest went first
    got = bus.wait("ns", [EventFilter("t")], 0)
    assert got is not None and got[0][1]["seq"] == 1
    assert bus.wait("ns", [EventFilter("t")], 0)[0][1]["seq"] == 2
    assert bus.wait("ns", [EventFilter("t")], 0) is None  # each kept event is taken once
    assert bus.pending("other") == []
    short = InProcessEventBus(retain_seconds=0.05)
    short.publish("ns", ev("t"))
    time.sleep(0.08)
    assert short.wait("ns", [EventFilter("t")], 0) is None








def test_a_failing_subscriber_does_not_break_the_publisher() -> None:
    errors: list[BaseException] = []
    bus = InProcessEventBus(on_callback_error=errors.append)

    def broken(received: Any) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("ns", [EventFilter("t")], broken)
    bus.publish("ns", ev("t"))
    assert [str(e) for e in errors] == ["subscriber bug"]




def test_engine_limits_configure_the_bus(data_dir: Path) -> None:
    with isolde.Engine(data_dir=data_dir, config={"limits": {"max_event_bytes": 200, "event_retain_count": 1}}) as engine:
        with pytest.raises(EventError, match="200-byte limit"):
            engine.events.publish("default", ev("t", data="x" * 300))
        engine.events.publish("default", ev("t", n=1))
        engine.events.publish("default", ev("t", n=2))
        assert [e["n"] for e in engine.events.pending("default")] == [2]
        assert engine.events is engine.events


# -- generateEvent / consumeEvent ----------------------------------------------------------------

LISTENER = """
states:
- id: listen
  type: consumeEvent
  timeout: PT5S
  event:
    type: greeting
    context:
      customer: jq(.customer)
      source: "greeters.*"
"""

GENERATOR = """
states:
- id: send
  type: generateEvent
  event:
    type: greeting
    source: greeters.eu
    data:
      name: jq(.name)
    context:
      customer: jq(.customer)
      Priority: 5
"""


def test_generate_event_reaches_a_waiting_listener(engine: isolde.Engine) -> None:
    t, out = run_waiting(engine, LISTENER, input={"customer": "c1"})
    other = engine.run(GENERATOR, input={"customer": "c2", "name": "Bob"})  # filtered out
    assert other.ok and other.output == {"customer": "c2", "name": "Bob"}
    sent = engine.run(GENERATOR, input={"customer": "c1", "name": "Trent"})
    assert sent.log[0].startswith("published event type 'greeting' source 'greeters.eu' id ")
    result = finish(t, out)
    assert result.ok, result.error
    event = result.output["greeting"]
    assert result.output["customer"] == "c1"
    assert set(event) == {"specversion", "id", "time", "type", "source", "customer", "priority", "data", "datacontenttype"}
    assert event["datacontenttype"] == "application/json"  # Direktiv's default for data without one
    assert (event["specversion"], event["type"], event["source"]) == ("1.0", "greeting", "greeters.eu")
    assert (event["data"], event["priority"], event["customer"]) == ({"name": "Trent"}, 5, "c1")
    assert result.log == ["waiting up to 5s for event 'greeting' (customer=c1, source=greeters.*)"]
    # the event for c2 is still kept for whoever waits for it
    assert [e["customer"] for e in engine.events.pending("default")] == ["c2"]


def test_consume_event_times_out_with_the_soft_timeout_code(engine: isolde.Engine) -> None:
    wf = """
states:
- id: listen
  type: consumeEvent
  timeout: PT0.1S
  event:
    type: never
"""
    result = engine.run(wf)
    assert result.error.code == "direktiv.cancels.timeout.soft"
    assert result.error.message == "no event 'never' arrived within 0.1s (state timeout)"
    caught = engine.run(wf + """  catch:
  - error: direktiv.cancels.timeout.*
    transition: late
- id: late
  type: noop
  transform:
    late: jq(.error.code)
""")
    assert caught.output == {"late": "direktiv.cancels.timeout.soft"}


def test_waiting_instance_is_cancelled_when_the_engine_closes(data_dir: Path) -> None:
    engine = isolde.Engine(data_dir=data_dir, config={})
    try:
        t, out = run_waiting(engine, "states:\n- id: w\n  type: consumeEvent\n  event:\n    type: x\n")
    finally:
        engine.close()
    result = finish(t, out)
    assert (result.error.code, result.error.state) == ("isolde.cancelled", "w")


def test_generate_event_data_content_types_and_delay(engine: isolde.Engine) -> None:
    wf = """
states:
- id: send
  type: generateEvent
  delay: PT0.05S
  event:
    type: file
    source: me
    datacontenttype: application/octet-stream
    data: aGVsbG8=
  transition: text
- id: text
  type: generateEvent
  event:
    type: note
    source: me
    data_content_type: text/plain
    data: hello world
"""
    assert engine.run(wf).ok
    note = engine.events.wait("default", [EventFilter("note")], 0)
    assert note is not None and note[0][1]["data"] == "hello world"
    got = engine.events.wait("default", [EventFilter("file")], 5)
    assert got is not None
    assert got[0][1]["data_base64"] == "aGVsbG8=" and "data" not in got[0][1]
    assert got[0][1]["datacontenttype"] == "application/octet-stream"


def test_generate_event_rejects_bad_context_at_load_and_run(engine: isolde.Engine) -> None:
    bad = """states:
- id: send
  type: generateEvent
  delay: later
  event:
    type: t
    source: s
    context:
      my-key: 1
      type: x
      ok: jq(.a | )
"""
    problems = [(p.line, p.message) for p in engine.validate(bad)]
    assert [line for line, _ in problems] == [4, 9, 10, 11]
    assert "invalid delay 'later'" in problems[0][1]
    assert "attribute name 'my-key' is invalid" in problems[1][1]
    assert "'type' cannot be set through context" in problems[2][1]
    assert problems[3][1].startswith("invalid jq")
    wf = "states:\n- id: send\n  type: generateEvent\n  event:\n    type: t\n    source: s\n    context:\n      obj: jq(.)\n"
    result = engine.run(wf, input={"a": 1})
    assert result.error.code == "isolde.event.invalid"
    assert "'obj' must be a string, number or boolean" in result.error.message


def test_corpus_generate_event_then_listener_gets_the_kept_event(engine: isolde.Engine, corpus: Path) -> None:
    # generate-event.yaml delays 1 s then publishes test.simple; nobody waits yet, so it is kept
    assert engine.run(corpus / "v06-v10-knative" / "generate-event.yaml").ok
    listener = "states:\n- id: listen\n  type: consumeEvent\n  timeout: PT1S\n  event:\n    type: test.simple\n  transform:\n    result: x\n    source: jq(.[\"test.simple\"].source)\n"
    result = engine.run(listener)
    assert result.output == {"result": "x", "source": "generate-event"}


def test_raw_era_filters_are_literal_unless_braced(engine: isolde.Engine) -> None:
    wf = """
id: rawlisten
states:
- id: listen
  type: consumeEvent
  timeout: PT5S
  event:
    type: greetingEventType
    context:
      source: greetingEventSource
      customer: '{{ .customer }}'
  transform: '{ name: .greetingEventType.data.name }'
"""
    engine.events.publish("default", ev("greetingEventType", customer="c9", data={"name": "Nope"}))
    engine.events.publish("default", {"type": "greetingEventType", "source": "greetingEventSource",
                                      "customer": "c9", "data": {"name": "Trent"}})
    assert engine.run(wf, input={"customer": "c9"}).output == {"name": "Trent"}


# -- eventsAnd / eventsXor -------------------------------------------------------------------------


def test_corpus_events_and_wait(engine: isolde.Engine, corpus: Path) -> None:
    t, out = run_waiting(engine, corpus / "v06-v10-knative" / "events-and-wait.yaml")
    engine.events.publish("default", ev("eventtype1", hello="world1", data={"hello": "world"}))
    time.sleep(0.05)
    assert not out  # still pending after the first event
    engine.events.publish("default", ev("eventtype2", hello="world2", data={"hello": "world"}))
    result = finish(t, out)
    assert result.output["eventtype1"]["hello"] == "world1"
    assert result.output["eventtype2"]["hello"] == "world2"
    assert result.output["eventtype1"]["data"] == {"hello": "world"}
    assert json.loads(result.log[-1]) == result.output  # log: jq(.) in state greet


def test_events_and_is_order_independent_and_keeps_repeated_types_apart(engine: isolde.Engine) -> None:
    wf = """
states:
- id: both
  type: eventsAnd
  timeout: PT5S
  events:
  - type: a
  - type: b
  - type: a
    context:
      n: "2"
  transform:
    a: jq(.a.n)
    b: jq(.b.n)
    a2: jq(.["a.2"].n)
"""
    t, out = run_waiting(engine, wf)
    for e in (ev("b", n="1"), ev("a", n="2"), ev("a", n="1")):
        engine.events.publish("default", e)
    assert finish(t, out).output == {"a": "1", "b": "1", "a2": "2"}


def test_corpus_events_xor_wait(engine: isolde.Engine, corpus: Path) -> None:
    t, out = run_waiting(engine, corpus / "v06-v10-knative" / "events-xor-wait.yaml")
    engine.events.publish("default", ev("eventtype1", hello="world1"))
    engine.events.publish("default", ev("eventtype2", hello="world2"))
    result = finish(t, out)
    assert result.output["eventtype1"]["hello"] == "world1"
    assert "eventtype2" not in result.output
    assert engine.events.pending("default")[0]["type"] == "eventtype2"


XOR = """
states:
- id: which
  type: eventsXor
  timeout: PT5S
  events:
  - event:
      type: approved
    transition: ship
    transform:
      decision: "yes"
  - event:
      type: rejected
      context:
        reason: "price*"
    transform:
      decision: "no"
      why: jq(.rejected.reason)
    transition: refund
- id: ship
  type: noop
  transform:
    shipped: jq(.decision)
- id: refund
  type: noop
  transform:
    refunded: jq(.why)
"""


@pytest.mark.parametrize(("events", "output"), [
    ([ev("rejected", reason="colour"), ev("approved")], {"shipped": "yes"}),
    ([ev("rejected", reason="price too high"), ev("approved")], {"refunded": "price too high"}),
])
def test_events_xor_takes_the_transition_of_the_first_event(engine: isolde.Engine, events: list[dict[str, Any]],
                                                          output: dict[str, Any]) -> None:
    t, out = run_waiting(engine, XOR)
    for e in events:
        engine.events.publish("default", e)
    assert finish(t, out).output == output


def test_raw_era_aliases(engine: isolde.Engine) -> None:
    wf = """
id: old
states:
- id: and
  type: eventAnd
  timeout: PT5S
  events:
  - type: x
  - type: y
  transition: xor
- id: xor
  type: eventXor
  timeout: PT5S
  events:
  - event:
      type: z
    transform: '{ got: [.x.n, .y.n, .z.n] }'
"""
    for t, n in (("y", 2), ("z", 3), ("x", 1)):
        engine.events.publish("default", ev(t, n=n))
    assert engine.run(wf).output == {"got": [1, 2, 3]}


def test_event_states_need_events(engine: isolde.Engine) -> None:
    wf = "states:\n- id: e\n  type: eventsAnd\n  events: []\n"
    assert [p.message for p in engine.validate(wf)] == ["at least one event is required"]
    wf = "states:\n- id: e\n  type: eventsXor\n  events:\n  - event: {type: a}\n    transition: nowhere\n"
    assert "transition to unknown state 'nowhere'" in engine.validate(wf)[0].message
    wf = "states:\n- id: e\n  type: consumeEvent\n  event:\n    type: a\n    context:\n      data: x\n"
    assert engine.validate(wf)[0].message == "filters match context attributes only, not the event's data"


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_run_delivers_events_in_order(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "twice.yaml"
    wf.write_text("""
states:
- id: first
  type: consumeEvent
  event:
    type: step
  transform:
    first: jq(.step.data)
  transition: second
- id: second
  type: consumeEvent
  event:
    type: step
  transform:
    first: jq(.first)
    second: jq(.step.data)
    source: jq(.step.source)
""")
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"type": "step", "data": 2}, {"type": "unused"}]))
    r = cli("run", str(wf), "--event", '{"type": "step", "data": 1}', "--event", f"@{events}")
    assert r.code == 0, r.stderr
    assert r.json == {"first": 1, "second": 2, "source": "isolde-cli"}
    assert "warning: the --event of type 'unused'" in r.stderr


def test_cli_run_rejects_a_bad_event(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("states:\n- id: a\n  type: noop\n")
    r = cli("run", str(wf), "--event", '{"data": 1}')
    assert r.code == 2
    assert r.stderr.strip() == "isolde: error: --event #1: event attribute 'type' is required (a non-empty string)"
    r = cli("run", str(wf), "--event", f"@{tmp_path / 'missing.json'}")
    assert r.code == 2 and "cannot read" in r.stderr


def test_cli_waiting_instance_times_out(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text("states:\n- id: w\n  type: consumeEvent\n  timeout: PT0.1S\n  event:\n    type: t\n")
    r = cli("run", str(wf), "--event", '{"type": "other"}')
    assert r.code == 1
    assert "[w] waiting up to 0.1s for event 't'" in r.stderr
    assert "direktiv.cancels.timeout.soft" in r.stderr


def test_retain_for_infinity_survives_expiry() -> None:
    bus = InProcessEventBus(retain_seconds=0.01)
    bus.publish("ns", ev("t"), retain_for=math.inf)
    time.sleep(0.03)
    assert bus.wait("ns", [EventFilter("t")], 0) is not None


def test_corpus_simple_listener_with_its_async_generator(engine: isolde.Engine, corpus: Path, tmp_path: Path) -> None:
    assert "action" in engine.registry.state_types  # built-in: never a skip
    for name in ("simple-listener.yaml", "generate-event.yaml"):
        (tmp_path / name).write_bytes((corpus / "v06-v10-knative" / name).read_bytes())
    result = engine.run(tmp_path / "simple-listener.yaml")
    assert result.ok, result.error
    assert result.output["result"] == "x"


def test_computed_filter_values_match_exactly_not_as_globs(engine: isolde.Engine) -> None:
    """A filter value computed from (untrusted) input must not widen to other events."""
    wf = (
        "direktiv_api: workflow/v1\nstates:\n- id: w\n  type: consumeEvent\n  timeout: PT0.3S\n"
        "  event:\n    type: order.paid\n    context:\n      customer: 'jq(.customer)'\n"
    )
    engine.events.publish("default", {"type": "order.paid", "source": "shop", "customer": "c42"})
    res = engine.run(wf, {"customer": "c*"})
    assert res.error is not None and res.error.code == "direktiv.cancels.timeout.soft"
    engine.events.publish("default", {"type": "order.paid", "source": "shop", "customer": "c*"})
    res = engine.run(wf, {"customer": "c*"})
    assert res.ok and res.output["order.paid"]["customer"] == "c*"
