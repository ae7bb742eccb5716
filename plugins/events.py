"""Event states: ``generateEvent``, ``consumeEvent``, ``eventsAnd``, ``eventsXor``.

All four use the engine's bus (``engine.events``, see ``isolde.events`` for the
delivery rules: namespaces, broadcast, kept events, glob filters).

Decisions, following Direktiv where it has a rule:

* **Where a received event goes**: the whole CloudEvent, in its JSON form
  (``specversion``, ``id``, ``source``, ``type``, ``time``, extension
  attributes, ``datacontenttype``, and ``data`` or ``data_base64``), is placed in
  the state data at ``.<type>``, for every event state and every era.  That is
  Direktiv's rule since v0.8 (its tests read ``.eventtype1.hello`` for an
  extension attribute and ``.hello.data.hello`` for the payload); Direktiv ≤ 0.5
  placed only the payload there, so old workflows read it at ``.<type>.data``.
  When ``eventsAnd`` lists one type twice, the later one goes to
  ``.<type>.<index>`` (Direktiv's rule).
* **Filters** (``context``): in structured documents each value may use
  ``jq(...)`` (evaluated against the state data when the state starts
  waiting); in raw-jq (v0.1–v0.3) documents a value is literal unless it is
  ``{{ jq program }}``.  String values are globs.  Keys are matched
  case-insensitively (attribute names are lower-case in CloudEvents).
* **Timeouts**: ``timeout`` (ISO-8601) bounds the wait, default 15 minutes (the
  deadline Direktiv used when none was given); when it passes the state raises
  the catchable ``direktiv.cancels.timeout.soft``, as Direktiv does.
* **eventsXor**: the first matching event picks its branch: the branch's
  ``transform`` is applied, then the branch's ``transition`` is taken (a branch
  without one falls back to the state's ``transition``, else the instance ends).
* **generateEvent**: publishes in the instance's namespace with a fresh ``id``
  and ``time`` and ``specversion: "1.0"``; ``context`` entries become extension
  attributes (names lower-cased; values must be strings, numbers or booleans,
  else the catchable ``isolde.event.invalid``).  Without ``data`` the event has
  none; ``datacontenttype`` is always set (``application/json`` unless given).  With a ``datacontenttype`` other than JSON, a string ``data`` that is
  valid base64 is sent as binary (``data_base64``), any other string as text
  (Direktiv's rule).  ``delay`` (ISO-8601, or ``immediate``, the default)
  publishes later without holding up the instance.
* ``eventAnd`` / ``eventXor`` (the v0.1–v0.3 spellings) are accepted as aliases.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from isolde.plugin import (
    Cancelled,
    EventBus,
    EventError,
    EventFilter,
    Expr,
    Literal,
    Received,
    Report,
    StateContext,
    StateSpec,
    StateType,
    Workflow,
    WorkflowError,
    IsoldeError,
    hookimpl,
    parse_duration,
)

TIMEOUT = "direktiv.cancels.timeout.soft"
INVALID_EVENT = "isolde.event.invalid"
DEFAULT_TIMEOUT = 15 * 60.0
"""Seconds an event state waits when it has no ``timeout``."""

# Attributes a generateEvent sets from its own fields, so `context` may not.
_OWN_ATTRIBUTES = frozenset(("specversion", "id", "type", "source", "datacontenttype", "data", "data_base64"))
_TEMPLATE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)

DECLARATIONS = """
struct event_filter "Which event to wait for." {
    type!: string         "The CloudEvent type, matched exactly."
    context: {any}        "Context attributes the event must carry (`source`, `subject`, extensions); string values are globs; in structured documents values may use `jq(...)`."
}
struct event_and_item "Direktiv <=0.3.0 form of an eventAnd entry: the filter under `event`." {
    event!: event_filter  "The event."
}
struct event_branch "One event an eventsXor waits for, and where it leads." {
    event!: event_filter  "The event."
    transition: stateid   "The state to go to when this event arrives first."
    transform: jx         "Applied to the state data when this event arrives first."
}
struct event_out "The CloudEvent to publish." {
    type!: string         "The CloudEvent type."
    source!: string       "The CloudEvent source."
    data: jx              "The payload, evaluated against the state data (none when absent)."
    datacontenttype: mime "Media type of the payload (default `application/json`)."
    data_content_type: mime "Same as `datacontenttype` (Direktiv's later spelling)."
    context: {any}        "Extension attributes (lower-case names; string, number or boolean values; `jq(...)` in structured documents)."
}
"""


# -- context: compiled at load (errors located there), evaluated at run ------------------


def _compile_context(values: dict[str, Any] | None, raw: bool, path: tuple[Any, ...], report: Report,
                     *, generating: bool) -> list[tuple[str, Expr]]:
    """Check and compile a ``context`` mapping; bad keys and jq programs are reported."""
    out: list[tuple[str, Expr]] = []
    for key, value in (values or {}).items():
        where = path + (key,)
        name = str(key).lower()
        if generating:
            if not name.isascii() or not name.isalnum():
                report.error(where, f"event attribute name '{key}' is invalid: CloudEvents attribute names use only "
                             "letters a-z and digits", key=True)
                continue
            if name in _OWN_ATTRIBUTES:
                report.error(where, f"'{key}' cannot be set through context; use the event's own field", key=True)
                continue
        elif name in ("data", "data_base64"):
            report.error(where, "filters match context attributes only, not the event's data", key=True)
            continue
        if raw:
            m = _TEMPLATE.match(value) if isinstance(value, str) else None
            expr = Literal(value) if m is None else report.compile(m.group(1).strip(), where, raw=True, shift=None)
        else:
            expr = report.compile(value, where, raw=False)
        out.append((name, expr))
    return out


def _context(state: StateSpec, slot: str, data: dict[str, Any], *, literal_computed: bool = False) -> dict[str, Any]:
    """Evaluate a compiled ``context`` mapping against the state data.

    With ``literal_computed`` (filters), a value computed by jq from the data matches
    exactly: its glob characters are escaped, so input such as ``"c*"`` cannot widen a
    filter to other callers' events.  Globs written in the workflow stay globs."""
    out = {}
    for k, e in state.extra.get(slot, ()):
        value = e.eval(data)
        if literal_computed and not e.literal and isinstance(value, str):
            value = _GLOB_CHARS.sub(r"[\1]", value)
        out[k] = value
    return out


