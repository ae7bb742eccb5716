"""JqRuntime: compile once (cached by source), choose how each program runs, own the workers.

:meth:`JqRuntime.compile` lexes a program, refuses forbidden names and decides whether it is
guarded (:mod:`.analysis`).  Only unguarded programs, whose compilation is provably cheap, are
compiled in-process (pure field paths are not even compiled: :class:`~.programs.PathProgram`);
a guarded program is compiled in the worker pool, where its memory and time are bounded, and a
compilation cut off by a limit is a ``direktiv.jq.badCommand`` like any other compile error (so
validation reports it at the program's location).  On a cache hit ``compile`` is one dict lookup.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import jq as _jq

from .analysis import PREFIX, check
from .errors import BAD_COMMAND, JqError, compile_error
from .lexer import LexError, lex
from .programs import SIMPLE_PATH, FastProgram, GuardedProgram, PathProgram, Program
from .single import single_output

if TYPE_CHECKING:
    from .worker import WorkerPool

__all__ = ["DEFAULT_WORKERS", "JqRuntime"]

_CACHE_MAX = 8192  # programs come from workflow files; cleared wholesale if a daemon churns
DEFAULT_WORKERS = 4


class JqRuntime:
    """One per isolde Engine (no module globals except immutable tables).

    Holds the compile cache and the pool of up to ``workers`` lazily started worker processes.
    ``timeout`` bounds a guarded program's request (counted from the request, waiting for a free
    worker included) and a worker compilation, ``max_output`` the JSON size of a guarded
    program's outputs, ``max_memory`` each worker's address space (default: 1 GiB or 8 x
    ``max_output``, whichever is larger; 0 = unlimited).  Call :meth:`close` (or use it as a
    context manager) to stop the workers; a forgotten runtime's workers are also killed when it
    is collected or at exit.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_output: int = 64 << 20,
        max_memory: int | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        if max_output <= 0:
            raise ValueError("max_output must be > 0")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        hint = ""
        if max_memory is None:
            max_memory = max(1 << 30, 8 * int(max_output))
            hint = "the limit is the larger of 1 GiB and 8 x [limits] jq_max_output in isolde.toml"
        self._pool_args: dict[str, Any] = {
            "size": int(workers), "timeout": float(timeout), "max_output": int(max_output),
            "max_memory": int(max_memory), "memory_hint": hint,
        }
        self._made_pool: WorkerPool | None = None  # made (and its module imported) by the first guarded program
        self._pool_lock = threading.Lock()
        self._cache: dict[str, Program] = {}

    @property
    def workers(self) -> int:
        """The most worker processes this runtime runs at once."""
        return int(self._pool_args["size"])

    @property
    def _pool(self) -> WorkerPool:
        pool = self._made_pool
        if pool is None:
            with self._pool_lock:
                if self._made_pool is None:
                    from .worker import WorkerPool

                    self._made_pool = WorkerPool(**self._pool_args)
                pool = self._made_pool
        return pool

    # -- compile ------------------------------------------------------------------------------

    def compile(self, source: str) -> Program:
        """Compile (or fetch from the cache) a checked program; JqError with offset if bad."""
        try:
            return self._cache[source]
        except KeyError:
            pass
        program = self._build(source)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[source] = program
        return program

    def _build(self, source: str) -> Program:
        if not isinstance(source, str):
            raise TypeError(f"jq program must be a string, not {type(source).__name__}")
        try:
            toks = lex(source)
        except LexError as exc:
            # The lexer's wording and offset (the opening quote) beat jq's "unexpected end of
            # file, expecting QQSTRING_TEXT ..." at the end of the text.
            raise JqError(BAD_COMMAND, exc.msg, exc.offset) from None
        guarded = check(source, toks)
        if not toks:
            raise JqError(BAD_COMMAND, 'empty jq program (use "." for the identity)', 0)
        full = PREFIX + source
        if guarded:
            # Not provably cheap to compile: only the worker compiles it (bounded).
            wire = full.encode()
            failure = self._pool.compile(wire)
            if failure is not None:
                raise compile_error(PREFIX, source, failure)
            return GuardedProgram(source, wire, self._pool)
        if SIMPLE_PATH.fullmatch(source):
            return PathProgram(source)
        try:
            compiled: Any = _jq.compile(full)
        except ValueError as exc:
            raise compile_error(PREFIX, source, str(exc)) from None
        return FastProgram(source, compiled, single_output(toks))

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers if started; idempotent.  The compile cache stays usable."""
        pool = self._made_pool
        if pool is not None:
            pool.close()

    def __enter__(self) -> JqRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
