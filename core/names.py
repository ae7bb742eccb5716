"""The rule for namespace names, shared by the engine and the command line."""

from __future__ import annotations

from .errors import IsoldeError


def check_name(value: str, what: str) -> None:
    if not value or "\x00" in value or "/" in value or len(value.encode()) > 255:
        raise IsoldeError(f"invalid {what} name {value!r}: 1-255 bytes, no '/' or NUL")


__all__ = ["check_name"]
