"""Secrets an action names, placed at ``.secrets.NAME`` while its ``input`` is evaluated."""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import WorkflowError
from .spec import ActionSpec


def env_name(name: str) -> str:
    """``$ISOLDE_SECRET_<NAME>``: the name upper-cased, anything but letters and digits as ``_``."""
    return "ISOLDE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def with_secrets(table: dict[str, Any], spec: ActionSpec, data: dict[str, Any]) -> dict[str, Any]:
    """``.secrets.NAME`` for the input: ``[secrets] NAME`` in isolde.toml, else ``$ISOLDE_SECRET_NAME``."""
    found: dict[str, Any] = {}
    for name in spec.secrets:
        if name in table:
            found[name] = table[name]
            continue
        value = os.environ.get(env_name(name))
        if value is None:
            raise WorkflowError(
                "direktiv.secrets.notFound",
                f"secret '{name}' is not set: add {name} = \"...\" under [secrets] in isolde.toml "
                f"or set ${env_name(name)}",
            )
        found[name] = value
    return {**data, "secrets": found}


__all__ = ["env_name", "with_secrets"]
