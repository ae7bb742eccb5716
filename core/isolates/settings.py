"""The ``[actions]`` table of isolde.toml (its keys and types are checked by
``isolde.settings`` when the file is read)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..durations import parse_duration
from ..errors import ConfigError
from .protocol import DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT

BASE_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP", "USER", "LOGNAME")
"""What an isolate process inherits of isolde's environment (plus every ``LC_*``), and nothing
else: isolde's own settings (``ISOLDE_API_TOKEN``, ``ISOLDE_SECRET_*``) stay with isolde."""


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """The ``[actions]`` table."""

    timeout: float = DEFAULT_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    keep_folders: bool = False
    temp_dir: str | None = None
    pass_env: tuple[str, ...] = ()
    """More variables of isolde's environment an isolate process inherits (by name)."""

    @classmethod
    def from_config(cls, config: Any) -> ActionSettings:
        where = str(config.path) if getattr(config, "path", None) else "config"
        table = config.data.get("actions", {})
        timeout = config_seconds(table["timeout"], f"{where}: [actions] timeout") if "timeout" in table else DEFAULT_TIMEOUT
        startup = (
            config_seconds(table["startup_timeout"], f"{where}: [actions] startup_timeout")
            if "startup_timeout" in table
            else DEFAULT_STARTUP_TIMEOUT
        )
        temp_dir = table.get("temp_dir")
        if temp_dir is not None:
            base = config.path.parent if getattr(config, "path", None) else Path.cwd()
            temp_dir = str((base / temp_dir).resolve())
        return cls(timeout, startup, bool(table.get("keep_folders", False)), temp_dir, tuple(table.get("pass_env", ())))

    def isolate_environment(self, environ: dict[str, str]) -> dict[str, str]:
        """The part of ``environ`` an isolate process gets (see ``BASE_ENVIRONMENT``)."""
        return {k: v for k, v in environ.items() if k in BASE_ENVIRONMENT or k.startswith("LC_") or k in self.pass_env}


def config_seconds(value: Any, where: str) -> float:
    """A time setting given as seconds (number) or an ISO-8601 duration string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is not None and seconds > 0:
            return seconds
    raise ConfigError(f"{where} must be a positive number of seconds or an ISO-8601 duration like \"PT5M\", got {value!r}")


__all__ = ["ActionSettings", "BASE_ENVIRONMENT", "config_seconds"]
