"""``isolde plugins``, ``schema`` and ``reference``: what is installed and the editor aids."""

from __future__ import annotations

import json

import click

from .common import _emit, _handled


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (plugins enabled or disabled there count).")
@_handled
def plugins(config_path: str | None) -> None:
    """List installed plugins, their versions and what they provide."""
    from ..engine import Engine

    with Engine(config=config_path) as engine:
        for info in engine.registry.plugins:
            provides = ", ".join([f"state {s}" for s in info.state_types] + [f"runner {t}" for t in info.runners]
                                 + info.services)
            click.echo(f"{info.name}\t{info.version}\t{info.source}\t{provides}")
        for name in engine.config.disabled_plugins:
            click.echo(f"{name}\t-\tdisabled", err=False)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (plugins enabled or disabled there count).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@_handled
def schema(config_path: str | None, output: str | None) -> None:
    """Print a JSON Schema of workflow documents, for editors (YAML language server, VS Code).

    It is generated from the declarations of every installed state type, so
    plugin-provided types appear in it too.
    """
    from ..engine import Engine
    from ..schemagen import json_schema

    with Engine(config=config_path) as engine:
        text = json.dumps(json_schema(engine.registry), indent=2) + "\n"
    _emit(text, output)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Config file (plugins enabled or disabled there count).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@_handled
def reference(config_path: str | None, output: str | None) -> None:
    """Print the language reference (Markdown) generated from the installed state types."""
    from ..engine import Engine
    from ..schemagen import reference as make_reference

    with Engine(config=config_path) as engine:
        text = make_reference(engine.registry)
    _emit(text, output)

