"""The jq lexer: one pass over a program's text, enough to tell what each name *is*.

It knows identifiers, ``$variables``, ``.field`` access, strings with escapes and ``\\(...)``
interpolation (lexed recursively), numbers, ``#`` comments (with jq's backslash continuation),
formats and operators.  Knowing the token context lets :mod:`.analysis` tell a *use* of ``env``
apart from an object key (``{env: 1}``, ``{env}``), a field (``.env``, ``."env"``), a string
(``"env"``) or a differently named variable (``$env_x``); :mod:`.templates` uses :func:`scan`
to find the ``)`` that closes a ``jq(...)`` template.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["LexError", "Tok", "lex", "scan"]


class Tok(NamedTuple):
    """One jq token.  ``kind`` is ident, field, var, format, num, str, op, interp, interp_end."""

    kind: str
    start: int
    end: int
    text: str


class LexError(Exception):
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


def scan(src: str, pos: int, out: list[Tok], stop: bool) -> int:
    """Append the tokens of ``src[pos:]`` to ``out``.

    With ``stop`` the scan ends at the ``)`` that closes depth 0 (an interpolation or a
    ``jq(...)`` template) and returns its index; reaching the end first raises LexError.
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
            pos = scan_string(src, pos, out)
            continue
        if c in _IDENT_START:
            m = _IDENT_RE.match(src, pos)
            if m is not None:
                out.append(Tok("ident", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == "$":
            m = _VAR_RE.match(src, pos)
            if m is not None:
                out.append(Tok("var", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == ".":
            m = _FIELD_RE.match(src, pos)
            if m is not None:
                out.append(Tok("field", pos, m.end(), m.group()))
                pos = m.end()
                continue
            m = _NUM_RE.match(src, pos)
            if m is not None:
                out.append(Tok("num", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c in _DIGITS:
            m = _NUM_RE.match(src, pos)
            if m is not None:
                out.append(Tok("num", pos, m.end(), m.group()))
                pos = m.end()
                continue
        elif c == "@":
            m = _FORMAT_RE.match(src, pos)
            if m is not None:
                out.append(Tok("format", pos, m.end(), m.group()))
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
            out.append(Tok("op", pos, pos + 3, three))
            pos += 3
            continue
        two = src[pos : pos + 2]
        if two in _OPS2:
            out.append(Tok("op", pos, pos + 2, two))
            pos += 2
            continue
        out.append(Tok("op", pos, pos + 1, c))
        pos += 1
    if stop:
        raise LexError(n, "missing ')'")
    return n


def scan_string(src: str, pos: int, out: list[Tok]) -> int:
    """Scan the string literal starting at ``src[pos] == '"'``; return the index after it.

    The ``str`` token is appended first; each ``\\(...)`` adds ``interp``, the tokens of the
    interpolated expression, and ``interp_end``.
    """
    start = pos
    n = len(src)
    slot = len(out)
    out.append(Tok("str", start, start + 1, '"'))
    pos += 1
    while pos < n:
        c = src[pos]
        if c == '"':
            out[slot] = Tok("str", start, pos + 1, src[start : pos + 1])
            return pos + 1
        if c == "\\":
            if pos + 1 < n and src[pos + 1] == "(":
                out.append(Tok("interp", pos, pos + 2, "\\("))
                try:
                    close = scan(src, pos + 2, out, stop=True)
                except LexError:
                    raise LexError(pos, "unterminated string interpolation '\\(...)'") from None
                out.append(Tok("interp_end", close, close + 1, ")"))
                pos = close + 1
                continue
            pos += 2
            continue
        pos += 1
    raise LexError(start, "unterminated string literal")


def lex(src: str) -> list[Tok]:
    """Tokenise a whole jq program (raises LexError on unterminated strings)."""
    out: list[Tok] = []
    scan(src, 0, out, stop=False)
    return out
