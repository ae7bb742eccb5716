"""jq evaluation for isolde: compile once, run fast, and never let a program hurt the engine.

Every jq program in a workflow (``transform``, setter ``value``, switch ``condition``, the
``jq(...)`` templates of structured workflows, ...) goes through :class:`JqRuntime.compile`.
SPEC §7 asks two things of jq: programs cannot read the environment or files, and a runaway
program must not hang the engine.  The design that follows from that:

1. **A small jq lexer** (:func:`_lex`) reads each program once, at compile time.  It knows
   identifiers, ``$variables``, ``.field`` access, strings with escapes and ``\\(...)``
   interpolation (lexed recursively), numbers, ``#`` comments (with jq's backslash
   continuation), formats and operators.  Knowing the token context lets it tell a *use* of
   ``env`` apart from an object key (``{env: 1}``, ``{env}``), a field (``.env``, ``."env"``),
   a string (``"env"``) or a differently named variable (``$env_x``).

2. **Forbidden** identifiers make ``compile`` fail with ``direktiv.jq.badCommand`` and the
   offset of the token, whatever the context of the use:

   ================================  ======================================================
   ``env``, ``$ENV``                  read the engine's environment (secrets, tokens)
   ``input``, ``inputs``              read further inputs; isolde gives exactly one input
   ``input_filename``,                reveal the engine's input files / reading position
   ``input_line_number``
   ``debug``, ``stderr``              write to the engine's stderr behind the log's back
   ``halt``, ``halt_error``           try to stop the jq process (the engine, in-process)
   ``import``, ``include``,           load jq modules / JSON data from the file system
   ``modulemeta``, ``get_search_list``
   ``get_prog_origin``,               reveal file-system paths of the engine
   ``get_jq_origin``, ``$__prog_args``
   ================================  ======================================================

   Belt and braces: every program is compiled with a one-line prefix that redefines each of
   these builtins as ``error(...)`` and binds ``$ENV`` to null (``def env: error(..); ...
   null as $ENV | PROGRAM``).  If the lexer ever missed an indirect use, the program would
   still see nothing.  The prefix sits on line 1 without a newline, so ``$__loc__`` line
   numbers are unchanged, and jq's error columns on line 1 are shifted back by its length when
   they are turned into offsets.  Measured cost: unused ``def``\\ s are dropped by jq (0 µs); the
   ``$ENV`` binding costs ~0.1 µs per run.  The guarded worker also runs with a minimal
   environment (PATH, PYTHONPATH, PYTHONHOME, TZ), so there is nothing to leak there anyway.

3. **Guarded** programs (``Program.guarded``) are the ones that may not terminate quickly.
   They run in a worker process (``isolde._jqworker``) that is killed at the deadline.  A
   program is guarded when it uses (outside object keys and fields):

   - ``def``: user functions can recurse without bound (``def f: f; f``);
   - ``recurse(f)`` / ``recurse(f; cond)`` (with arguments), ``repeat``, ``while``, ``until``:
     generators whose length is decided by the program, not the data;
   - ``range``: ``[range(1e12)]`` is bounded only by patience;
   - ``combinations``: output size is exponential in the input;
   - the regex builtins ``test``, ``match``, ``capture``, ``scan``, ``splits``, ``sub``,
     ``gsub`` and two-argument ``split``: Oniguruma backtracking can be exponential;
   - ``setpath``, ``fromstream``, ``pick``, and any assignment (``=``, ``|=``, ``+=``, ...) in
     a program that indexes with a computed array index (``.[.i] = 1``) or uses ``getpath``:
     assigning to array index N allocates N slots, and jq aborts the *process* when that
     fails (``.[536870911] = 1``);
   - a number literal of 1e6 or more: the cheap way to spell a huge repeat count or index
     (``"x" * 1e9`` takes ~1 GB and seconds);
   - the ``*`` operator (and ``*=``): ``"x" * .n`` repeats a string as often as the *data*
     says, so one small untrusted input could take gigabytes in-process; multiplication and
     deep merge pay a worker round trip for that safety.

   Not guarded, because their cost is bounded by the data's size: ``..``, ``recurse`` without
   arguments, ``paths``, ``getpath`` (read), ``walk``, ``limit``, ``first``, ``reduce`` and
   ``foreach`` (their own cost follows their source), ``label``/``break``, ``ascii_downcase``
   and every other builtin.

   Known residual risks (documented, not defended): a fast-path program can still be
   polynomial in the data (``[.[] as $a | .[] as $b | .[] | 0]`` is cubic), and a repeat
   count taken from data (``"x" * .n``) can allocate up to jq's string-length cap (~2 GB)
   in-process.  Classification is by name, so the lists above are a policy, not a proof.

4. **Fast path**: unguarded programs run in-process through the ``jq`` binding, compiled once
   and cached by source string.  ``compile`` on a hit is one dict lookup; ``Program.first`` is
   one bound-method call into the binding plus exception translation (no per-call lexing).

5. **The worker** is started lazily on the first guarded run, kept alive, and caches compiled
   programs itself.  It is started as ``sys.executable .../_jqworker.py`` (by file path, not
   ``-m isolde._jqworker``) so it does not import isolde's package ``__init__`` and does not
   depend on how the parent found the ``isolde`` package; PYTHONPATH is passed through so it
   finds ``jq`` wherever the parent does.  Requests and responses are length-prefixed frames
   over its stdin/stdout pipes (protocol in ``_jqworker``); the parent waits with
   ``select.poll`` (no FD_SETSIZE limit, unlike ``select.select``) until the deadline, then
   SIGKILLs the worker and raises ``direktiv.limits.jq``.  The next guarded run starts a
   fresh worker.  One worker per runtime, used under a lock: concurrent guarded calls
   from several threads are serialised (a call's deadline starts once it holds the lock, so
   its limit measures its own run, not the queue).  Output over ``max_output`` bytes and a
   worker that dies (memory limit ``max_memory``, jq abort) are also ``direktiv.limits.jq``.
   POSIX only (pipes + poll).

Errors are :class:`JqError` with a Direktiv code: ``direktiv.jq.badCommand`` for compile and
runtime failures (message cleaned of jq's ``jq: error:`` noise; compile errors carry the
0-based character offset inside the program source), ``direktiv.limits.jq`` for the time,
output and memory limits.  ``direktiv.jq.notObject`` is raised by callers that need an object.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, NamedTuple

import jq as _jq

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

BAD_COMMAND = "direktiv.jq.badCommand"
NOT_OBJECT = "direktiv.jq.notObject"
LIMITS_JQ = "direktiv.limits.jq"

_CACHE_MAX = 8192  # programs come from workflow files; cleared wholesale if a daemon churns


class JqError(Exception):
    """A jq failure with the Direktiv error code the instance will report.

    ``offset`` is the 0-based character offset inside the program source (or, for
    :func:`find_templates`, inside the scanned text) so validation can point at the exact
    character of the YAML string.
    """

    code: str
    msg: str
    offset: int | None

    def __init__(self, code: str, msg: str, offset: int | None = None) -> None:
        super().__init__(code, msg, offset)
        self.code = code
        self.msg = msg
        self.offset = offset

    def __str__(self) -> str:
        where = "" if self.offset is None else f" (at offset {self.offset})"
        return f"{self.code}: {self.msg}{where}"


# --------------------------------------------------------------------------------------------
# Lexer


class _Tok(NamedTuple):
    """One jq token.  ``kind`` is ident, field, var, format, num, str, op, interp, interp_end."""

    kind: str
    start: int
    end: int
    text: str


class _LexError(Exception):
    """Unterminated string / interpolation / parenthesis, with the offset where it began."""

    def __init__(self, offset: int, msg: str) -> None:
        super().__init__(msg)
        self.offset = offset
        self.msg = msg


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_FIELD_RE = re.compile(r"\.[A-Za-z_][A-Za-z0-9_]*")
_VAR_RE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_FORMAT_RE = re.compile(r"@[A-Za-z0-9_]+")
_NUM_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_OPS3 = ("?//", "//=")
_OPS2 = ("|=", "+=", "-=", "*=", "/=", "%=", "==", "!=", "<=", ">=", "//", "..")
_WS = frozenset(" \t\r\n")
# ASCII only, like jq: str.isalpha()/isdigit() would accept "é" or "²", which jq rejects.
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGITS = frozenset("0123456789")


def _scan(src: str, pos: int, out: list[_Tok], stop: bool) -> int:
    """Append the tokens of ``src[pos:]`` to ``out``.

    With ``stop`` the scan ends at the ``)`` that closes depth 0 (an interpolation or a
    ``jq(...)`` template) and returns its index; reaching the end first raises _LexError.
    Without ``stop`` it returns ``len(src)``; unbalanced brackets are left for jq to report.
    """
    n = len(src)
    depth = 0
    while pos < n:
        c = src[pos]
        if c in _WS:
            pos += 1
            continue
        if c == "#":
            # jq comments run to the end of the line; a backslash escapes the next character,
            # including the newline (jq >= 1.7.1 continuation).
            pos += 1
            while pos < n and src[pos] != "\n":
                pos += 2 if src[pos] == "\\" else 1
            continue
        if c == '"':
            pos = _scan_string(src, pos, out)
            continue
        if c in _IDENT_START:
            m = _IDENT_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("ident", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == "$":
            m = _VAR_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("var", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == ".":
            m = _FIELD_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("field", pos, m.end(), m.group()))
                pos = m.end()
                continue
            m = _NUM_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("num", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c in _DIGITS:
            m = _NUM_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("num", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == "@":
            m = _FORMAT_RE.match(src, pos)
            if m is not None:
                out.append(_Tok("format", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            if depth == 0 and stop:
                return pos
            depth = max(depth - 1, 0)
        three = src[pos : pos + 3]
        if three in _OPS3:
            out.append(_Tok("op", pos, pos + 3, three))
            pos += 3
            continue
        two = src[pos : pos + 2]
        if two in _OPS2:
            out.append(_Tok("op", pos, pos + 2, two))
            pos += 2
            continue
        out.append(_Tok("op", pos, pos + 1, c))
        pos += 1
    if stop:
        raise _LexError(n, "missing ')'")
    return n


def _scan_string(src: str, pos: int, out: list[_Tok]) -> int:
    """Scan the string literal starting at ``src[pos] == '"'``; return the index after it.

    The ``str`` token is appended first; each ``\\(...)`` adds ``interp``, the tokens of the
    interpolated expression, and ``interp_end``.
    """
    start = pos
    n = len(src)
    slot = len(out)
    out.append(_Tok("str", start, start + 1, '"'))
    pos += 1
    while pos < n:
        c = src[pos]
        if c == '"':
            out[slot] = _Tok("str", start, pos + 1, src[start : pos + 1])
            return pos + 1
        if c == "\\":
            if pos + 1 < n and src[pos + 1] == "(":
                out.append(_Tok("interp", pos, pos + 2, "\\("))
                try:
                    close = _scan(src, pos + 2, out, stop=True)
                except _LexError:
                    raise _LexError(pos, "unterminated string interpolation '\\(...)'") from None
                out.append(_Tok("interp_end", close, close + 1, ")"))
                pos = close + 1
                continue
            pos += 2
            continue
        pos += 1
    raise _LexError(start, "unterminated string literal")


def _lex(src: str) -> list[_Tok]:
    """Tokenise a whole jq program (raises _LexError on unterminated strings)."""
    out: list[_Tok] = []
    _scan(src, 0, out, stop=False)
    return out


# --------------------------------------------------------------------------------------------
# Forbidden and guarded constructs

_FORBIDDEN_IDENTS: dict[str, str] = {
    "env": "it reads the engine's environment variables",
    "input": "it reads further inputs (a program gets exactly one input)",
    "inputs": "it reads further inputs (a program gets exactly one input)",
    "input_filename": "it reveals the engine's input files",
    "input_line_number": "it reveals the engine's input files",
    "debug": "it writes to the engine's stderr (use the state's log field)",
    "stderr": "it writes to the engine's stderr (use the state's log field)",
    "halt": "it would stop the jq runtime (use error(...))",
    "halt_error": "it would stop the jq runtime (use error(...))",
    "import": "it loads modules from the file system",
    "include": "it loads modules from the file system",
    "modulemeta": "it reads modules from the file system",
    "get_search_list": "it reveals file-system paths of the engine",
    "get_prog_origin": "it reveals file-system paths of the engine",
    "get_jq_origin": "it reveals file-system paths of the engine",
}
_FORBIDDEN_VARS: dict[str, str] = {
    "$ENV": "it reads the engine's environment variables",
    "$__prog_args": "it reads the engine's program arguments",
}

# Arities of the forbidden builtins that the shadowing prefix redefines.
_SHADOWED: tuple[tuple[str, int], ...] = (
    ("env", 0),
    ("input", 0),
    ("inputs", 0),
    ("input_filename", 0),
    ("input_line_number", 0),
    ("debug", 0),
    ("debug", 1),
    ("stderr", 0),
    ("halt", 0),
    ("halt_error", 0),
    ("halt_error", 1),
    ("modulemeta", 0),
    ("get_search_list", 0),
    ("get_prog_origin", 0),
    ("get_jq_origin", 0),
)


def _make_prefix() -> str:
    """The one-line shadowing prefix (see the module docstring, point 2)."""
    parts = []
    for name, arity in _SHADOWED:
        params = "" if arity == 0 else "(" + "; ".join(f"_a{i}" for i in range(arity)) + ")"
        parts.append(f'def {name}{params}: error("{name} is disabled in isolde"); ')
    return "".join(parts) + "null as $ENV | "


_PREFIX = _make_prefix()
_PREFIX_BYTES = len(_PREFIX.encode())
assert "\n" not in _PREFIX

_GUARD_ALWAYS = frozenset(
    {
        "def",
        "repeat",
        "while",
        "until",
        "range",
        "combinations",
        "test",
        "match",
        "capture",
        "scan",
        "splits",
        "sub",
        "gsub",
        "setpath",
        "fromstream",
        "pick",
    }
)
_ASSIGN_OPS = frozenset({"=", "|=", "+=", "-=", "*=", "/=", "%=", "//="})
_BIG_LITERAL = 1e6
# Tokens after which "[" is a postfix index (".a[...]") rather than an array constructor.
_TERM_END_OPS = frozenset({")", "]", "}", ".", "?", ".."})
_KEYWORDS = frozenset(
    {
        "if",
        "then",
        "elif",
        "else",
        "end",
        "as",
        "def",
        "reduce",
        "foreach",
        "try",
        "catch",
        "label",
        "import",
        "include",
        "and",
        "or",
        "__loc__",
    }
)


def _is_key(toks: list[_Tok], i: int, stack: list[str]) -> bool:
    """True when identifier ``toks[i]`` is an object key: ``{env: 1}`` or shorthand ``{env}``."""
    if not stack or stack[-1] != "{" or i == 0 or i + 1 >= len(toks):
        return False
    prev, nxt = toks[i - 1], toks[i + 1]
    return (
        prev.kind == "op"
        and prev.text in ("{", ",")
        and nxt.kind == "op"
        and nxt.text in (":", ",", "}")
    )


def _call_arity(toks: list[_Tok], i: int) -> int:
    """Number of arguments of the call at identifier ``toks[i]`` (0 when no parentheses)."""
    if i + 1 >= len(toks) or toks[i + 1].kind != "op" or toks[i + 1].text != "(":
        return 0
    depth = 0
    arity = 1
    for t in toks[i + 1 :]:
        if t.kind in ("interp", "interp_end"):
            depth += 1 if t.kind == "interp" else -1
            continue
        if t.kind != "op":
            continue
        if t.text in ("(", "[", "{"):
            depth += 1
        elif t.text in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                break
        elif t.text == ";" and depth == 1:
            arity += 1
    return arity


def _safe_index(toks: list[_Tok], i: int) -> bool:
    """Whether the postfix ``[`` at ``toks[i]`` indexes with something that cannot be huge.

    Empty (``.[]``), a lone string (object key, never an allocation) and a small number
    literal are safe; anything computed might be 536870911.
    """
    j = i + 1
    if j >= len(toks):
        return True
    t = toks[j]
    if t.kind == "op" and t.text == "]":
        return True
    if t.kind == "str":
        k = j + 1
        while k < len(toks) and toks[k].start < t.end:
            k += 1
        return k < len(toks) and toks[k].kind == "op" and toks[k].text == "]"
    if t.kind == "num":
        nxt = toks[j + 1] if j + 1 < len(toks) else None
        return (
            nxt is not None
            and nxt.kind == "op"
            and nxt.text == "]"
            and _num_value(t.text) < _BIG_LITERAL
        )
    return False


def _num_value(text: str) -> float:
    """Value of a jq number literal (inf when it overflows a double)."""
    try:
        return float(text)
    except (ValueError, OverflowError):  # pragma: no cover - _NUM_RE only matches floats
        return math.inf


def _check(toks: list[_Tok]) -> bool:
    """Raise JqError for forbidden uses; return whether the program must be guarded."""
    stack: list[str] = []
    guarded = False
    has_assign = False
    dynamic_index = False
    uses_getpath = False
    for i, t in enumerate(toks):
        kind = t.kind
        if kind == "op":
            text = t.text
            if text in ("(", "{"):
                stack.append(text)
            elif text == "[":
                if i > 0:
                    prev = toks[i - 1]
                    postfix = (
                        prev.kind in ("field", "var", "str")
                        or (prev.kind == "ident" and prev.text not in _KEYWORDS)
                        or (prev.kind == "op" and prev.text in _TERM_END_OPS)
                        or prev.kind == "interp_end"  # '"\\(.x)"[...]': string postfix
                    )
                    if postfix and not _safe_index(toks, i):
                        dynamic_index = True
                stack.append(text)
            elif text in (")", "]", "}"):
                if stack:
                    stack.pop()
            elif text in _ASSIGN_OPS:
                has_assign = True
                if text == "*=":
                    guarded = True
            elif text == "*":
                # "x" * .n repeats a string as often as the data says: gigabytes from
                # one small input.  Multiplication and deep merge go to the worker too
                # (its memory and time are capped; the in-process binding's are not).
                guarded = True
        elif kind == "interp":
            stack.append("(")
        elif kind == "interp_end":
            if stack:
                stack.pop()
        elif kind == "ident":
            name = t.text
            if _is_key(toks, i, stack):
                continue
            reason = _FORBIDDEN_IDENTS.get(name)
            if reason is not None:
                raise JqError(
                    BAD_COMMAND,
                    f"'{name}' is not allowed in isolde jq programs: {reason}",
                    t.start,
                )
            if name in _GUARD_ALWAYS:
                guarded = True
            elif name == "recurse" or name == "split":
                arity = _call_arity(toks, i)
                if (name == "recurse" and arity >= 1) or (name == "split" and arity >= 2):
                    guarded = True
            elif name == "getpath":
                uses_getpath = True
        elif kind == "var":
            reason = _FORBIDDEN_VARS.get(t.text)
            if reason is not None:
                raise JqError(
                    BAD_COMMAND,
                    f"'{t.text}' is not allowed in isolde jq programs: {reason}",
                    t.start,
                )
        elif kind == "num" and _num_value(t.text) >= _BIG_LITERAL:
            guarded = True
    if has_assign and (dynamic_index or uses_getpath):
        guarded = True
    return guarded


# --------------------------------------------------------------------------------------------
# Compile errors

_ERR_SPLIT_RE = re.compile(r"^jq: error: ", re.M)
_LOC_RE = re.compile(r" at <top-level>, line (\d+), column (\d+):?")
_INNER_LOC_RE = re.compile(r" at line \d+, column \d+")
_COUNT_RE = re.compile(r"^jq: \d+ compile errors?\s*$", re.M)


def _compile_error(source: str, raw: str) -> JqError:
    """Turn jq's compile-error text into a JqError with an offset into ``source``.

    jq reports "line L, column C" with C counted in bytes from 1, in the *prefixed* program;
    the prefix occupies the start of line 1 only.
    """
    full = (_PREFIX + source).encode()
    msgs: list[str] = []
    offset: int | None = None
    for chunk in _ERR_SPLIT_RE.split(_COUNT_RE.sub("", raw)):
        chunk = chunk.strip()
        if not chunk:
            continue
        first_line = chunk.split("\n", 1)[0]
        locs = list(_LOC_RE.finditer(first_line))
        if locs:
            loc = locs[-1]
            msg = first_line[: loc.start()]
            if offset is None:
                offset = _byte_loc_to_offset(full, int(loc.group(1)), int(loc.group(2)))
        else:
            msg = " ".join(chunk.split())
        msg = _INNER_LOC_RE.sub("", msg).strip()
        if msg and msg not in msgs:
            msgs.append(msg)
    return JqError(BAD_COMMAND, "; ".join(msgs) or "invalid jq program", offset)


def _byte_loc_to_offset(full: bytes, line: int, column: int) -> int:
    """Map jq's 1-based line / byte column in ``full`` to a character offset after the prefix."""
    pos = 0
    for _ in range(line - 1):
        nl = full.find(b"\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    byte_off = pos + max(column - 1, 0) - _PREFIX_BYTES
    byte_off = min(max(byte_off, 0), len(full) - _PREFIX_BYTES)
    return len(full[_PREFIX_BYTES : _PREFIX_BYTES + byte_off].decode("utf-8", "ignore"))


def _runtime_error(exc: Exception) -> JqError:
    """A jq runtime failure as badCommand, minus jq's "jq: error" noise."""
    text = str(exc)
    if text.startswith("jq: error"):
        text = text.split(":", 2)[-1].strip()
    return JqError(BAD_COMMAND, text or "jq program failed")


# --------------------------------------------------------------------------------------------
# Programs


class Program:
    """A compiled, checked jq program.  Obtain one from :meth:`JqRuntime.compile`.

    Two implementations share this interface: in-process (``guarded`` False) and worker
    (``guarded`` True).  Instances are immutable and safe to share between threads.
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


def _no_output() -> JqError:
    return JqError(BAD_COMMAND, "jq produced no output")


class _FastProgram(Program):
    """In-process program: the hot path, one call into the binding per run."""

    __slots__ = ("_input_value",)

    def __init__(self, source: str, compiled: Any) -> None:
        self.source = source
        self.guarded = False
        self._input_value = compiled.input_value

    def run(self, data: Any) -> list[Any]:
        try:
            return self._input_value(data).all()  # type: ignore[no-any-return]
        except ValueError as exc:
            raise _runtime_error(exc) from None
        except TypeError as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None

    def first(self, data: Any) -> Any:
        try:
            return self._input_value(data).first()
        except StopIteration:
            raise _no_output() from None
        except ValueError as exc:
            raise _runtime_error(exc) from None
        except TypeError as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None


_SIMPLE_PATH = re.compile(r"\s*\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?\s*")
_JQ_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}


class _PathProgram(Program):
    """A pure field path (``.``, ``.a``, ``.var.x``) evaluated in Python with jq's semantics.

    Such programs are the most common in real workflows (``jq(.name)``, a setter's
    ``.var.x``); following the path directly costs well under a microsecond instead of
    a round trip through the binding's JSON encoding.  Semantics match jq: a missing
    field or a null input gives null; indexing anything else but an object fails.
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


class _GuardedProgram(Program):
    """Worker program: each run is a round trip to the jq worker, under a deadline."""

    __slots__ = ("_runtime", "_wire")

    def __init__(self, source: str, wire: bytes, runtime: JqRuntime) -> None:
        self.source = source
        self.guarded = True
        self._wire = wire
        # A weak reference would be purer, but a Program outliving its runtime is a caller
        # bug; a strong one keeps the error message sane (the runtime restarts its worker).
        self._runtime = runtime

    def run(self, data: Any) -> list[Any]:
        return self._runtime._call(0, self._wire, data)

    def first(self, data: Any) -> Any:
        out = self._runtime._call(1, self._wire, data)
        if not out:
            raise _no_output()
        return out[0]


# --------------------------------------------------------------------------------------------
# Worker management


class _Timeout(Exception):
    """The deadline passed while talking to the worker."""


class _WorkerDied(Exception):
    """The worker closed its pipe (crashed, killed by a limit)."""


_REQ = struct.Struct(">BII")
_REPLY = struct.Struct(">cI")
_WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jqworker.py")
_STARTUP_TIMEOUT = 30.0
_ENV_KEEP = ("PATH", "PYTHONPATH", "PYTHONHOME", "TZ")


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill, wait for and close a worker (used directly and as its GC/exit finalizer)."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


class _Worker:
    """One running worker process and its non-blocking pipe ends."""

    def __init__(self, max_output: int, max_memory: int, backstop: float) -> None:
        env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
        self.proc = subprocess.Popen(
            [sys.executable, _WORKER_PATH, str(max_output), str(max_memory), repr(backstop)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # only a crash writes there; the operator should see it
            env=env,
            close_fds=True,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in = self.proc.stdin.fileno()
        self.fd_out = self.proc.stdout.fileno()
        os.set_blocking(self.fd_in, False)
        os.set_blocking(self.fd_out, False)
        self.poll_in = select.poll()
        self.poll_in.register(self.fd_out, select.POLLIN)
        self.poll_out = select.poll()
        self.poll_out.register(self.fd_in, select.POLLOUT)
        self.finalizer = weakref.finalize(self, _reap, self.proc)

    def stop(self) -> None:
        """SIGKILL and reap; idempotent."""
        self.finalizer()

    def _wait(self, poller: select.poll, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout
        poller.poll(max(1, math.ceil(left * 1000)))

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd_in, view)
            except BlockingIOError:
                self._wait(self.poll_out, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _WorkerDied from None
            view = view[n:]

    def recv(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        left = n
        while left:
            try:
                chunk = os.read(self.fd_out, min(left, 1 << 20))
            except BlockingIOError:
                self._wait(self.poll_in, deadline)
                continue
            if not chunk:
                raise _WorkerDied
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


class JqRuntime:
    """One per isolde Engine (no module globals except immutable tables).

    Holds the compile cache and the lazily started worker.  ``timeout`` bounds a guarded
    program's run time, ``max_output`` the JSON size of its outputs, ``max_memory`` the
    worker's address space (default: 1 GiB or 8 x ``max_output``, whichever is larger; 0 =
    unlimited).  Call :meth:`close` (or use it as a context manager) to stop the worker; a
    forgotten runtime's worker is also killed when the runtime is collected or at exit.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_output: int = 64 << 20,
        max_memory: int | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        if max_output <= 0:
            raise ValueError("max_output must be > 0")
        self._timeout = float(timeout)
        self._max_output = int(max_output)
        self._max_memory = (
            max(1 << 30, 8 * self._max_output) if max_memory is None else int(max_memory)
        )
        self._cache: dict[str, Program] = {}
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

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
            toks = _lex(source)
        except _LexError as exc:
            # The lexer's wording and offset (the opening quote) beat jq's "unexpected end of
            # file, expecting QQSTRING_TEXT ..." at the end of the text.
            raise JqError(BAD_COMMAND, exc.msg, exc.offset) from None
        guarded = _check(toks)
        if not toks:
            raise JqError(BAD_COMMAND, 'empty jq program (use "." for the identity)', 0)
        full = _PREFIX + source
        try:
            compiled = _jq.compile(full)
        except ValueError as exc:
            raise _compile_error(source, str(exc)) from None
        if not guarded:
            if _SIMPLE_PATH.fullmatch(source):
                return _PathProgram(source)
            return _FastProgram(source, compiled)
        return _GuardedProgram(source, full.encode(), self)

    # -- worker -------------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        """Start the worker and wait for its ready byte (start-up is not charged to a call)."""
        worker = _Worker(self._max_output, self._max_memory, self._timeout + 2.0)
        try:
            ready = worker.recv(1, time.monotonic() + max(_STARTUP_TIMEOUT, self._timeout))
        except (_Timeout, _WorkerDied):
            worker.stop()
            raise JqError(
                BAD_COMMAND,
                f"could not start the jq worker ({sys.executable} {_WORKER_PATH})",
            ) from None
        if ready != b"R":  # pragma: no cover - protocol violation
            worker.stop()
            raise JqError(BAD_COMMAND, "jq worker sent an unexpected greeting")
        return worker

    def _call(self, mode: int, wire: bytes, data: Any) -> list[Any]:
        """One request/response with the worker, under the deadline; restarts it as needed."""
        try:
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise JqError(BAD_COMMAND, f"input is not JSON: {exc}") from None
        request = _REQ.pack(mode, len(wire), len(payload)) + wire + payload
        with self._lock:
            worker = self._worker
            if worker is not None and worker.proc.poll() is not None:
                worker.stop()
                worker = self._worker = None
            if worker is None:
                worker = self._worker = self._start_worker()
            deadline = time.monotonic() + self._timeout
            try:
                worker.send(request, deadline)
                kind, length = _REPLY.unpack(worker.recv(_REPLY.size, deadline))
                if length > self._max_output + 1024:
                    raise _OutputTooLarge
                body = worker.recv(length, deadline)
            except _Timeout:
                self._drop_worker()
                raise JqError(
                    LIMITS_JQ,
                    f"jq program exceeded the {self._timeout} s limit "
                    "(set [limits] jq_timeout in isolde.toml to raise it)",
                ) from None
            except _OutputTooLarge:
                self._drop_worker()
                raise self._output_error() from None
            except _WorkerDied:
                self._drop_worker()
                why = (
                    f"most likely it exceeded the worker's {_fmt_bytes(self._max_memory)} "
                    "memory limit"
                    if self._max_memory > 0
                    else "it crashed"
                )
                raise JqError(
                    LIMITS_JQ, f"jq program stopped the jq worker process ({why})"
                ) from None
            except BaseException:
                # KeyboardInterrupt etc. mid-exchange: the pipe is out of sync, start afresh.
                self._drop_worker()
                raise
        if kind == b"O":
            return json.loads(body)  # type: ignore[no-any-return]
        if kind == b"L":
            raise self._output_error()
        return_msg = body.decode("utf-8", "replace")
        raise _runtime_error(ValueError(return_msg))

    def _output_error(self) -> JqError:
        return JqError(
            LIMITS_JQ,
            f"jq program output exceeded the {_fmt_bytes(self._max_output)} limit "
            "(set [limits] jq_max_output in isolde.toml to raise it)",
        )

    def _drop_worker(self) -> None:
        """Kill the worker (caller holds the lock); the next guarded call starts a new one."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker if started; idempotent.  The compile cache stays usable."""
        with self._lock:
            self._drop_worker()

    def __enter__(self) -> JqRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _OutputTooLarge(Exception):
    """The worker announced a response larger than the output limit."""


# --------------------------------------------------------------------------------------------
# Structured-JX templates


def find_templates(text: str) -> list[tuple[int, int, str]] | None:
    """Locate every ``jq(...)`` in a structured-mode (JX) string.

    Returns ``[(start, end, inner)]`` with ``text[start:end] == "jq(" + inner + ")"``, or None
    when the text has no ``jq(`` at all (the common case, decided by one ``in`` test).  The
    closing parenthesis is found with the jq lexer, so parentheses inside jq strings
    (including ``\\(...)`` interpolations and escapes) and comments do not count.  Any
    ``jq(`` starts a template, wherever it is in the text (no word-boundary check, so
    ``myjq(`` counts too).  An unterminated
    template raises JqError(badCommand) with the offset of its ``jq(``.
    """
    if "jq(" not in text:
        return None
    found: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        start = text.find("jq(", pos)
        if start < 0:
            return found
        try:
            close = _scan(text, start + 3, [], stop=True)
        except _LexError as exc:
            detail = "" if exc.offset >= len(text) else f" ({exc.msg} at offset {exc.offset})"
            raise JqError(
                BAD_COMMAND, f"unbalanced jq(...): no closing ')'{detail}", start
            ) from None
        found.append((start, close + 1, text[start + 3 : close]))
        pos = close + 1


def uses_js(text: str) -> int | None:
    """Offset of a ``js(`` template start (unsupported in isolde), else None.

    A ``js(`` inside a ``jq(...)`` template (e.g. in one of its strings) is jq text, not a
    template, and is ignored.
    """
    pos = text.find("js(")
    if pos < 0:
        return None
    try:
        spans = find_templates(text) or []
    except JqError:
        return pos
    while pos >= 0:
        if not any(s <= pos < e for s, e, _ in spans):
            return pos
        pos = text.find("js(", pos + 1)
    return None
