"""``isolde run``, ``validate``, ``graph``, ``test`` and ``serve``: the commands that take workflows."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from ..errors import ValidationError
from .common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, _common, _emit, _engine, _handled, config_near,
                     log_format_option, say, use_log_format)
from .progress import RunOutput

if TYPE_CHECKING:
    from ..instance import Result


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "input_text", metavar="JSON", help="Instance input (JSON; text that is not JSON is refused unless --raw-input).")
@click.option("--raw-input", is_flag=True, help="Pass --input as raw bytes, not JSON: the instance gets {\"input\": \"<base64>\"}.")
@click.option("--input-file", type=click.File("rb"), help="Read the instance input from a file ('-' for stdin).")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace to run the instance in (its variables live there).")
@click.option("-q", "--quiet", is_flag=True, help="Don't print the instance log to stderr.")
@click.option("--root", type=click.Path(file_okay=False, exists=True), help="Namespace root: what a leading / means in subflow paths and file keys (default: FILE's directory).")
@click.option("--event", "events", multiple=True, metavar="JSON", help="A CloudEvent for the instance's event states, delivered in order as it waits (repeatable; @FILE or @- reads JSON, an object or a list; source defaults to isolde-cli).")
@log_format_option
@_common
@_handled
def run(file: str, input_text: str | None, raw_input: bool, input_file: Any, namespace: str, quiet: bool, root: str | None, events: tuple[str, ...], log_format: str | None, data_dir: str | None, config_path: str | None) -> None:
    """Run one instance of the workflow in FILE and print its output JSON."""
    if input_text is not None and input_file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    raw: bytes | None = None
    if input_text is not None:
        raw = input_text.encode()
        if not raw_input and input_text.strip():
            try:
                json.loads(input_text)
            except json.JSONDecodeError as exc:
                raise click.UsageError(
                    f"--input is not JSON ({exc.msg} at character {exc.pos}): quote a string as '\"text\"', "
                    "or add --raw-input to pass the bytes as they are (base64 at .input)"
                ) from None
    elif input_file is not None:
        raw = input_file.read()

    from ..ids import new_instance_id

    instance_id = new_instance_id()
    at = {"state": ""}  # the state the instance is in, as far as its log tells
    out = RunOutput(namespace)

    def sink(instance: str, state: str, message: str) -> None:
        if instance == instance_id:
            at["state"] = state
        if not quiet:
            out.instance_log(instance, instance == instance_id, state, message)

    try:
        with _engine(data_dir, config_near(config_path, file), log=sink) as engine:
            out.start(engine, use_log_format(engine.config, log_format))
            sent = _send_events(engine, namespace, events) if events else set()
            workflow = engine.load(file)
            out.workflow = workflow.id
            if root is not None:
                workflow.root = Path(root).resolve()
            at["state"] = workflow.start.id
            result = _run_interruptibly(engine, lambda: engine.run(workflow, input=raw, namespace=namespace,
                                                                   instance_id=instance_id))
            unused = [e for e in engine.events.pending(namespace) if e["id"] in sent] if sent else []
    except KeyboardInterrupt:
        # the engine has closed on the way out (isolate calls ended, locks released)
        where = f" stopped in state '{at['state']}'" if at["state"] else " stopped before it started"
        out.clear()
        say(f"isolde: interrupted: instance {instance_id}{where} (exit {EXIT_INTERRUPTED})", level="warning",
            message=f"interrupted: instance stopped{where.replace(' stopped', '', 1)}", namespace=namespace,
            instance=instance_id, state=at["state"] or None)
        sys.exit(EXIT_INTERRUPTED)
    for event in unused:
        say(f"isolde: warning: the --event of type '{event['type']}' (id {event['id']}) was not consumed", level="warning")
    if result.ok:
        click.echo(json.dumps(result.output, ensure_ascii=False))
        return
    err = result.error
    assert err is not None  # a failed result always carries its error
    verb = "was cancelled" if result.status == "cancelled" else "failed"
    say(f"isolde: instance {result.instance_id} {verb} in state '{err.state}': {err.code}: {err.message}",
        message=f"instance {verb}: {err.code}: {err.message}", namespace=namespace, workflow=result.workflow,
        instance=result.instance_id, state=err.state, code=err.code)
    sys.exit(EXIT_FAILED)


def _send_events(engine: Any, namespace: str, values: tuple[str, ...]) -> set[str]:
    """Publish the --event values before the run; they are kept until the instance waits for them."""
    import math

    from ..events import parse_event_args

    ids = set()
    for event in parse_event_args(values, sys.stdin.read):
        ids.add(engine.events.publish(namespace, event, retain_for=math.inf)["id"])
    return ids


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (for plugins and limits).")
@click.option("--strict", is_flag=True, help="Fail (exit 2) on warnings too, e.g. an image: function with no [images] mapping.")
@_handled
def validate(files: tuple[str, ...], config_path: str | None, strict: bool) -> None:
    """Check workflow files; print every problem as FILE:LINE:COL: message, and warnings
    (FILE:LINE:COL: warning: message) for what is valid but cannot run with this config."""
    from ..engine import Engine

    bad = warned = 0
    with Engine(config=config_near(config_path, files[0])) as engine:
        for f in files:
            try:
                problems = engine.validate(f)
            except FileNotFoundError:
                click.echo(f"{f}: no such file", err=True)
                bad += 1
                continue
            for d in problems:
                click.echo(str(d), err=True)
            bad += bool(problems)
            if not problems:
                warnings = _config_warnings(engine, f)
                for line in warnings:
                    click.echo(line, err=True)
                warned += bool(warnings)
    if bad or (strict and warned):
        click.echo(f"{bad} of {len(files)} file(s) invalid" + (f", {warned} with warnings (--strict)" if strict and warned else ""),
                   err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"{len(files)} file(s) valid" + (f", {warned} with warnings" if warned else ""), err=True)


def _config_warnings(engine: Any, file: str) -> list[str]:
    """Located warnings for a valid workflow: functions whose runner says this
    configuration cannot call them (``config_warning`` of its runner class)."""
    wf = engine.load(file)
    listed = wf.document.value.get("functions") or []
    out = []
    for i, fn in enumerate(listed):
        if not isinstance(fn, dict) or fn.get("id") not in wf.functions:
            continue
        function = wf.functions[fn["id"]]
        check = getattr(engine.registry.runners.get(str(function.get("type"))), "config_warning", None)
        message = check(function, engine.config) if check is not None else None
        if message:
            line, col = wf.document.where(("functions", i))
            out.append(f"{file}:{line}:{col}: warning: {message}")
    return out


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("-f", "--format", "fmt", type=click.Choice(["mermaid", "dot", "svg", "json"]), default="mermaid",
              show_default=True, help="mermaid (paste into Markdown), dot (Graphviz), svg (a standalone picture), json.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (plugins enabled or disabled there count).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@_handled
def graph(file: str, fmt: str, config_path: str | None, output: str | None) -> None:
    """Draw the workflow in FILE as a graph of its states and transitions.

    Transitions are solid, default transitions bold, catch handlers dashed (labelled
    with their error pattern).
    """
    from ..engine import Engine
    from ..graph import render, workflow_graph

    with Engine(config=config_near(config_path, file)) as engine:
        text = render(workflow_graph(engine.load(file), engine.registry.schema), fmt)
    _emit(text, output)


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("-v", "--verbose", is_flag=True, help="Print every test with its result.")
@click.option("-k", "keyword", metavar="TEXT", help="Run only tests whose name contains TEXT.")
@_handled
def test_command(paths: tuple[str, ...], verbose: bool, keyword: str | None) -> None:
    """Run workflow tests (*.test.yaml files) with their functions mocked.

    PATHS are test files or folders searched for *.test.yaml / *_test.yaml (default:
    the current folder).  Exit 0 when every test passed, 1 when one failed, 4 for a
    malformed test file, 5 when no test was found (as pytest).
    """
    import time as _time

    from ..testing import collect, find_test_files, run_case

    begun = _time.perf_counter()
    files = find_test_files(paths or ["."])
    passed = failed = 0
    broken = False
    for path in files:
        try:
            cases = collect(path)
        except ValidationError as exc:
            for d in exc.diagnostics:
                click.echo(f"ERROR {d}", err=True)
            broken = True
            continue
        for case in cases:
            if keyword and keyword not in case.name:
                continue
            outcome = run_case(case)
            if outcome.ok:
                passed += 1
                if verbose:
                    click.echo(f"PASSED {case.location} {case.name}")
            else:
                failed += 1
                click.echo(f"FAILED {outcome.report()}")
    took = _time.perf_counter() - begun
    summary = f"{passed} passed, {failed} failed in {took:.2f}s"
    click.echo(summary if passed or failed else f"no tests ran in {took:.2f}s")
    if broken:
        sys.exit(4)
    if failed:
        sys.exit(EXIT_FAILED)
    if not passed:
        sys.exit(5)


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--api", "api", metavar="HOST:PORT", help="Address of the HTTP API (default: [daemon] api, else 127.0.0.1:8890; port 0 picks a free port).")
@click.option("--no-api", is_flag=True, help="Serve no HTTP API (watch, schedule and run only).")
@click.option("--token", envvar="ISOLDE_API_TOKEN", help="Require 'Authorization: Bearer TOKEN' on the API (needed to bind beyond loopback; default: $ISOLDE_API_TOKEN, [daemon] token).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logs: each instance, each API request.")
@log_format_option
@_common
@_handled
def serve(directory: str, api: str | None, no_api: bool, token: str | None, verbose: bool, log_format: str | None, data_dir: str | None, config_path: str | None) -> None:
    """Serve the workflows of DIRECTORY (DIR/<namespace>/**/*.yaml) until SIGTERM: watch, schedule, HTTP API,
    /metrics.  Ctrl-C stops gracefully; a second Ctrl-C stops at once."""
    from ..daemon import serve as run_daemon

    with _engine(data_dir, config_path) as engine:
        code = run_daemon(directory, engine=engine, api=api, token=token, verbose=verbose, no_api=no_api,
                          log_format=use_log_format(engine.config, log_format))
    sys.exit(code)


def _run_interruptibly(engine: Any, run: Callable[[], Result]) -> Result:
    """Run the instance in a worker thread while this (main) thread waits, so a Ctrl-C is
    raised here, never in the middle of the engine's own work (a lock held, a commit under
    way).  On Ctrl-C the engine is closed here (the instance is cancelled: waits woken,
    isolate calls ended, locks released) and the worker is given the time to wind down
    before the interrupt goes on: the interpreter must not shut down while one of our
    threads is still inside the store."""
    box: list[Result | BaseException] = []

    def work() -> None:
        try:
            box.append(run())
        except BaseException as exc:  # handed to the main thread
            box.append(exc)

    worker = threading.Thread(target=work, name="isolde-run", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        engine.close()
        worker.join(_WIND_DOWN)
        raise
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


_WIND_DOWN = 30.0
"""Seconds an interrupted ``isolde run`` waits for its cancelled instance to end (after
the engine's own bounded grace); past it the process exits anyway, as after a crash."""
