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
    """The folder a leading ``/`` means in a subflow's ``workflow:`` or a ``scope: file`` key,
    and the folder neither may leave.

    In daemon mode it is the namespace folder; with ``isolde run --root DIR`` it is DIR
    (``workflow.root``); otherwise the workflow file's own directory (the current
    directory for a workflow given as text).  It is never widened implicitly: a
    workflow reads no file above the folder it was given.
    """
    if workflow.root is not None:
        return workflow.root
    name = workflow.filename
    if not name or name.startswith("<"):
        return Path.cwd().resolve()
    return Path(os.path.abspath(name)).parent.resolve()


def inside_root(workflow: Workflow, name: str, *, what: str) -> Path:
    """``name`` resolved against the namespace root (a leading ``/``) or the workflow
    file's directory (relative), refused with ``isolde.files.unsafePath`` if it leaves
    the root (links included)."""
    from .errors import WorkflowError

    root = namespace_root(workflow).resolve()
    if name.startswith("/"):
        base = root
    else:
        fname = workflow.filename
        base = Path(os.path.abspath(fname)).parent if fname and not fname.startswith("<") else root
    target = (base / name.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise WorkflowError(
            "isolde.files.unsafePath",
            f"{what} {name!r} leaves the namespace root {root} (run with --root to choose another root)",
        )
    return target
