"""Values that are evaluated against instance data: raw jq programs and ``jq(...)`` templates.

A workflow field typed ``jx`` in the schema language is compiled once, at load,
into one of the ``Expr`` classes below; running it is then only the compiled jq
program(s) plus a little glue.  Two document modes exist (SPEC §2.1):

* raw-jq mode: a string *is* a jq program; other values are literals.
* structured (JX) mode: a string that is wholly ``jq(...)`` becomes the query's
  result (any JSON type); ``jq(...)`` inside a longer string is replaced by the
  result's text; everything else is literal, recursively through mappings and lists.
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import lru_cache
from typing import Any, Callable

from .jqexpr import JqError, JqRuntime, Program, find_templates, uses_js

BAD_COMMAND = "direktiv.jq.badCommand"


def clone(value: Any) -> Any:
    """A fresh copy of a literal, so no instance can mutate what the workflow holds."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def to_text(value: Any) -> str:
    """How a value is spliced into a string or written to a log: strings as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return _compact(value)


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_sorted_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def splice_text(value: Any) -> str:
    """How a ``jq(...)`` result is written inside a longer string: strings as is, the rest
    as compact JSON with sorted keys (as Direktiv's Go encoder wrote it)."""
    if isinstance(value, str):
        return value
    return _sorted_compact(value)


_indented = json.JSONEncoder(ensure_ascii=False, indent=2, sort_keys=True).encode


def to_log_text(value: Any) -> str:
    """How a state's ``log`` value is written: as JSON text, as Direktiv 0.2.5+ did
    (strings quoted, objects and lists indented by two spaces with sorted keys)."""
    return _indented(value)


def catch_matches(pattern: str, code: str) -> bool:
    """Whether a ``catch`` pattern matches an error code: as a glob over the whole code
    (SPEC §2.2) or, as Direktiv did, as a regular expression found anywhere in it."""
    glob, regex = compile_catch(pattern)
    return glob.fullmatch(code) is not None or (regex is not None and regex.search(code) is not None)


@lru_cache(maxsize=1024)
def compile_catch(pattern: str) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """The (glob, regular expression) pair of a catch pattern, compiled once (the
    validator compiles every pattern at load); a pattern that is not a valid regular
    expression, such as ``*``, is a glob only."""
    try:
        regex: re.Pattern[str] | None = re.compile(pattern)
    except re.error:
        regex = None
    return re.compile(fnmatch.translate(pattern)), regex


class Expr:
    """Something evaluated against the state data."""

    __slots__ = ("source",)
    literal = False

    def __init__(self, source: Any) -> None:
        self.source = source

    def eval(self, data: Any) -> Any:
        """Exactly one value."""
        raise NotImplementedError

    def eval_all(self, data: Any) -> list[Any]:
        """Every value a query yields (one for anything that is not a bare query)."""
        return [self.eval(data)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


class Literal(Expr):
    __slots__ = ("value", "_copy")
    literal = True

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value
        self._copy = isinstance(value, (dict, list))

    def eval(self, data: Any) -> Any:
        return clone(self.value) if self._copy else self.value


class Query(Expr):
    """A whole jq program; ``eval`` insists on exactly one result."""

    __slots__ = ("program",)

    def __init__(self, source: str, program: Program) -> None:
        super().__init__(source)
        self.program = program

    def eval(self, data: Any) -> Any:
        out = self.program.run(data)
        if len(out) != 1:
            raise JqError(
                BAD_COMMAND,
                f"jq program {self.program.source!r} produced {len(out)} results; exactly one is needed here",
            )
        return out[0]

    def eval_all(self, data: Any) -> list[Any]:
        return self.program.run(data)


class Interpolation(Expr):
    """A string with ``jq(...)`` parts spliced in as text."""

    __slots__ = ("parts",)

    def __init__(self, source: str, parts: list[str | Program]) -> None:
        super().__init__(source)
        self.parts = parts

    def eval(self, data: Any) -> Any:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            values = part.run(data)
            if len(values) != 1:
                raise JqError(
                    BAD_COMMAND,
                    f"jq program {part.source!r} produced {len(values)} results; exactly one is needed here",
                )
            out.append(splice_text(values[0]))
        return "".join(out)


class Mapping(Expr):
    __slots__ = ("items",)

    def __init__(self, source: Any, items: list[tuple[str, Expr]]) -> None:
        super().__init__(source)
        self.items = items

    def eval(self, data: Any) -> Any:
        return {k: e.eval(data) for k, e in self.items}


class Sequence(Expr):
    __slots__ = ("items",)

    def __init__(self, source: Any, items: list[Expr]) -> None:
        super().__init__(source)
        self.items = items

    def eval(self, data: Any) -> Any:
        return [e.eval(data) for e in self.items]


class Deferred(Expr):
    """A raw-jq program that does not compile, in a field Direktiv checked only when it ran
    (ERAS §7: at load only transforms, conditions, ``log`` and setter ``value``): evaluating
    it raises the catchable ``direktiv.jq.badCommand`` with the syntax error."""

    __slots__ = ("message",)

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source)
        self.message = message

    def eval(self, data: Any) -> Any:
        raise JqError(BAD_COMMAND, f"jq program {self.source!r} does not compile: {self.message}")

    def eval_all(self, data: Any) -> list[Any]:
        return [self.eval(data)]


OnError = Callable[[Any, JqError, int | None], None]
"""Called with (path, error, offset within the string) for each program that does not compile."""


def compile_expr(
    value: Any, *, raw: bool, jq: JqRuntime, path: tuple[Any, ...], on_error: OnError, deferred: bool = False,
    modern: bool = False,
) -> Expr:
    """Compile a YAML value into an ``Expr``; report every bad program through ``on_error``
    (with ``deferred``, a raw program that does not compile becomes a :class:`Deferred`
    that fails when it runs instead).

    Structured documents follow Direktiv's template rules: a string containing
    ``jq(`` is trimmed of surrounding whitespace (0.3.3+); with ``modern`` (a
    document of Direktiv 0.6.1+: no top-level ``id``) every string is trimmed.  A
    ``jq(...)`` giving null gives null (docs/differences.md)."""
    if isinstance(value, str) and not raw and (modern or "jq(" in value):
        value = value.strip()
    if isinstance(value, str):
        if raw:
            try:  # Direktiv's gojq parses an empty program as the identity
                return Query(value, jq.compile(value if value.strip() else "."))
            except JqError as exc:
                if deferred:
                    return Deferred(value, exc.msg)
                on_error(path, exc, exc.offset)
                return Literal(value)
        try:
            spans = find_templates(value)
        except JqError as exc:
            on_error(path, exc, exc.offset)
            return Literal(value)
        if not spans:
            return Literal(value)
        programs: list[str | Program] = []
        last = 0
        ok = True
        for start, end, inner in spans:
            if start > last:
                programs.append(value[last:start])
            try:
                programs.append(jq.compile(inner))
            except JqError as exc:
                ok = False
                on_error(path, exc, None if exc.offset is None else start + 3 + exc.offset)
            last = end
        if last < len(value):
            programs.append(value[last:])
        if not ok:
            return Literal(value)
        if len(programs) == 1 and not isinstance(programs[0], str):
            return Query(value, programs[0])
        return Interpolation(value, programs)
    if raw:
        return Literal(value)
    if isinstance(value, dict):
        items = [(k, compile_expr(v, raw=raw, jq=jq, path=path + (k,), on_error=on_error, modern=modern))
                 for k, v in value.items()]
        literals = [(k, e) for k, e in items if isinstance(e, Literal)]
        if len(literals) == len(items):
            return Literal({k: e.value for k, e in literals}) if modern else Literal(value)
        return Mapping(value, items)
    if isinstance(value, list):
        seq = [compile_expr(v, raw=raw, jq=jq, path=path + (i,), on_error=on_error, modern=modern)
               for i, v in enumerate(value)]
        constants = [e for e in seq if isinstance(e, Literal)]
        if len(constants) == len(seq):
            return Literal([e.value for e in constants]) if modern else Literal(value)
        return Sequence(value, seq)
    return Literal(value)


def find_js(value: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], int] | None:
    """Where a ``js(...)`` expression is in a value: (path, offset in the string), or None."""
    if isinstance(value, str):
        off = uses_js(value)
        return None if off is None else (path, off)
    if isinstance(value, dict):
        for k, v in value.items():
            hit = find_js(v, path + (k,))
            if hit:
                return hit
    if isinstance(value, list):
        for i, v in enumerate(value):
            hit = find_js(v, path + (i,))
            if hit:
                return hit
    return None


def truthy(value: Any) -> bool:
    """Direktiv's truthiness: null, false, 0, "", [] and {} are false."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True
