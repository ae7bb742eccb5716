"""jq errors: :class:`JqError`, the Direktiv codes, and turning jq's messages into them.

jq reports compile errors as text ("jq: error: ... at <top-level>, line L, column C:") and
runtime errors as ``ValueError("jq: error (at ...): ...")``.  The helpers here clean that noise
off and turn jq's line / byte column into a 0-based character offset inside the program source,
so validation can point at the exact character of the YAML string.
"""

from __future__ import annotations

import re

__all__ = [
    "BAD_COMMAND",
    "LIMITS_JQ",
    "NOT_OBJECT",
    "JqError",
    "compile_error",
    "no_output",
    "runtime_error",
]

BAD_COMMAND = "direktiv.jq.badCommand"
NOT_OBJECT = "direktiv.jq.notObject"
LIMITS_JQ = "direktiv.limits.jq"


class JqError(Exception):
    """A jq failure with the Direktiv error code the instance will report.

    ``offset`` is the 0-based character offset inside the program source (or, for
    :func:`~isolde.jqexpr.find_templates`, inside the scanned text) so validation can point at
    the exact character of the YAML string.
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


def no_output() -> JqError:
    """``first`` of a program that produced nothing."""
    return JqError(BAD_COMMAND, "jq produced no output")


def runtime_error(exc: Exception) -> JqError:
    """A jq runtime failure as badCommand, minus jq's "jq: error" noise."""
    text = str(exc)
    if text.startswith("jq: error"):
        text = text.split(":", 2)[-1].strip()
    return JqError(BAD_COMMAND, text or "jq program failed")


_ERR_SPLIT_RE = re.compile(r"^jq: error: ", re.M)
_LOC_RE = re.compile(r" at <top-level>, line (\d+), column (\d+):?")
_INNER_LOC_RE = re.compile(r" at line \d+, column \d+")
_COUNT_RE = re.compile(r"^jq: \d+ compile errors?\s*$", re.M)


def compile_error(prefix: str, source: str, raw: str) -> JqError:
    """Turn jq's compile-error text into a JqError with an offset into ``source``.

    The program jq saw was ``prefix + source`` (the prefix sits on line 1, without a newline);
    jq reports "line L, column C" with C counted in bytes from 1 in that whole text.
    """
    full = (prefix + source).encode()
    prefix_bytes = len(prefix.encode())
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
                offset = _byte_loc_to_offset(full, prefix_bytes, int(loc.group(1)), int(loc.group(2)))
        else:
            msg = " ".join(chunk.split())
        msg = _INNER_LOC_RE.sub("", msg).strip()
        if msg and msg not in msgs:
            msgs.append(msg)
    return JqError(BAD_COMMAND, "; ".join(msgs) or "invalid jq program", offset)


def _byte_loc_to_offset(full: bytes, prefix_bytes: int, line: int, column: int) -> int:
    """Map jq's 1-based line / byte column in ``full`` to a character offset after the prefix."""
    pos = 0
    for _ in range(line - 1):
        nl = full.find(b"\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    byte_off = pos + max(column - 1, 0) - prefix_bytes
    byte_off = min(max(byte_off, 0), len(full) - prefix_bytes)
    return len(full[prefix_bytes : prefix_bytes + byte_off].decode("utf-8", "ignore"))
