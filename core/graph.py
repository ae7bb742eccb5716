"""A workflow drawn as a graph of its states and transitions (``isolde graph``, the web UI).

Edges come from the schema, not from state type names: every field a state type declares
as ``stateid`` (``transition``, ``defaultTransition``, a condition's or an event branch's
``transition``, a ``catch`` handler's) is an edge, so a third-party state type is drawn
like a built-in one.  Edge kinds: ``next`` (a transition), ``default`` (a field whose name
starts with ``default``), ``catch`` (inside ``catch``).  A state with no ``next`` or
``default`` edge can end the instance; so can a switch or event state whose branch leaves
``transition`` out.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from .schema import ListOf, MapOf, Named, Schema, Type, Union
from .workflow import Workflow

FORMATS = ("mermaid", "dot", "svg", "json")


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: str  # "next", "default" or "catch"
    label: str  # the field that holds it, e.g. "conditions[0]" or "catch direktiv.jq.*"


@dataclass(frozen=True, slots=True)
class Graph:
    start: str
    states: list[tuple[str, str]]  # (id, type), in document order
    edges: list[Edge]

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "states": [{"id": s, "type": t} for s, t in self.states],
            "edges": [{"from": e.source, "to": e.target, "kind": e.kind, "label": e.label} for e in self.edges],
        }


def workflow_graph(wf: Workflow, schema: Schema) -> Graph:
    """The states and transitions of a validated workflow."""
    raw_states = wf.document.value.get("states") or []
    edges: list[Edge] = []
    states: list[tuple[str, str]] = []
    for raw in raw_states:
        if not isinstance(raw, dict) or str(raw.get("id")) not in wf.states:
            continue
        spec = wf.states[str(raw["id"])]
        states.append((spec.id, spec.type))
        decl = schema.states.get(spec.type)
        base = schema.structs.get("state_base")
        fields = {**(base.fields if base else {}), **(decl.fields if decl else {})}
        for name, field in fields.items():
            if name in raw:
                for path, target in _refs(raw[name], field.type, schema, (name,)):
                    edges.append(_edge(spec.id, target, path, raw))
    return Graph(wf.start.id, states, edges)


def _refs(value: Any, t: Type, schema: Schema, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(t, Named):
        if t.name == "stateid":
            return [(path, str(value))] if isinstance(value, (str, int)) and str(value) else []
        decl = schema.structs.get(t.name)
        if decl is not None and isinstance(value, dict):
            out = []
            for name, field in decl.fields.items():
                if name in value:
                    out += _refs(value[name], field.type, schema, path + (name,))
            return out
        return []
    if isinstance(t, ListOf) and isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _refs(v, t.item, schema, path + (i,))]
    if isinstance(t, MapOf) and isinstance(value, dict):
        return [r for k, v in value.items() for r in _refs(v, t.item, schema, path + (k,))]
    if isinstance(t, Union):
        return [r for alt in t.alts for r in _refs(value, alt, schema, path)]
    return []


def _edge(source: str, target: str, path: tuple[Any, ...], raw: dict[str, Any]) -> Edge:
    top = str(path[0])
    if top == "catch":
        handler = raw["catch"][path[1]] if isinstance(path[1], int) else {}
        return Edge(source, target, "catch", f"catch {handler.get('error', '*')}")
    kind = "default" if top.startswith("default") else "next"
    label = "".join(f"[{p}]" if isinstance(p, int) else ("" if i == 0 else ".") + str(p)
                    for i, p in enumerate(path[:-1])) if len(path) > 1 else ("default" if kind == "default" else "")
    return Edge(source, target, kind, label)


def render(graph: Graph, fmt: str) -> str:
    """The graph as Mermaid, Graphviz dot, a standalone SVG, or JSON."""
    if fmt == "mermaid":
        return _mermaid(graph)
    if fmt == "dot":
        return _dot(graph)
    if fmt == "svg":
        return _svg(graph)
    if fmt == "json":
        return json.dumps(graph.as_json(), indent=2) + "\n"
    raise ValueError(f"unknown graph format {fmt!r} (use one of {', '.join(FORMATS)})")


def _mermaid(g: Graph) -> str:
    ids = {sid: f"s{i}" for i, (sid, _) in enumerate(g.states)}
    lines = ["flowchart TD", "    start((start)) --> " + ids[g.start]]
    for sid, stype in g.states:
        lines.append(f'    {ids[sid]}["{_mq(sid)}<br/><i>{_mq(stype)}</i>"]')
    for e in g.edges:
        arrow = "-.->" if e.kind == "catch" else "==>" if e.kind == "default" else "-->"
        label = f"|{_mq(e.label)}|" if e.label else ""
        lines.append(f"    {ids[e.source]} {arrow}{label} {ids[e.target]}")
    return "\n".join(lines) + "\n"


def _mq(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def _dot(g: Graph) -> str:
    lines = ["digraph workflow {", "  rankdir=TB;", '  node [shape=box, style=rounded, fontname="sans-serif"];',
             '  start [shape=circle, label="start"];', f"  start -> {_dq(g.start)};"]
    for sid, stype in g.states:
        lines.append(f'  {_dq(sid)} [label={_dq(sid + chr(10) + stype)}];')
    for e in g.edges:
        style = {"catch": ", style=dashed, color=red", "default": ", style=bold"}.get(e.kind, "")
        lines.append(f"  {_dq(e.source)} -> {_dq(e.target)} [label={_dq(e.label)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dq(text: str) -> str:
    return json.dumps(text)


def _svg(g: Graph) -> str:
    """A layered drawing: each state one level below the first state that reaches it."""
    level: dict[str, int] = {g.start: 0}
    queue = [g.start]
    while queue:
        sid = queue.pop(0)
        for e in g.edges:
            if e.source == sid and e.target not in level:
                level[e.target] = level[sid] + 1
                queue.append(e.target)
    deepest = max(level.values(), default=0)
    for sid, _ in g.states:  # unreachable states go below the rest
        level.setdefault(sid, deepest + 1)
    rows: dict[int, list[str]] = {}
    for sid, _ in g.states:
        rows.setdefault(level[sid], []).append(sid)
    w, h, gap_x, gap_y = 170, 46, 40, 70
    width = max(len(r) for r in rows.values()) * (w + gap_x) + gap_x
    pos: dict[str, tuple[float, float]] = {}
    for lv, members in rows.items():
        offset = (width - len(members) * (w + gap_x) + gap_x) / 2
        for i, sid in enumerate(members):
            pos[sid] = (offset + i * (w + gap_x), 40 + lv * (h + gap_y))
    height = 40 + (max(rows) + 1) * (h + gap_y)
    types = dict(g.states)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" '
           'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    labels: list[str] = []
    for e in g.edges:
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        if y1 == y2 and e.source != e.target:  # same row: from the facing sides
            sx, tx = (x1 + w, x2) if x2 > x1 else (x1, x2 + w)
            sy = ty = y1 + h / 2
            d = f"M{sx:.0f},{sy:.0f} L{tx:.0f},{ty:.0f}"
            lx, ly = (sx + tx) / 2, sy - 8
        else:
            sx, sy, tx, ty = x1 + w / 2, y1 + h, x2 + w / 2, float(y2)
            if ty <= sy:  # a loop back up (or to itself): leave and enter on the right side
                sx, sy, tx, ty = x1 + w, y1 + h / 2, x2 + w, y2 + h / 2
                reach = 40 + abs(sy - ty) / 4
                d = (f"M{sx:.0f},{sy:.0f} C{sx + reach:.0f},{sy:.0f} {tx + reach:.0f},{ty:.0f} {tx:.0f},{ty:.0f}")
                lx, ly = max(sx, tx) + reach * 0.75, (sy + ty) / 2
            else:
                d = f"M{sx:.0f},{sy:.0f} C{sx:.0f},{sy + 30:.0f} {tx:.0f},{ty - 30:.0f} {tx:.0f},{ty:.0f}"
                lx, ly = (sx + tx) / 2, (sy + ty) / 2
        color = {"catch": "#c0392b", "default": "#2c3e50"}.get(e.kind, "#555")
        dash = ' stroke-dasharray="5,4"' if e.kind == "catch" else ""
        width_attr = "2.5" if e.kind == "default" else "1.5"
        out.append(f'<g class="edge {e.kind}" data-from="{html.escape(e.source)}" data-to="{html.escape(e.target)}">'
                   f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width_attr}"{dash} marker-end="url(#arrow)"/></g>')
        if e.label:  # drawn last, over the boxes, with a white halo so they stay readable
            labels.append(f'<text class="label {e.kind}" x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle" fill="{color}" '
                          f'stroke="#fff" stroke-width="3" paint-order="stroke">{html.escape(e.label)}</text>')
    for sid, (x, y) in pos.items():
        start = ' stroke-width="3"' if sid == g.start else ""
        out.append(f'<g class="state" data-id="{html.escape(sid)}"><rect x="{x:.0f}" y="{y:.0f}" width="{w}" '
                   f'height="{h}" rx="8" fill="#f4f6f8" stroke="#34495e"{start}/>'
                   f'<text x="{x + w / 2:.0f}" y="{y + 19:.0f}" text-anchor="middle" font-weight="bold">'
                   f"{html.escape(sid)}</text><text x=\"{x + w / 2:.0f}\" y=\"{y + 36:.0f}\" text-anchor=\"middle\" "
                   f'fill="#666">{html.escape(types[sid])}</text></g>')
    out += labels
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["Edge", "FORMATS", "Graph", "render", "workflow_graph"]
