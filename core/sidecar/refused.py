"""The exception that ends a request with an error answer."""

from __future__ import annotations

from .grants import Grant


class Refused(Exception):
    """Ends a request with an error answer ``{"error": message}``."""

    def __init__(self, status: int, message: str, *, grant: Grant | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.grant = grant  # set when the aid was valid: the refusal goes to that instance's log too
        self.headers: list[tuple[bytes, bytes]] = []  # more header fields for the answer
