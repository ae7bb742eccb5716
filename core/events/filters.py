"""Which events a waiter or subscriber wants (:class:`EventFilter`).

An :class:`EventFilter` matches an event of exactly its ``type`` whose context
attributes (``source``, ``subject``, extension attributes, ...; never ``data``)
match every entry of its ``context``.  A string value is a glob (``fnmatch``
rules: ``*``, ``?``, ``[abc]``), so a value without glob characters is an exact
match; a number or boolean must be equal (or equal as text); ``null`` matches a
missing attribute.  Direktiv's v0.1 documents described these values as regular
expressions; isolde reads them as globs.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Mapping

from ..records import NEW, Frozen, typed_as_dataclass
from .cloudevents import RESERVED, as_text


@typed_as_dataclass(frozen=True)
class EventFilter(Frozen):
    """Which events a waiter or subscriber wants: an exact ``type`` and context conditions."""

    __slots__ = ("type", "context")
    __match_args__ = ("type", "context")
    _fresh = {"context": dict}
    type: str
    context: Mapping[str, Any]

    def __init__(self, type: str, context: Mapping[str, Any] = NEW) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "context", {} if context is NEW else context)

    def matches(self, event: Mapping[str, Any]) -> bool:
        if event.get("type") != self.type:
            return False
        for key, want in self.context.items():
            if key in RESERVED:
                return False
            have = event.get(key)
            if want is None:
                if have is not None:
                    return False
            elif have is None:
                return False
            elif isinstance(want, str):
                if not fnmatch.fnmatchcase(have if isinstance(have, str) else as_text(have), want):
                    return False
            elif have != want and as_text(have) != as_text(want):
                return False
        return True

    def describe(self) -> str:
        if not self.context:
            return f"'{self.type}'"
        conds = ", ".join(f"{k}={as_text(v)}" for k, v in self.context.items())
        return f"'{self.type}' ({conds})"
