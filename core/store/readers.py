"""Readable streams of a value (``ValueReader``), as ``open`` returns them."""

from __future__ import annotations

import io

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["InlineReader", "FileReader"]

_BUFFER: Final[int] = 1 << 20


class InlineReader(io.BytesIO):
    """A ValueReader over a value held in memory."""

    def __init__(self, data: bytes, mime: str, version: int = 0) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)
        self.version = version

    def __enter__(self) -> InlineReader:
        return self


class FileReader(io.BufferedReader):
    """A ValueReader over a value kept in a file: the open descriptor keeps the
    content readable even if a writer replaces the value and unlinks the file
    meanwhile."""

    def __init__(self, raw: io.FileIO, mime: str, size: int, version: int = 0) -> None:
        super().__init__(raw, buffer_size=_BUFFER)
        self.mime = mime
        self.size = size
        self.version = version

    def __enter__(self) -> FileReader:
        return self
