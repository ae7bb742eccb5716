"""Which jq programs give exactly one output, known from their tokens.

Asking the jq binding for *all* outputs costs one more trip into jq after the first (it
must backtrack through the whole program to learn there is no second one): about a quarter
of a small transform's run.  A program built only from single-valued pieces gives exactly
one output or an error, so :class:`~.programs.FastProgram` asks such a program for its
first output and knows it is the only one.

The rule is a whitelist, so a program it does not understand is simply run the general
way: field access (``.a.b``, ``."a"``), literals, strings (interpolations included), formats,
arithmetic and comparison operators, ``and``/``or``, ``//``, the pipe, parentheses,
assignments and updates (``=``, ``|=``, ``+=``, ...), object construction (the only place a
comma may appear) and a short list of builtins that give one value for one input.  Not
single: ``,`` elsewhere, ``[`` (iteration and slices are not told apart here), ``..``,
``?``, variables and ``as``, ``if``, ``reduce``, ``empty``, ``select``, ``error``, any other
name.  Every piece of a single program gives one output per input, and so does their
composition (a pipe, an operator, an assignment with a single right-hand side).
"""

from __future__ import annotations

from .lexer import Tok

__all__ = ["single_output"]

_OPS = frozenset({
    "(", ")", "{", "}", ":", "|", "+", "-", "/", "%", "==", "!=", "<", "<=", ">", ">=", "//",
    "=", "|=", "+=", "-=", "/=", "%=", "//=", ".",
})
# Builtins that give one output for one input (and single arguments).
_NAMES = frozenset({
    "true", "false", "null", "and", "or", "not", "length", "utf8bytelength", "keys", "keys_unsorted",
    "tostring", "tonumber", "type", "ascii_downcase", "ascii_upcase", "floor", "ceil", "round", "sqrt",
    "fabs", "tojson", "fromjson", "add", "min", "max", "sort", "unique", "reverse", "to_entries",
    "from_entries", "has", "contains", "inside", "startswith", "endswith", "ltrimstr", "rtrimstr",
    "join", "split", "implode", "explode", "isnan", "isinfinite", "isnormal", "infinite", "nan",
})


def single_output(toks: list[Tok]) -> bool:
    """Whether the program of these tokens gives exactly one output (or fails)."""
    stack: list[str] = []
    for i, t in enumerate(toks):
        kind = t.kind
        if kind == "op":
            text = t.text
            if text in ("(", "{"):
                stack.append(text)
            elif text in (")", "}"):
                if not stack:
                    return False
                stack.pop()
            elif text == ",":
                if not stack or stack[-1] != "{":
                    return False
            elif text not in _OPS:
                return False
        elif kind == "interp":
            stack.append("(")
        elif kind == "interp_end":
            if not stack:
                return False
            stack.pop()
        elif kind == "ident":
            if t.text in _NAMES:
                continue
            # an object key: {a: ...} or the shorthand {a}
            if not (stack and stack[-1] == "{" and 0 < i < len(toks) - 1):
                return False
            prev, nxt = toks[i - 1], toks[i + 1]
            if not (prev.kind == "op" and prev.text in ("{", ",") and nxt.kind == "op" and nxt.text in (":", ",", "}")):
                return False
        elif kind not in ("field", "num", "str", "format"):
            return False  # variables, and anything new
    return not stack
