"""ISO-8601 durations, as workflows and the configuration write them (``PT30S``, ``P1D``)."""

from __future__ import annotations

import re

_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(\d+(?:\.\d+)?)Y)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_DURATION_SECONDS = (365 * 86400, 30 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def parse_duration(text: str) -> float | None:
    """ISO-8601 duration in seconds (years and months approximated), or None if malformed."""
    m = _ISO_DURATION.match(text)
    if not m:
        return None
    return sum(float(g) * s for g, s in zip(m.groups(), _DURATION_SECONDS) if g)


__all__ = ["parse_duration"]
