"""Error types shared by the whole engine.

Two families, deliberately kept apart (STYLE.md practice 5):

* ``Diagnostic`` / ``ValidationError``: the *document* is wrong.  Collected, located
  (``FILE:LINE:COL: state 'ID': message``), printed one per line, exit code 2.
* ``WorkflowError`` / ``InstanceFailure``: something went wrong *while running*.
  A ``WorkflowError`` carries a dotted code that ``catch`` can match; an
  ``InstanceFailure`` is uncatchable and ends the instance.
"""

from __future__ import annotations

from .records import Frozen


class IsoldeError(Exception):
    """Base of every error isolde raises on purpose (a user can act on it)."""


class Diagnostic(Frozen):
    """One problem found in a workflow document."""

    __slots__ = ("file", "line", "col", "message", "state")
    __match_args__ = ("file", "line", "col", "message", "state")
    file: str
    line: int  # 1-based
    col: int  # 1-based
    message: str
    state: str | None

    def __init__(self, file: str, line: int, col: int, message: str, state: str | None = None) -> None:
        object.__setattr__(self, "file", file)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "col", col)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "state", state)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}(file={self.file!r}, line={self.line!r}, col={self.col!r}, "
                f"message={self.message!r}, state={self.state!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Diagnostic = other
            return (self.file, self.line, self.col, self.message, self.state) == (o.file, o.line, o.col, o.message, o.state)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.col, self.message, self.state))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        if self.state is not None:
            return f"{where}: state '{self.state}': {self.message}"
        return f"{where}: {self.message}"


class ValidationError(IsoldeError):
    """A document failed validation; ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class WorkflowError(IsoldeError):
    """A catchable error raised inside an instance (``catch`` matches ``code``)."""

    catchable = True

    def __init__(self, code: str, msg: str) -> None:
        self.code = code
        self.msg = msg
        super().__init__(f"{code}: {msg}")


class InstanceFailure(WorkflowError):
    """An uncatchable failure: the instance ends at once, whatever its ``catch`` says."""

    catchable = False

    def __init__(self, msg: str, code: str = "isolde.failure") -> None:
        super().__init__(code, msg)


class ConfigError(IsoldeError):
    """The configuration file or an option is invalid."""
