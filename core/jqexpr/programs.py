"""Compiled jq programs: one interface, three ways of running.

- :class:`FastProgram`: compiled in-process by the ``jq`` binding; a run is one bound-method call
  into the binding plus exception translation (no per-call lexing).  The engine's hot path.
- :class:`PathProgram`: a pure field path (``.``, ``.a``, ``.var.x``), followed in Python with
  jq's semantics; well under a microsecond instead of a round trip through the binding's JSON.
- :class:`GuardedProgram`: each run is a request to the killable jq worker pool, under a
  deadline (see :mod:`.analysis` for which programs are guarded and :mod:`.worker` for the pool).

Instances are immutable and safe to share between threads.  Obtain them from
:meth:`JqRuntime.compile <isolde.jqexpr.JqRuntime.compile>`.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from ..jsontext import compact
from .errors import BAD_COMMAND, JqError, no_output, runtime_error

__all__ = [
    "FastProgram",
    "GuardedProgram",
    "GuardedRunner",
    "PathProgram",
    "Program",
    "SIMPLE_PATH",
]

MODE_ALL = 0
MODE_FIRST = 1


class GuardedRunner(Protocol):
    """What a :class:`GuardedProgram` runs through (implemented by :class:`~.worker.WorkerPool`)."""

    def run(self, mode: int, wire: bytes, data: Any) -> list[Any]:
        """Outputs of program ``wire`` on ``data``: all (mode 0) or at most the first (mode 1)."""
        ...


class Program:
    """A compiled, checked jq program.

    Implementations share this interface: in-process (``guarded`` False) and worker
    (``guarded`` True).
    """

    __slots__ = ("guarded", "source")

    source: str
    guarded: bool

    def run(self, data: Any) -> list[Any]:
        """All outputs of the program applied to ``data``."""
        raise NotImplementedError

    def first(self, data: Any) -> Any:
        """The first output; JqError(badCommand) when the program produces none."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r} guarded={self.guarded}>"


_dump = compact(ascii=True)
"""The binding's ``input_value(v)`` is ``input_text(json.dumps(v))``; ``json.dumps`` builds
its C encoder on every call, this one is built once (the same text but for the spaces)."""


class FastProgram(Program):
    """In-process program: the hot path, one call into the binding per run."""

    __slots__ = ("_input_text", "_single")

    def __init__(self, source: str, compiled: Any, single: bool = False) -> None:
        self.source = source
        self.guarded = False
        self._input_text = compiled.input_text
        self._single = single  # gives exactly one output (.single): no trip into jq for a second

    def run(self, data: Any) -> list[Any]:
        try:
            if self._single:
                return [self._input_text(_dump(data)).first()]
            return self._input_text(_dump(data)).all()  # type: ignore[no-any-return]
        except StopIteration:  # not reached: a single program gives one output or fails
            return []
        except ValueError as exc:
            raise runtime_error(exc) from None
        except (TypeError, RecursionError) as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None

    def first(self, data: Any) -> Any:
        try:
            return self._input_text(_dump(data)).first()
        except StopIteration:
            raise no_output() from None
        except ValueError as exc:
            raise runtime_error(exc) from None
        except (TypeError, RecursionError) as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None


SIMPLE_PATH = re.compile(r"\s*\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?\s*")
"""Programs that :class:`PathProgram` evaluates (whole-string match)."""

_JQ_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


class PathProgram(Program):
    """A pure field path (``.``, ``.a``, ``.var.x``) evaluated in Python with jq's semantics.

    Such programs are the most common in real workflows (``jq(.name)``, a setter's ``.var.x``).
    Semantics match jq: a missing field or a null input gives null; indexing anything else but
    an object fails.
    """

    __slots__ = ("_keys",)

    def __init__(self, source: str) -> None:
        self.source = source
        self.guarded = False
        self._keys = tuple(k for k in source.strip()[1:].split(".") if k)

    def first(self, data: Any) -> Any:
        for key in self._keys:
            if type(data) is dict:
                data = data.get(key)
            elif data is None:
                return None
            else:
                kind = _JQ_TYPE.get(type(data), "value")
                raise JqError(BAD_COMMAND, f'Cannot index {kind} with string ("{key}")')
        return data

    def run(self, data: Any) -> list[Any]:
        return [self.first(data)]


class GuardedProgram(Program):
    """Worker program: each run is a request to ``runner`` (the worker pool), under a deadline.

    ``wire`` is the UTF-8 text the worker compiles (the shadowing prefix plus the source).
    """

    __slots__ = ("_runner", "_wire")

    def __init__(self, source: str, wire: bytes, runner: GuardedRunner) -> None:
        self.source = source
        self.guarded = True
        self._wire = wire
        self._runner = runner

    def run(self, data: Any) -> list[Any]:
        return self._runner.run(MODE_ALL, self._wire, data)

    def first(self, data: Any) -> Any:
        out = self._runner.run(MODE_FIRST, self._wire, data)
        if not out:
            raise no_output()
        return out[0]
