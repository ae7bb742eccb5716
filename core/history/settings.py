"""``[history]``: what the instance history keeps, read once per engine."""

from __future__ import annotations

from typing import Any

from ..durations import parse_duration
from ..records import Frozen, typed_as_dataclass

__all__ = ["HistorySettings"]


@typed_as_dataclass(frozen=True)
class HistorySettings(Frozen):
    """The ``[history]`` table (docs/configuration.md)."""

    __slots__ = ("enabled", "keep", "max_age", "max_data_bytes", "max_log_lines", "with_state_commit", "flush_interval")
    __match_args__ = ("enabled", "keep", "max_age", "max_data_bytes", "max_log_lines", "with_state_commit",
                      "flush_interval")
    enabled: bool
    keep: int
    """Finished instances kept per namespace (0: none is kept once it ends)."""
    max_age: float | None
    """Seconds a finished instance is kept at most (None: no age limit)."""
    max_data_bytes: int
    """Bytes of a state's input or output kept in its timeline entry (more is cut, marked truncated)."""
    max_log_lines: int
    """Log lines kept per instance (the first ones; a marker line says how many were left out)."""
    with_state_commit: bool
    """Write the timeline and record in the commit of each state that writes variables
    (durable with them; the final state's commit carries the outcome).  False (the
    default): an ended instance's history is written with other instances', in batches
    (``history.service.ENDING_BATCH``; docs/performance.md)."""
    flush_interval: float
    """Seconds between the background writer's rounds: timelines of long-running instances,
    outcomes of instances that wrote nothing, cancel requests from other processes."""

    def __init__(self, enabled: bool = True, keep: int = 1000, max_age: float | None = None,
                 max_data_bytes: int = 4096, max_log_lines: int = 1000, with_state_commit: bool = False,
                 flush_interval: float = 0.5) -> None:
        _set = object.__setattr__
        _set(self, "enabled", enabled)
        _set(self, "keep", keep)
        _set(self, "max_age", max_age)
        _set(self, "max_data_bytes", max_data_bytes)
        _set(self, "max_log_lines", max_log_lines)
        _set(self, "with_state_commit", with_state_commit)
        _set(self, "flush_interval", flush_interval)

    @classmethod
    def from_config(cls, config: Any) -> HistorySettings:
        table: dict[str, Any] = dict(config.data.get("history", {}) or {})
        age = table.get("max_age")
        if isinstance(age, str):
            age = parse_duration(age)
        base = cls()
        return cls(
            enabled=bool(table.get("enabled", base.enabled)),
            keep=int(table.get("keep", base.keep)),
            max_age=float(age) if age is not None else None,
            max_data_bytes=int(table.get("max_data_bytes", base.max_data_bytes)),
            max_log_lines=int(table.get("max_log_lines", base.max_log_lines)),
            with_state_commit=bool(table.get("with_state_commit", base.with_state_commit)),
            flush_interval=float(table.get("flush_interval", base.flush_interval)),
        )
