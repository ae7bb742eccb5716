"""Request bodies as the sidecar receives them: small ones in memory, large ones
spooled to a temporary file and handed to the store as a read-only ``mmap`` view,
so 256 connections uploading 64 MiB each do not need 16 GiB of memory."""

from __future__ import annotations

import mmap
import tempfile
from typing import IO

from .settings import SPOOL_THRESHOLD


class Body:
    """A received body: ``data`` is bytes, or a memoryview of a mapped temporary
    file (valid until :meth:`close`)."""

    __slots__ = ("data", "size", "_file", "_map")

    def __init__(self, data: bytes | memoryview, size: int, file: IO[bytes] | None = None,
                 mapped: mmap.mmap | None = None) -> None:
        self.data = data
        self.size = size
        self._file = file
        self._map = mapped

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        if isinstance(self.data, memoryview):
            self.data.release()
        self.data = b""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EMPTY = Body(b"", 0)


class BodySink:
    """Collects a body chunk by chunk; above ``threshold`` bytes it goes to a temporary file."""

    __slots__ = ("_parts", "_size", "_file", "_threshold")

    def __init__(self, expected: int | None, threshold: int = SPOOL_THRESHOLD) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._threshold = threshold
        self._file: IO[bytes] | None = None
        if expected is not None and expected > threshold:
            self._file = tempfile.TemporaryFile()

    @property
    def size(self) -> int:
        return self._size

    def add(self, data: bytes) -> None:
        self._size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._parts.append(data)
        if self._size > self._threshold:
            self._file = tempfile.TemporaryFile()
            for part in self._parts:
                self._file.write(part)
            self._parts = []

    def finish(self) -> Body:
        f = self._file
        if f is None:
            parts = self._parts
            return Body(parts[0] if len(parts) == 1 else b"".join(parts), self._size)
        self._file = None
        try:
            f.flush()
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            f.close()
            raise
        return Body(memoryview(mapped), self._size, f, mapped)

    def discard(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None
