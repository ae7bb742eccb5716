"""The ``isolde`` command line (SPEC §5.1).

Exit codes: 0 success, 1 the instance failed, 2 invalid workflow, bad usage or
configuration.  Stdout carries only results (the output JSON, a variable's
bytes); logs and errors go to stderr, one line each, never a traceback.
"""

from __future__ import annotations

import click

from .common import EXIT_FAILED, EXIT_USAGE
from .database import db
from .docs import plugins, reference, schema
from .instances import instances
from .run import graph, run, serve, test_command, validate
from .variables import namespaces, vars, workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="isolde", prog_name="isolde")
def main() -> None:
    """Run Direktiv-style YAML workflows with persistent data on one machine."""


for _command in (run, validate, graph, test_command, serve, instances, vars, workflows, namespaces, plugins, schema, reference, db):
    main.add_command(_command)

__all__ = ["main", "EXIT_FAILED", "EXIT_USAGE"]
