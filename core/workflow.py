"""The validated, compiled form of a workflow document."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def filename(self) -> str:
        return self.document.filename