_GLOB_CHARS = re.compile(r"([*?\[])")


def _filters(state: StateSpec, specs: list[dict[str, Any]], data: dict[str, Any]) -> list[EventFilter]:
    return [EventFilter(s["type"], _context(state, f"context{i}", data, literal_computed=True))
            for i, s in enumerate(specs)]


def _place(data: dict[str, Any], received: Received) -> dict[str, Any]:
    """Put each received event at ``.<type>`` (``.<type>.<index>`` for a repeated type)."""
    out = dict(data)
    used: set[str] = set()
    for index, event in received:
        key = event["type"]
        if key in used:
            key = f"{key}.{index}"
        used.add(key)
        out[key] = event
    return out


def _wait(state: StateSpec, filters: list[EventFilter], ctx: StateContext, *, all: bool) -> Received:
    """Wait on the bus; log once when the wait blocks; raise the soft timeout."""
    bus = _bus(ctx)
    timeout = state.fields.get("timeout")
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    got = bus.wait(ctx.namespace, filters, 0, all=all, owner=ctx.instance_id)
    if got is None:
        what = (" and " if all else " or ").join(f.describe() for f in filters)
        ctx.log(f"waiting up to {_span(timeout)} for event {what}")
        got = bus.wait(ctx.namespace, filters, timeout, all=all, owner=ctx.instance_id)
        if got is None:
            raise WorkflowError(TIMEOUT, f"no event {what} arrived within {_span(timeout)} (state timeout)")
    return got


def _bus(ctx: StateContext) -> EventBus:
    """The engine's bus; an engine that is already closed cancels the instance instead."""
    try:
        return ctx.events
    except IsoldeError:
        raise Cancelled("the engine is closing") from None


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# -- the states --------------------------------------------------------------------------


class GenerateEvent(StateType):
    name = "generateEvent"
    schema = """
    state generateEvent "Publishes a CloudEvent in the instance's namespace." {
        event!: event_out     "The event."
        delay: string         "Publish after this ISO-8601 duration instead of now (`immediate`, the default)."
    }
    """
    example = """
- id: announce
  type: generateEvent
  event:
    type: order.paid
    source: shop
    data: 'jq({order: .id})'
    context:
      customer: 'jq(.customer)'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        ev = state.fields["event"]
        path = state.path + ("event",)
        if "datacontenttype" in ev and "data_content_type" in ev:
            report.error(path + ("data_content_type",), "give datacontenttype or data_content_type, not both", key=True)
        state.extra["context"] = _compile_context(ev.get("context"), workflow.raw, path + ("context",), report,
                                                  generating=True)
        delay = state.fields.get("delay")
        seconds = 0.0
        if delay is not None and delay != "immediate":
            parsed = parse_duration(delay)
            if parsed is None:
                report.error(state.path + ("delay",), f"invalid delay {delay!r}: an ISO-8601 duration (PT30S) or 'immediate'")
            else:
                seconds = parsed
        state.extra["delay"] = seconds

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        ev = state.fields["event"]
        ctype = ev.get("datacontenttype") or ev.get("data_content_type")
        event: dict[str, Any] = {"type": ev["type"], "source": ev["source"]}
        for key, value in _context(state, "context", data).items():
            event[key] = value
        expr = ev.get("data")
        # Direktiv always set a content type: application/json unless given, data or not
        event["datacontenttype"] = ctype or "application/json"
        if expr is not None:
            payload = expr.eval(data)
            if isinstance(payload, str) and ctype and not _is_json(ctype):
                try:
                    base64.b64decode(payload, validate=True)
                    event["data_base64"] = payload
                except (binascii.Error, ValueError):
                    event["data"] = payload
            else:
                event["data"] = payload
        bus = _bus(ctx)
        try:
            if state.extra["delay"] > 0:
                sent = bus.publish_later(ctx.namespace, event, state.extra["delay"])
            else:
                sent = bus.publish(ctx.namespace, event)
        except EventError as exc:
            raise WorkflowError(INVALID_EVENT, str(exc)) from None
        ctx.log(f"published event type '{sent['type']}' source '{sent['source']}' id {sent['id']}")
        return data


def _is_json(ctype: str) -> bool:
    base = ctype.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json") or base == "text/json"


class ConsumeEvent(StateType):
    name = "consumeEvent"
    schema = """
    state consumeEvent "Waits for a matching CloudEvent and places the whole event at `.<type>`; `timeout` (default 15 minutes) raises `direktiv.cancels.timeout.soft`." {
        event!: event_filter  "The event to wait for."
    }
    """
    example = """
