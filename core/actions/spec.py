"""What an action is once compiled: the call, its files, its retries (SPEC §4).

``action`` states, each item of a ``foreach`` and each branch of a ``parallel`` hold
an :class:`ActionSpec`, compiled once at load (``isolde.actions.compile``) and run by
the engine's action machinery (``ctx.call_function`` / ``ctx.run_branches``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import WorkflowError
from ..expr import Expr

RETRY_DEFAULT_DELAY = 5.0
"""Seconds before a retry when ``retries`` gives no ``delay`` (Direktiv's default)."""


@dataclass(slots=True)
class FileItem:
    """One ``files:`` entry, ready to resolve against the state data."""

    key: str | Expr
    scope: str
    as_: str | None
    type: str
    permissions: int | None


@dataclass(slots=True)
class ActionSpec:
    """An action definition compiled at load time (precomputed once per workflow)."""

    function_id: str
    function: Mapping[str, Any]
    input: Expr | None
    secrets: tuple[str, ...]
    files: tuple[FileItem, ...]
    retry_max: int = 0
    retry_delay: float = RETRY_DEFAULT_DELAY
    retry_multiplier: float = 1.0
    retry_codes: tuple[re.Pattern[str], ...] = ()
    base_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Branch:
    """One call of :meth:`StateContext.run_branches`: what to call and the data its
    ``input`` is evaluated against."""

    spec: ActionSpec
    source: Any


@dataclass(slots=True)
class Outcome:
    """What ``run_branches`` gives back.

    ``results[i]`` is branch *i*'s result (None for a branch without one);
    ``errors`` holds ``(i, error)`` in the order the failures arrived;
    ``winner`` is the branch that decided a first-success run.
    """

    results: list[Any]
    errors: list[tuple[int, WorkflowError]] = field(default_factory=list)
    winner: int | None = None


__all__ = ["ActionSpec", "Branch", "FileItem", "Outcome", "RETRY_DEFAULT_DELAY"]
