"""The ``[actions]`` table of isolde.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..durations import parse_duration
from ..errors import ConfigError
from .protocol import DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """The ``[actions]`` table of isolde.toml, checked."""

    timeout: float = DEFAULT_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    keep_folders: bool = False
    temp_dir: str | None = None

    KEYS: ClassVar[tuple[str, ...]] = ("timeout", "startup_timeout", "keep_folders", "temp_dir")

    @classmethod
    def from_config(cls, config: Any) -> ActionSettings:
        where = str(config.path) if getattr(config, "path", None) else "config"
        table = config.data.get("actions", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [actions] must be a table")
        for key in table:
            if key not in cls.KEYS:
                raise ConfigError(f"{where}: unknown setting [actions] {key!r} (known: {', '.join(cls.KEYS)})")
        timeout = config_seconds(table["timeout"], f"{where}: [actions] timeout") if "timeout" in table else DEFAULT_TIMEOUT
        startup = (
            config_seconds(table["startup_timeout"], f"{where}: [actions] startup_timeout")
            if "startup_timeout" in table
            else DEFAULT_STARTUP_TIMEOUT
        )
        keep = table.get("keep_folders", False)
        if not isinstance(keep, bool):
            raise ConfigError(f"{where}: [actions] keep_folders must be true or false, got {keep!r}")
        temp_dir = table.get("temp_dir")
        if temp_dir is not None:
            if not isinstance(temp_dir, str) or not temp_dir:
                raise ConfigError(f"{where}: [actions] temp_dir must be a directory path, got {temp_dir!r}")
            base = config.path.parent if getattr(config, "path", None) else Path.cwd()
            temp_dir = str((base / temp_dir).resolve())
        return cls(timeout, startup, keep, temp_dir)


def config_seconds(value: Any, where: str) -> float:
    """A time setting given as seconds (number) or an ISO-8601 duration string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is not None and seconds > 0:
            return seconds
    raise ConfigError(f"{where} must be a positive number of seconds or an ISO-8601 duration like \"PT5M\", got {value!r}")


__all__ = ["ActionSettings", "config_seconds"]
