"""Configuration: where it comes from and what it holds (SPEC §5.1).

Resolution order for the file: ``--config``, else ``$ISOLDE_CONFIG``, else
``./isolde.toml``, else ``[tool.isolde]`` in ``./pyproject.toml``, else defaults.
Data directory: ``--data-dir``, else ``$ISOLDE_DATA_DIR``, else ``data_dir`` in the
config file (relative to the file), else the user data directory (XDG).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_LIMITS: dict[str, float | int] = {
    "jq_timeout": 5.0,  # seconds a guarded jq program may run
    "jq_max_output": 64 << 20,  # bytes of jq output from a guarded program
    "jq_workers": 4,  # jq worker processes for guarded programs (started as needed)
    "max_steps": 10_000,  # state transitions per instance
    "max_input_bytes": 32 << 20,  # instance input
    "max_data_bytes": 64 << 20,  # state data after each state (JSON), so a loop can't grow it without bound
    "max_variable_bytes": 64 << 20,  # one variable value
    "max_yaml_bytes": 1 << 20,  # one workflow document
    "max_yaml_nodes": 100_000,  # YAML nodes after alias expansion
    "max_event_bytes": 1 << 20,  # one CloudEvent, as JSON
    "event_retain_count": 100,  # events kept per namespace while no instance waits for them
    "event_retain_seconds": 60,  # how long such an event is kept
    "lock_wait": 30.0,  # seconds an instance waits for a locked variable (lock: true)
    "max_subflow_depth": 10,  # subflows nested in subflows (direktiv.limits.depth)
    "foreach_concurrency": 10,  # calls of one foreach state running at once
    "archive_max_members": 10_000,  # entries of one tar / tar.gz (files: and out/ directories)
    "archive_max_member_bytes": 1 << 30,  # one file inside an archive
    "archive_max_total_bytes": 4 << 30,  # all files of one archive, unpacked
}

_KNOWN_TOP = {"data_dir", "store", "limits", "plugins", "images", "sidecar", "secrets", "actions", "daemon"}


@dataclass(slots=True)
class Config:
    """The parsed configuration; unknown keys are refused so typos don't pass silently."""

    data: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def durable(self) -> bool:
        store = self.data.get("store", {})
        durability = store.get("durability", "full")
        if durability not in ("full", "fast"):
            raise ConfigError(f"{self._where()}: [store] durability must be \"full\" or \"fast\", got {durability!r}")
        return durability == "full"

    def limit(self, name: str) -> Any:
        return self.data.get("limits", {}).get(name, DEFAULT_LIMITS[name])

    @property
    def disabled_plugins(self) -> list[str]:
        return list(self.data.get("plugins", {}).get("disable", []))

    def section(self, name: str) -> dict[str, Any]:
        """A plugin's own table, ``[plugins.NAME]``."""
        value = self.data.get("plugins", {}).get(name, {})
        return value if isinstance(value, dict) else {}

    def _where(self) -> str:
        return str(self.path) if self.path else "config"

    def validate(self) -> None:
        for table in ("store", "limits", "plugins", "images", "sidecar", "secrets", "actions", "daemon"):
            if table in self.data and not isinstance(self.data[table], dict):
                raise ConfigError(f"{self._where()}: '{table}' must be a table ([{table}]), got {type(self.data[table]).__name__}")
        if "data_dir" in self.data and not isinstance(self.data["data_dir"], str):
            raise ConfigError(f"{self._where()}: data_dir must be a string (a path)")
        for key in self.data:
            if key not in _KNOWN_TOP:
                raise ConfigError(f"{self._where()}: unknown setting '{key}' (known: {', '.join(sorted(_KNOWN_TOP))})")
        limits = self.data.get("limits", {})
        for key, value in limits.items():
            if key not in DEFAULT_LIMITS:
                raise ConfigError(f"{self._where()}: unknown limit '{key}' (known: {', '.join(sorted(DEFAULT_LIMITS))})")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
                raise ConfigError(f"{self._where()}: [limits] {key} must be a positive, finite number")
        disable = self.data.get("plugins", {}).get("disable", [])
        if not isinstance(disable, list) or not all(isinstance(n, str) for n in disable):
            # a bare string would otherwise be read letter by letter
            raise ConfigError(f'{self._where()}: [plugins] disable must be a list of plugin names, e.g. disable = ["checksum"]')
        self.durable  # noqa: B018 - validates the value


def load_config(path: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Config:
    """Find and read the configuration, following the documented order."""
    cwd = cwd or Path.cwd()
    chosen = path or os.environ.get("ISOLDE_CONFIG")
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        cfg = Config(_read_toml(p), p)
    elif (cwd / "isolde.toml").is_file():
        p = cwd / "isolde.toml"
        cfg = Config(_read_toml(p), p)
    elif (cwd / "pyproject.toml").is_file():
        p = cwd / "pyproject.toml"
        tool = _read_toml(p).get("tool", {})
        table = tool.get("isolde", {}) if isinstance(tool, dict) else {}
        if not isinstance(table, dict):
            raise ConfigError(f"{p}: [tool.isolde] must be a table, got {type(table).__name__}")
        cfg = Config(table, p)
    else:
        cfg = Config()
    cfg.validate()
    return cfg


def config_from(value: Config | dict[str, Any] | str | os.PathLike[str] | None) -> Config:
    """What ``Engine(config=...)`` accepts: a Config, a dict, a path, or None (resolve as the CLI does)."""
    if isinstance(value, Config):
        return value
    if isinstance(value, dict):
        cfg = Config(value)
        cfg.validate()
        return cfg
    return load_config(value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None


def resolve_data_dir(explicit: str | os.PathLike[str] | None, config: Config) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("ISOLDE_DATA_DIR")
    if env:
        return Path(env)
    configured = config.data.get("data_dir")
    if configured:
        base = config.path.parent if config.path else Path.cwd()
        return (base / configured).resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("isolde"))
