"""isolde-checksum: a ``checksum`` state type for isolde workflows.

A third-party plugin, written only against isolde's public plugin API: it is
found through the ``isolde`` entry-point group (see ``pyproject.toml``), declares
its fields in isolde's schema language, and implements ``run``.  Everything a
state has in common (``transform``, ``transition``, ``log``, ``catch``) is done by
the engine, so this module only computes a digest.

Why the digest input is defined the way it is: a checksum is only useful if the
same value always gives the same bytes.  Strings are hashed as their UTF-8 text
(so ``sha256`` of ``"abc"`` is the well-known ``ba7816bf...``); every other JSON
value is hashed as compact JSON with sorted keys, so ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` have the same checksum whatever order a jq program built
them in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from isolde.plugin import Report, StateContext, StateSpec, StateType, Workflow, WorkflowError, hookimpl

INVALID_VALUE = "checksum.invalidValue"
"""Error code (catchable) for a value that has no canonical bytes, e.g. a string with a lone surrogate."""


class Checksum(StateType):
    """``type: checksum``: place the digest of ``value`` at ``.<as>``."""

    name = "checksum"
    schema = """
    state checksum "Computes a digest of a value and places it at .<as> (strings are hashed as UTF-8, other values as compact JSON with sorted keys)." {
        value!: jx
            "The value to hash, evaluated against the state data."
        algorithm: "sha256" | "sha1" | "md5" | "blake2b" = "sha256"
            "The hash function."
        encoding: "hex" | "base64" = "hex"
            "How the digest is written: lowercase hex or standard base64."
        as: string = "checksum"
            "The top-level key of the state data that receives the digest."
    }
    """

    resumable = True  # pure: running it again from the same input gives the same data

    def check(self, state: StateSpec, workflow: Workflow, report: Report) -> None:
        """Refuse an empty ``as`` at load time and precompute what ``run`` needs."""
        target = state.fields["as"]
        if not target:
            report.error(state.path + ("as",), "'as' must name a key of the state data, e.g. as: checksum")
        state.extra["checksum"] = (state.fields["value"], state.fields["algorithm"], state.fields["encoding"], target)

    def run(self, state: StateSpec, data: dict[str, Any], ctx: StateContext) -> dict[str, Any]:
        expr, algorithm, encoding, target = state.extra["checksum"]
        digest = hashlib.new(algorithm, canonical_bytes(expr.eval(data)), usedforsecurity=False).digest()
        text = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")
        return {**data, target: text}


def canonical_bytes(value: Any) -> bytes:
    """The bytes that are hashed: UTF-8 for a string, compact sorted-key JSON for anything else."""
    try:
        if isinstance(value, str):
            return value.encode("utf-8")
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:
        # Lone surrogates (from \\ud800 in JSON input) or NaN/Infinity have no canonical form.
        raise WorkflowError(INVALID_VALUE, f"cannot hash this value: {exc}") from None


@hookimpl
def isolde_state_types() -> list[type[StateType]]:
    return [Checksum]
