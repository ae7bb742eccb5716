"""``jq(...)`` templates of structured (JX) documents: where they are, and ``js(...)``."""

from __future__ import annotations

from .errors import BAD_COMMAND, JqError
from .lexer import LexError, scan

__all__ = ["find_templates", "uses_js"]


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
            close = scan(text, start + 3, [], stop=True)
        except LexError as exc:
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
