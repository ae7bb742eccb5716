"""jq evaluation for isolde: compile once, run fast, and never let a program hurt the engine.

Every jq program in a workflow (``transform``, setter ``value``, switch ``condition``, the
``jq(...)`` templates of structured workflows, ...) goes through :meth:`JqRuntime.compile`.
SPEC §7 asks two things of jq: programs cannot read the environment or files, and a runaway
program (or a costly compilation) must not hang or abort the engine.  The parts:

- :mod:`.lexer`: one pass over a program's text, so a *use* of ``env`` is told apart from a
  key, a field or a string;
- :mod:`.analysis`: forbidden names (refused, with their offset), the shadowing prefix, and the
  rules that decide which programs are *guarded* (may run long, or may be costly to compile);
- :mod:`.programs`: :class:`Program` and its in-process (fast, field path) and guarded kinds;
- :mod:`.worker`: the killable worker processes (``_jqworker.py``) and their bounded pool, with
  each request's deadline counted from the request;
- :mod:`.runtime`: :class:`JqRuntime`, the compile cache, choosing the kind, owning the pool;
- :mod:`.errors`: :class:`JqError`, the Direktiv codes, and jq message / location parsing;
- :mod:`.templates`: ``jq(...)`` spans of structured documents and ``js(...)`` detection.

Errors are :class:`JqError` with a Direktiv code: ``direktiv.jq.badCommand`` for compile and
runtime failures (message cleaned of jq's ``jq: error:`` noise; compile errors carry the 0-based
character offset inside the program source), ``direktiv.limits.jq`` for the time, output and
memory limits of a guarded run.  ``direktiv.jq.notObject`` is raised by callers that need an
object.
"""

from __future__ import annotations

from .errors import BAD_COMMAND, LIMITS_JQ, NOT_OBJECT, JqError
from .programs import Program
from .runtime import JqRuntime
from .templates import find_templates, uses_js

__all__ = [
    "BAD_COMMAND",
    "LIMITS_JQ",
    "NOT_OBJECT",
    "JqError",
    "JqRuntime",
    "Program",
    "find_templates",
    "uses_js",
]
