"""``isolde instances``: list, show, follow the log of and cancel instances (their history)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from .common import EXIT_FAILED, _common, _engine, _handled

FOLLOW_POLL = 0.25
"""Seconds between two reads of the store while following a log."""


@click.group()
def instances() -> None:
    """Instances of every run (isolde run, the library, isolde serve): list, show, logs, cancel."""


@instances.command("list")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the instances.")
@click.option("--status", type=click.Choice(["pending", "running", "complete", "failed", "cancelled"]), help="Only instances of this status.")
@click.option("-w", "--workflow", metavar="WORKFLOW", help="Only instances of this workflow id.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many (newest first).")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip the newest OFFSET.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's page) instead of a table.")
@_common
@_handled
def list_command(namespace: str, status: str | None, workflow: str | None, limit: int, offset: int, as_json: bool,
                 data_dir: str | None, config_path: str | None) -> None:
    """List instances, newest first."""
    with _engine(data_dir, config_path) as engine:
        rows, total = engine.history.list(namespace, status=status, workflow=workflow, offset=offset, limit=limit)
    if as_json:
        click.echo(json.dumps({"namespace": namespace, "instances": rows, "total": total, "offset": offset, "limit": limit}, indent=2))
        return
    if not rows:
        what = " ".join(x for x in (status, f"of workflow '{workflow}'" if workflow else None) if x)
        click.echo(f"no {what + ' ' if what else ''}instances in namespace '{namespace}'", err=True)
        return
    table = [["ID", "WORKFLOW", "STATUS", "CREATED", "TOOK", "STATE / ERROR"]]
    for r in rows:
        where = r.get("error_code") or r.get("state") or ""
        if r.get("error_code") and r.get("state"):
            where = f"{r['error_code']} ({r['state']})"
        table.append([r["id"], str(r.get("workflow")), str(r.get("status")), _when(r.get("created")),
                      _took(r.get("started"), r.get("ended")), where])
    _print_table(table)
    if total > offset + len(rows):
        click.echo(f"({total} in all; --offset {offset + len(rows)} for more)", err=True)


@instances.command("show")
@click.argument("instance_id", metavar="ID")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the instance.")
@click.option("--json", "as_json", is_flag=True, help="Print the record and timeline as JSON (the API's document).")
@_common
@_handled
def show(instance_id: str, namespace: str, as_json: bool, data_dir: str | None, config_path: str | None) -> None:
    """Show an instance: its record and state-by-state timeline."""
    with _engine(data_dir, config_path) as engine:
        shown = engine.history.show(namespace, _resolve(engine, namespace, instance_id))
    if as_json:
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    err = shown.get("error") or {}
    lines = [
        ("instance", shown["id"]), ("workflow", str(shown.get("workflow"))), ("namespace", namespace),
        ("status", str(shown.get("status"))), ("trigger", str(shown.get("trigger") or "")),
        ("created", _when(shown.get("created"))), ("took", _took(shown.get("started"), shown.get("ended"))),
        ("input", _short(shown.get("input"))),
    ]
    if err:
        lines.append(("error", f"{err.get('code')}: {err.get('message')}" + (f" (state '{err['state']}')" if err.get("state") else "")))
    elif shown.get("status") == "complete":
        lines.append(("output", _short(shown.get("output"))))
    for name, value in lines:
        click.echo(f"{name + ':':<11}{value}")
    timeline = shown.get("timeline") or []
    if not timeline:
        click.echo("\n(no states recorded yet)")
        return
    click.echo("")
    t0 = float(shown.get("started") or timeline[0].get("started") or 0)
    table = [["#", "STATE", "TYPE", "AT", "TOOK", "OUTPUT", "WROTE", "ERROR"]]
    notes: dict[int, list[str]] = {}
    for i, e in enumerate(timeline):
        wrote = ", ".join(f"{v['scope']}:{v['key']}" for v in e.get("variables") or [])
        error = (e.get("error") or {}).get("code") or ""
        out = "-" if e.get("output") is None else _short(e.get("output"), 40) + (" (cut)" if "output" in e.get("truncated", ()) else "")
        table.append([str(i + 1), str(e.get("state")), str(e.get("type")), f"+{_ms(float(e.get('started') or t0) - t0)}",
                      _took(e.get("started"), e.get("ended")), out, wrote, error])
        notes[len(table) - 1] = [f"log: {x['message']}" for x in e.get("logs") or []]
        if e.get("error"):
            notes[len(table) - 1].append(f"error: {e['error'].get('message')}")
    _print_table(table, notes)


@instances.command("logs")
@click.argument("instance_id", metavar="ID")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the instance.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the instance ends (it may run in another process).")
@_common
@_handled
def logs(instance_id: str, namespace: str, follow: bool, data_dir: str | None, config_path: str | None) -> None:
    """Print an instance's log lines (time, state, message)."""
    with _engine(data_dir, config_path) as engine:
        instance_id = _resolve(engine, namespace, instance_id)
        after = 0
        while True:
            lines, after, ended = engine.history.logs(namespace, instance_id, after)
            for line in lines:
                click.echo(f"{_when(line['time'], ms=True)} [{line['state']}] {line['message']}")
            if not follow or ended:
                break
            sys.stdout.flush()
            time.sleep(FOLLOW_POLL)


