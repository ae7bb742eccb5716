"""Configuration: where it comes from and what it holds (SPEC §5.1).

Resolution order for the file: ``--config``, else ``$ISOLDE_CONFIG``, else
``./isolde.toml``, else ``[tool.isolde]`` in ``./pyproject.toml``, else defaults.
Data directory: ``--data-dir``, else ``$ISOLDE_DATA_DIR``, else ``data_dir`` in the
config file (relative to the file), else the user data directory (XDG).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ConfigError
from .settings import DEFAULT_LIMITS, check

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any


class Config:
    """The parsed configuration; unknown keys are refused so typos don't pass silently.

    (Written out rather than a ``@dataclass(slots=True)``, with the same methods:
    ``dataclasses`` costs a short command several milliseconds to import.)"""

    __slots__ = ("data", "path")
    __match_args__ = ("data", "path")
    # mutable: compared by value, not hashable (as a dataclass with eq and not frozen)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, data: dict[str, Any] | None = None, path: Path | None = None) -> None:
        self.data: dict[str, Any] = {} if data is None else data
        self.path = path

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(data={self.data!r}, path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            o: Config = other
            return (self.data, self.path) == (o.data, o.path)
        return NotImplemented

    @property
    def durable(self) -> bool:
        return bool(self.data.get("store", {}).get("durability", "full") == "full")

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
        """Check every table and key against ``isolde.settings`` (one clear line at start)."""
        check(self.data, self._where())


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
    # imported here: a command run without a config file does not load the TOML parser
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

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
        return (base / str(configured)).resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("isolde"))
