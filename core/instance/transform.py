"""Applying a state's ``transform`` (Direktiv's rule: exactly one object)."""

from __future__ import annotations

from typing import Any

from ..errors import WorkflowError
from ..expr import Expr

NOT_OBJECT = "direktiv.jq.notObject"


def apply_transform(expr: Expr, data: Any) -> dict[str, Any]:
    """Evaluate a transform; it must give exactly one object (``direktiv.jq.notObject``
    otherwise, also when a query yields no value or several, as in Direktiv)."""
    outs = expr.eval_all(data)
    if len(outs) != 1:
        raise WorkflowError(NOT_OBJECT, f"transform must produce exactly one object, got {len(outs)} results")
    out = outs[0]
    if type(out) is not dict:
        raise WorkflowError(NOT_OBJECT, f"transform must produce an object, got {_kind(out)}")
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")


__all__ = ["NOT_OBJECT", "apply_transform"]
