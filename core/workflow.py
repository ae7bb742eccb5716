"""The validated, compiled form of a workflow document."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .loader import Document
from .states import StateSpec


@dataclass(slots=True, eq=False)
class Workflow:
    """A workflow ready to run: states by id with their expressions compiled."""

    id: str
    document: Document
    raw: bool  # raw-jq era document (strings in jq fields are programs)
    fields: dict[str, Any]
    states: dict[str, StateSpec]
    functions: dict[str, dict[str, Any]]
    start: StateSpec = field(init=False)
    root: Path | None = None
    """The namespace root (the daemon sets its namespace folder); see ``namespace_root``."""

    @property
    def filename(self) -> str:
        return self.document.filename


def namespace_root(workflow: Workflow) -> Path:
    """The folder a leading ``/`` means in a subflow's ``workflow:`` or a ``scope: file`` key.

    In daemon mode it is the namespace folder.  Otherwise it is the current directory
    when the workflow file lies inside it (``isolde run a/parent.yaml`` from a
    repository root finds ``/a/child.yaml``, as Direktiv does), else the workflow
    file's own directory (the current directory for a workflow given as text).
    """
    if workflow.root is not None:
        return workflow.root
    cwd = Path.cwd().resolve()
    name = workflow.filename
    if not name or name.startswith("<"):
        return cwd
    here = Path(os.path.abspath(name)).parent.resolve()
    return cwd if here == cwd or cwd in here.parents else here
