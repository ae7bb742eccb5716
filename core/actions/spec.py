"""What an action is once compiled: the call, its files, its retries (SPEC §4).

``action`` states, each item of a ``foreach`` and each branch of a ``parallel`` hold
an :class:`ActionSpec`, compiled once at load (``isolde.actions.compile``) and run by
the engine's action machinery (``ctx.call_function`` / ``ctx.run_branches``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from ..errors import WorkflowError
from ..expr import Expr
from ..records import NEW, Record, typed_as_dataclass

RETRY_DEFAULT_DELAY = 5.0
"""Seconds before a retry when ``retries`` gives no ``delay`` (Direktiv's default)."""


@typed_as_dataclass()
class FileItem(Record):
    """One ``files:`` entry, ready to resolve against the state data."""

    __slots__ = ("key", "scope", "as_", "type", "permissions")
    __match_args__ = ("key", "scope", "as_", "type", "permissions")
    key: str | Expr
    scope: str
    as_: str | None
    type: str
    permissions: int | None

    def __init__(self, key: str | Expr, scope: str, as_: str | None, type: str, permissions: int | None) -> None:
        self.key = key
        self.scope = scope
        self.as_ = as_
        self.type = type
        self.permissions = permissions


@typed_as_dataclass()
class ActionSpec(Record):
    """An action definition compiled at load time (precomputed once per workflow)."""

    __slots__ = ("function_id", "function", "input", "secrets", "files", "retry_max", "retry_delay",
                 "retry_multiplier", "retry_codes", "base_dir", "extra")
    __match_args__ = ("function_id", "function", "input", "secrets", "files", "retry_max", "retry_delay",
                      "retry_multiplier", "retry_codes", "base_dir", "extra")
    _fresh = {"extra": dict}
    function_id: str
    function: Mapping[str, Any]
    input: Expr | None
    secrets: tuple[str, ...]
    files: tuple[FileItem, ...]
    retry_max: int
    retry_delay: float
    retry_multiplier: float
    retry_codes: tuple[re.Pattern[str], ...]
    base_dir: Path | None
    extra: dict[str, Any]

    def __init__(self, function_id: str, function: Mapping[str, Any], input: Expr | None, secrets: tuple[str, ...],
                 files: tuple[FileItem, ...], retry_max: int = 0, retry_delay: float = RETRY_DEFAULT_DELAY,
                 retry_multiplier: float = 1.0, retry_codes: tuple[re.Pattern[str], ...] = (),
                 base_dir: Path | None = None, extra: dict[str, Any] = NEW) -> None:
        self.function_id = function_id
        self.function = function
        self.input = input
        self.secrets = secrets
        self.files = files
        self.retry_max = retry_max
        self.retry_delay = retry_delay
        self.retry_multiplier = retry_multiplier
        self.retry_codes = retry_codes
        self.base_dir = base_dir
        self.extra = {} if extra is NEW else extra


@typed_as_dataclass()
class Branch(Record):
    """One call of :meth:`StateContext.run_branches`: what to call and the data its
    ``input`` is evaluated against."""

    __slots__ = ("spec", "source")
    __match_args__ = ("spec", "source")
    spec: ActionSpec
    source: Any

    def __init__(self, spec: ActionSpec, source: Any) -> None:
        self.spec = spec
        self.source = source


@typed_as_dataclass()
class Outcome(Record):
    """What ``run_branches`` gives back.

    ``results[i]`` is branch *i*'s result (None for a branch without one);
    ``errors`` holds ``(i, error)`` in the order the failures arrived;
    ``winner`` is the branch that decided a first-success run.
    """

    __slots__ = ("results", "errors", "winner")
    __match_args__ = ("results", "errors", "winner")
    _fresh = {"errors": list}
    results: list[Any]
    errors: list[tuple[int, WorkflowError]]
    winner: int | None

    def __init__(self, results: list[Any], errors: list[tuple[int, WorkflowError]] = NEW,
                 winner: int | None = None) -> None:
        self.results = results
        self.errors = [] if errors is NEW else errors
        self.winner = winner


__all__ = ["ActionSpec", "Branch", "FileItem", "Outcome", "RETRY_DEFAULT_DELAY"]
