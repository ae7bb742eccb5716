"""``isolde vars``, ``workflows`` and ``namespaces``: the stored data."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from ..varlisting import variable_lines
from .common import EXIT_FAILED, _common, _engine, _handled, _store


# -- variables ---------------------------------------------------------------

def _where(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--instance", "instance", metavar="ID", help="Instance scope (an instance id).")(func)
    func = click.option("-w", "--workflow", help="Workflow scope (without it: namespace scope).")(func)
    func = click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")(func)
    return func


def _scope(workflow: str | None, instance: str | None) -> dict[str, Any]:
    if workflow == "" or instance == "":
        raise click.UsageError("-w/--workflow and --instance need a non-empty name")
    if workflow and instance:
        raise click.UsageError("give -w/--workflow or --instance, not both")
    if instance:
        return {"scope": "instance", "instance": instance}
    if workflow:
        return {"scope": "workflow", "workflow": workflow}
    return {"scope": "namespace"}


@click.group()
def vars() -> None:
    """List, read, write and delete variables."""


@vars.command("list")
@_where
@_common
@_handled
def vars_list(namespace: str, workflow: str | None, instance: str | None, data_dir: str | None, config_path: str | None) -> None:
    """List variables of one scope: KEY, SIZE, MIME TYPE, UPDATED."""
    from ..names import check_name
    from ..store import check_scope

    where = _scope(workflow, instance)
    check_name(namespace, "namespace")
    scope = where["scope"]
    check_scope(scope)
    owner = where.get("workflow") or where.get("instance") or ""
    with _store(data_dir, config_path) as store:
        list_meta = getattr(store, "list_meta", None)  # LMDB: headers only, no blob file opened
        rows = list_meta(namespace, scope, owner) if list_meta else store.list(namespace, scope, owner)
    text = variable_lines(rows)
    if text:
        click.echo(text, nl=False)


@vars.command("get")
@click.argument("key")
@_where
@_common
@_handled
def vars_get(key: str, namespace: str, workflow: str | None, instance: str | None, data_dir: str | None, config_path: str | None) -> None:
    """Write a variable's raw bytes to stdout (exit 1 if it does not exist)."""
    with _engine(data_dir, config_path) as engine:
        var = engine.variables.get(key, namespace=namespace, **_scope(workflow, instance))
        message = _missing_in(engine, key, namespace, workflow, instance) if var is None else ""
    if var is None:
        click.echo(f"isolde: {message}", err=True)
        sys.exit(EXIT_FAILED)
    out = click.open_file("-", "wb")
    out.write(var.data)
    if sys.stdout.isatty() and not var.data.endswith(b"\n"):
        out.write(b"\n")
    out.flush()


@vars.command("set")
@click.argument("key")
@click.argument("value", required=False)
@click.option("-f", "--file", "file", type=click.File("rb"), help="Read the value from a file ('-' for stdin).")
@click.option("--mime", help="MIME type (default: application/json if the value parses as JSON, else text/plain, else application/octet-stream).")
@_where
@_common
@_handled
def vars_set(key: str, value: str | None, file: Any, mime: str | None, namespace: str, workflow: str | None, instance: str | None, data_dir: str | None, config_path: str | None) -> None:
    """Store VALUE (or a file's bytes, or standard input's when VALUE is '-') as variable KEY."""
    if (value is None) == (file is None):
        raise click.UsageError("give a VALUE, '-' (standard input) or -f FILE (exactly one)")
    if value == "-":
        with click.open_file("-", "rb") as stdin:
            data = stdin.read()
    else:
        data = value.encode() if value is not None else file.read()
    if mime is None:
        from ..variables import sniff_mime

        mime = sniff_mime(data)
    with _engine(data_dir, config_path) as engine:
        engine.variables.set(key, data, mime=mime, namespace=namespace, **_scope(workflow, instance))


@vars.command("delete")
@click.argument("key")
@_where
@_common
@_handled
def vars_delete(key: str, namespace: str, workflow: str | None, instance: str | None, data_dir: str | None, config_path: str | None) -> None:
    """Delete a variable (exit 1 if it does not exist)."""
    where = _scope(workflow, instance)
    with _engine(data_dir, config_path) as engine:
        found = engine.variables.get(key, namespace=namespace, **where) is not None
        if found:
            engine.variables.delete(key, namespace=namespace, **where)
        else:
            message = _missing_in(engine, key, namespace, workflow, instance)
    if not found:
        click.echo(f"isolde: {message}; nothing deleted", err=True)
        sys.exit(EXIT_FAILED)


def _missing_in(engine: Any, key: str, namespace: str, workflow: str | None, instance: str | None) -> str:
    """'variable K not found in S scope', and where else in the namespace K does exist."""
    asked = f"instance scope of '{instance}'" if instance else f"workflow scope of '{workflow}'" if workflow else "namespace scope"
    elsewhere = []
    if (workflow or instance) and engine.variables.get(key, namespace=namespace) is not None:
        elsewhere.append("namespace scope (drop -w/--instance)")
    for name in engine.workflows(namespace):
        if name != workflow and engine.variables.get(key, scope="workflow", workflow=name, namespace=namespace) is not None:
            elsewhere.append(f"workflow scope of '{name}' (use -w {name})")
    where = f" in namespace '{namespace}'" if namespace != "default" else ""
    text = f"variable '{key}' not found in {asked}{where}"
    if elsewhere:
        shown = elsewhere[:5] + ([f"{len(elsewhere) - 5} more"] if len(elsewhere) > 5 else [])
        text += "; it exists in " + ", ".join(shown)
    return text


# -- workflows and namespaces --------------------------------------------------

@click.group()
def workflows() -> None:
    """List workflows that hold variables; delete a workflow's variables."""


@workflows.command("list")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@_common
@_handled
def workflows_list(namespace: str, data_dir: str | None, config_path: str | None) -> None:
    """List the workflows of a namespace that hold workflow variables."""
    with _engine(data_dir, config_path) as engine:
        for name in engine.workflows(namespace):
            click.echo(name)


@workflows.command("delete")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@_common
@_handled
def workflows_delete(name: str, namespace: str, data_dir: str | None, config_path: str | None) -> None:
    """Delete workflow NAME: its workflow variables are removed (exactly its own)."""
    with _engine(data_dir, config_path) as engine:
        count = engine.delete_workflow(name, namespace)
    click.echo(f"deleted workflow '{name}' in namespace '{namespace}' ({count} variable(s))", err=True)


@click.group()
def namespaces() -> None:
    """List namespaces; delete a namespace and all its variables."""


@namespaces.command("list")
@_common
@_handled
def namespaces_list(data_dir: str | None, config_path: str | None) -> None:
    """List the namespaces that hold variables."""
    with _engine(data_dir, config_path) as engine:
        for name in engine.namespaces():
            click.echo(name)


@namespaces.command("delete")
@click.argument("name")
@_common
@_handled
def namespaces_delete(name: str, data_dir: str | None, config_path: str | None) -> None:
    """Delete namespace NAME and every variable in it (exactly that namespace)."""
    with _engine(data_dir, config_path) as engine:
        count = engine.delete_namespace(name)
    click.echo(f"deleted namespace '{name}' ({count} variable(s))", err=True)