- id: wait-payment
  type: consumeEvent
  timeout: PT1H
  event:
    type: order.paid
    context:
      customer: 'jq(.customer)'
  transform: 'jq({paid: .["order.paid"].data})'
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.extra["context0"] = _compile_context(state.fields["event"].get("context"), workflow.raw,
                                                   state.path + ("event", "context"), report, generating=False)

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        filters = _filters(state, [state.fields["event"]], data)
        return _place(data, _wait(state, filters, ctx, all=False))


class EventsAnd(StateType):
    name = "eventsAnd"
    schema = """
    state eventsAnd "Waits until one event of each listed kind has arrived (in any order); each is placed at `.<type>`; `timeout` as for consumeEvent." {
        events!: [event_filter]  "The events to wait for."
    }
    """
    example = """
- id: both
  type: eventsAnd
  timeout: PT10M
  events:
  - type: order.paid
  - type: order.shipped
  transition: done
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        _check_events(state, workflow, report, [(i, e) for i, e in enumerate(state.fields["events"])], ())

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        filters = _filters(state, state.fields["events"], data)
        return _place(data, _wait(state, filters, ctx, all=True))


class EventsXor(StateType):
    name = "eventsXor"
    schema = """
    state eventsXor "Waits for the first of several events; it is placed at `.<type>` and its branch's transform and transition are taken; `timeout` as for consumeEvent." {
        events!: [event_branch]  "The events to wait for, each with where it leads."
    }
    """
    example = """
- id: first
  type: eventsXor
  timeout: PT10M
  events:
  - event:
      type: order.paid
    transition: ship
  - event:
      type: order.cancelled
    transition: refund
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        _check_events(state, workflow, report, [(i, b["event"]) for i, b in enumerate(state.fields["events"])], ("event",))

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        branches = state.fields["events"]
        filters = _filters(state, [b["event"] for b in branches], data)
        got = _wait(state, filters, ctx, all=False)
        branch = branches[got[0][0]]
        out = _place(data, got)
        transform = branch.get("transform")
        if transform is not None:
            out = ctx.transform(transform, out)
        if branch.get("transition") is not None:
            ctx.transition(branch["transition"])
        return out


def _check_events(state: StateSpec, workflow: Workflow, report: Report, specs: list[tuple[int, dict[str, Any]]],
                  inner: tuple[str, ...]) -> None:
    if not specs:
        report.error(state.path + ("events",), "at least one event is required")
    for i, spec in specs:
        state.extra[f"context{i}"] = _compile_context(
            spec.get("context"), workflow.raw, state.path + ("events", i) + inner + ("context",), report,
            generating=False,
        )


class EventAnd(EventsAnd):
    name = "eventAnd"
    schema = """
    state eventAnd "The v0.1-v0.3 spelling of eventsAnd (same fields, same behaviour)." {
        events!: [event_filter | event_and_item]  "The events to wait for (<=0.3.0 wrote each as {event: {type, context}})."
    }
    """
    example = """
- id: both
  type: eventAnd
  events:
  - type: greetingcloudevent
  - type: solveexpressioncloudevent
  transition: greet
"""

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        state.fields["events"] = [e["event"] if "event" in e else e for e in state.fields["events"]]
        super().check(state, workflow, report)


class EventXor(EventsXor):
    name = "eventXor"
    schema = """
    state eventXor "The v0.1-v0.3 spelling of eventsXor (same fields, same behaviour)." {
        events!: [event_branch]  "The events to wait for, each with where it leads."
        default: any             "Direktiv v0.1 ignored unknown keys and one of its examples has this; ignored."
    }
    """
    example = """
- id: first
  type: eventXor
  events:
  - event:
      type: greetingcloudevent
    transition: greet
  - event:
      type: solveexpressioncloudevent
    transition: solve
"""


@hookimpl
def isolde_declarations() -> str:
    return DECLARATIONS


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [GenerateEvent, ConsumeEvent, EventsAnd, EventsXor, EventAnd, EventXor]