@instances.command("cancel")
@click.argument("instance_id", metavar="ID")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the instance.")
@_common
@_handled
def cancel(instance_id: str, namespace: str, data_dir: str | None, config_path: str | None) -> None:
    """Cancel a running instance (in this data directory: another isolde run, isolde serve)."""
    from ..errors import IsoldeError

    with _engine(data_dir, config_path) as engine:
        try:
            instance_id = _resolve(engine, namespace, instance_id)
            how = engine.cancel(instance_id, namespace, "cancelled with isolde instances cancel")
        except IsoldeError as exc:
            click.echo(f"isolde: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    if how == "requested":
        click.echo(f"cancel requested: instance {instance_id} stops at its next state or wait "
                   "(isolde instances show to see it end)", err=True)
    else:
        click.echo(f"instance {instance_id} cancelled", err=True)


def _resolve(engine: Any, namespace: str, instance_id: str) -> str:
    """The id of a kept instance: ``instance_id`` itself, or the one id it starts or ends;
    else exit 1 naming the namespace where it is, if another one has it."""
    if engine.history.get(namespace, instance_id) is not None:
        return instance_id
    if 4 <= len(instance_id) < 36:  # the start or the end of an id (ids made close together share their start)
        rows, _ = engine.history.list(namespace)
        matches = [r["id"] for r in rows if r["id"].startswith(instance_id) or r["id"].endswith(instance_id)]
        if len(matches) == 1:
            return str(matches[0])
        if len(matches) > 1:
            click.echo(f"isolde: error: '{instance_id}' matches {len(matches)} instance ids: give more of it", err=True)
            sys.exit(EXIT_FAILED)
    elsewhere = [ns for ns in engine.namespaces() if ns != namespace and engine.history.get(ns, instance_id)]
    hint = (f" (it is in namespace '{elsewhere[0]}': add -n {elsewhere[0]})" if elsewhere
            else " (isolde instances list shows the ids kept; finished ones go after [history] keep / max_age)")
    click.echo(f"isolde: error: no instance '{instance_id[:100]}' in namespace '{namespace}'{hint}", err=True)
    sys.exit(EXIT_FAILED)


def _when(t: Any, *, ms: bool = False) -> str:
    if not isinstance(t, (int, float)):
        return "-"
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return text + (f".{int((t % 1) * 1000):03d}Z" if ms else "Z")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.1f}s"


def _took(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)):
        return "-"
    if not isinstance(b, (int, float)):
        return "running"
    return _ms(max(0.0, float(b) - float(a)))


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def _print_table(rows: list[list[str]], notes: dict[int, list[str]] | None = None) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for note in (notes or {}).get(n, ()):
            click.echo(" " * (widths[0] + 2) + note)


__all__ = ["instances"]
