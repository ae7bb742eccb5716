"""The ``isolde`` command line (SPEC §5.1).

Exit codes: 0 success, 1 the instance failed, 2 invalid workflow, bad usage or
configuration.  Stdout carries only results (the output JSON, a variable's
bytes); logs and errors go to stderr, one line each, never a traceback.
"""

from __future__ import annotations

import importlib

import click

from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE

# Each command's module is imported when the command is used (or listed by --help): a
# plain ``isolde run`` does not pay for the modules of ``db``, ``instances`` or ``vars``.
_COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("database", "db"),
    "graph": ("run", "graph"),
    "instances": ("instances", "instances"),
    "namespaces": ("variables", "namespaces"),
    "plugins": ("docs", "plugins"),
    "reference": ("docs", "reference"),
    "run": ("run", "run"),
    "schema": ("docs", "schema"),
    "serve": ("run", "serve"),
    "test": ("run", "test_command"),
    "validate": ("run", "validate"),
    "vars": ("variables", "vars"),
    "workflows": ("variables", "workflows"),
}


class _LazyGroup(click.Group):
    """A group whose commands are imported by name on first use; listed, helped and
    dispatched exactly as if they had been added up front."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f".{module}", __name__), attr)
            assert isinstance(command, click.Command) and command.name == cmd_name
            self.commands[cmd_name] = command
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in _COMMANDS and args[0] not in self.commands:
            for name in _COMMANDS:  # an unknown name: click's "Did you mean" considers every command
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        """Ctrl-C in any command: one line and exit 130, as a shell reports it (click's own
        answer is "Aborted!" and exit 1).  ``run`` and ``serve`` say more themselves."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            command = ctx.invoked_subcommand or "isolde"
            click.echo(f"\nisolde: interrupted: {command} stopped (exit {EXIT_INTERRUPTED})", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="isolde", prog_name="isolde")
def main() -> None:
    """Run Direktiv-style YAML workflows with persistent data on one machine."""


__all__ = ["main", "EXIT_FAILED", "EXIT_USAGE"]
