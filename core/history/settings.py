"""``[history]``: what the instance history keeps, read once per engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..durations import parse_duration

__all__ = ["HistorySettings"]


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """The ``[history]`` table (docs/configuration.md)."""

    enabled: bool = True
    keep: int = 1000
    """Finished instances kept per namespace (0: none is kept once it ends)."""
    max_age: float | None = None
    """Seconds a finished instance is kept at most (None: no age limit)."""
    max_data_bytes: int = 4096
    """Bytes of a state's input or output kept in its timeline entry (more is cut, marked truncated)."""
    max_log_lines: int = 1000
    """Log lines kept per instance (the first ones; a marker line says how many were left out)."""
    with_state_commit: bool = True
    """Write the timeline and record in the commit of each state that writes variables
    (durable with them; the final state's commit carries the outcome).  False: the
    background writer stores them batched across instances (docs/performance.md)."""
    flush_interval: float = 0.5
    """Seconds between the background writer's rounds: timelines of long-running instances,
    outcomes of instances that wrote nothing, cancel requests from other processes."""

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
