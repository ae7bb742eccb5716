"""What a jq program may do, and what it may cost: forbidden names and the guarded rules.

**Forbidden** identifiers make compiling fail with ``direktiv.jq.badCommand`` and the offset of
the token, whatever the context of the use:

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

Belt and braces: every program is compiled with :data:`PREFIX`, one line that redefines each of
these builtins as ``error(...)`` and binds ``$ENV`` to null (``def env: error(..); ... null as
$ENV | PROGRAM``).  If the lexer ever missed an indirect use, the program would still see
nothing.  The prefix sits on line 1 without a newline, so ``$__loc__`` line numbers are
unchanged, and jq's error columns on line 1 are shifted back by its length when they are turned
into offsets.  Unused ``def``\\ s are dropped by jq (0 µs); the ``$ENV`` binding costs ~0.1 µs
per run.

**Guarded** programs are the ones that may not terminate quickly, or whose *compilation* may not
be cheap; they are compiled and run only in the killable jq worker (:mod:`.worker`).  A program
is guarded (:func:`check`) when it uses (outside object keys and fields):

- ``def``: user functions can recurse without bound (``def f: f; f``);
- ``recurse(f)`` / ``recurse(f; cond)`` (with arguments), ``repeat``, ``while``, ``until``:
  generators whose length is decided by the program, not the data;
- ``range``: ``[range(1e12)]`` is bounded only by patience;
- ``combinations``: output size is exponential in the input;
- the regex builtins ``test``, ``match``, ``capture``, ``scan``, ``splits``, ``sub``, ``gsub``
  and two-argument ``split``: Oniguruma backtracking can be exponential;
- ``setpath``, ``fromstream``, ``pick``, and any assignment (``=``, ``|=``, ``+=``, ...) in a
  program that indexes with a computed array index (``.[.i] = 1``) or uses ``getpath``:
  assigning to array index N allocates N slots, and jq aborts the *process* when that fails
  (``.[536870911] = 1``);
- a number literal of 1e6 or more: the cheap way to spell a huge repeat count or index;
- the ``*`` operator (and ``*=``): ``"x" * .n`` repeats a string as often as the *data* says,
  and jq *folds constants while compiling*, so ``"x" * 2000000000`` allocates 2 GB in
  ``jq_compile`` itself, before any run;
- more than :data:`CHEAP_SOURCE_CHARS` characters of source: jq's compile time grows faster
  than linearly with a program's size (a 15 KB ``.a + .a + ...`` takes over a second).

Why that makes compiling in-process *provably cheap*: jq folds only an operator whose two
operands are constants (literals or folded constants).  Apart from ``*`` (string repetition and
deep merge), every folded operator (``+ - / %``, comparisons) gives a result no larger than
its operands together, and array ``-`` is quadratic in sizes bounded by the source; so the
memory of compiling an unguarded program is bounded by its (short) source, and its time by the
size cap (measured: at most ~12 ms for 1 KiB of the worst shapes found).

Not guarded, because their cost is bounded by the data's size: ``..``, ``recurse`` without
arguments, ``paths``, ``getpath`` (read), ``walk``, ``limit``, ``first``, ``reduce`` and
``foreach`` (their own cost follows their source), ``label``/``break``, ``ascii_downcase`` and
every other builtin.

Known residual risks (documented, not defended): a fast-path program can still be polynomial in
the data (``[.[] as $a | .[] as $b | .[] | 0]`` is cubic).  Classification is by name, so the
lists above are a policy, not a proof.
"""

from __future__ import annotations

import math

from .errors import BAD_COMMAND, JqError
from .lexer import Tok

__all__ = ["CHEAP_SOURCE_CHARS", "PREFIX", "check"]

CHEAP_SOURCE_CHARS = 1024
"""Longest program compiled in-process (longer ones are guarded: compiled in the worker)."""

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
    """The one-line shadowing prefix (see the module docstring)."""
    parts = []
    for name, arity in _SHADOWED:
        params = "" if arity == 0 else "(" + "; ".join(f"_a{i}" for i in range(arity)) + ")"
        parts.append(f'def {name}{params}: error("{name} is disabled in isolde"); ')
    return "".join(parts) + "null as $ENV | "


PREFIX = _make_prefix()
assert "\n" not in PREFIX

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


def _is_key(toks: list[Tok], i: int, stack: list[str]) -> bool:
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


def _call_arity(toks: list[Tok], i: int) -> int:
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


def _safe_index(toks: list[Tok], i: int) -> bool:
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


def check(source: str, toks: list[Tok]) -> bool:
    """Raise JqError for forbidden uses; return whether the program must be guarded.

    ``toks`` are the tokens of ``source`` (:func:`~.lexer.lex`).
    """
    return _check_tokens(toks) or len(source) > CHEAP_SOURCE_CHARS


def _check_tokens(toks: list[Tok]) -> bool:
    """Raise JqError for forbidden uses; return whether the tokens ask for the worker."""
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
