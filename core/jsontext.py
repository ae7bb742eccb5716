"""Compact JSON text for the hot path (the instance loop, instance history).

``json.JSONEncoder.encode`` builds a new C encoder on every call (plus a few checks and
closures in Python): about half the cost of encoding a small object.  ``compact`` builds
that encoder once and calls it directly; the text is the same as ``JSONEncoder(
ensure_ascii=False, separators=(",", ":"), check_circular=False)`` gives.  Without a
circular-reference check, only callers whose values come from JSON (or are checked for
it elsewhere) use it: a cycle ends in ``RecursionError``, as with that encoder.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["compact"]


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def compact(default: Callable[[Any], Any] | None = None, *, ascii: bool = False) -> Callable[[Any], str]:
    """An encoder of compact JSON text (non-ASCII kept, or with ``ascii`` escaped as
    ``json.dumps`` does); ``default`` turns a value JSON cannot hold into one it can
    (without it: ``TypeError``)."""
    from json import encoder as std

    make = getattr(std, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator: the standard path
        return json.JSONEncoder(ensure_ascii=ascii, separators=(",", ":"), check_circular=False,
                                default=default).encode
    # (the C ones when the accelerator is there)
    basestring = std.encode_basestring_ascii if ascii else std.encode_basestring
    run = make(None, default or _refuse, basestring, None, ":", ",", False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(run(value, 0))

    return encode
