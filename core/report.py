"""``Report``: how validation (the core's and every plugin's ``check``) records problems.

Each problem becomes a located ``Diagnostic`` (``FILE:LINE:COL: state 'ID': message``)
pointing at the YAML node of ``path``; a jq error points inside the string when the
scalar's style allows it.  A plugin that compiles values of its own (an event's
``context``, say) uses :meth:`Report.compile`, so its programs are compiled once, with
the document's mode and the engine's jq runtime, and bad ones are reported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Diagnostic
from .expr import Expr, Literal, compile_expr

if TYPE_CHECKING:
    from .jqexpr import JqError, JqRuntime
    from .loader import Document, Path


class Report:
    """Collects diagnostics for one document, naming the state each one belongs to."""

    def __init__(self, doc: Document, *, jq: JqRuntime | None = None, raw: bool = False) -> None:
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []
        self.jq = jq
        self.raw = raw
        """True for a raw-jq era document: a string in a jq field is a program."""

    def error(self, path: Path, message: str, *, key: bool = False, offset: int | None = None) -> None:
        """Record a problem at the YAML node ``path`` (its key with ``key=True``; character
        ``offset`` inside a one-line string scalar when given)."""
        line, col = self.doc.where(path, key=key)
        if offset is not None and not key:
            line, col = self._inside(path, line, col, offset)
        self.diagnostics.append(Diagnostic(self.doc.filename, line, col, message, self.state_of(path)))

    def compile(self, value: Any, path: Path, *, raw: bool | None = None, shift: int | None = 0) -> Expr:
        """Compile ``value`` as a ``jx`` field of this document (``raw`` overrides the
        document's mode: pass True for a value that is always a jq program).  Programs that
        do not compile are reported at ``path``, ``shift`` characters into the scalar (None:
        at the scalar itself, for a program cut out of a longer text); the result is then
        a literal."""
        if self.jq is None:
            return Literal(value)

        def on_error(p: Path, exc: JqError, offset: int | None) -> None:
            at = None if offset is None or shift is None else offset + shift
            self.error(p, f"invalid jq: {exc.msg}", offset=at)

        return compile_expr(value, raw=self.raw if raw is None else raw, jq=self.jq, path=path, on_error=on_error)

    def state_of(self, path: Path) -> str | None:
        if len(path) >= 2 and path[0] == "states" and isinstance(path[1], int):
            states = self.doc.value.get("states") if isinstance(self.doc.value, dict) else None
            if isinstance(states, list) and path[1] < len(states) and isinstance(states[path[1]], dict):
                sid = states[path[1]].get("id")
                return str(sid) if sid is not None else f"#{path[1] + 1}"
        return None

    def _inside(self, path: Path, line: int, col: int, offset: int) -> tuple[int, int]:
        """Position of character ``offset`` of a string scalar, for one-line plain/quoted scalars."""
        style = self.doc.styles.get(path)
        if style in ("", "'", '"'):
            return line, col + offset + (1 if style else 0)
        return line, col


__all__ = ["Report"]
