"""Materialising ``files:`` in the action folder before the call (SPEC §4.3).

* ``plain`` is the stored bytes; ``base64`` decodes them, ignoring ASCII
  whitespace, and also accepts a JSON string of base64 (what a setter stores by
  default), so ``value: "aGk="`` with the default mime type works; ``tar`` /
  ``tar.gz`` go through :func:`isolde.files.archive.extract`.  A missing
  variable is an empty file or an empty directory.
* ``as`` (or the key) is normalised like an archive member name: leading
  ``/`` stripped, ``..`` refused, parents created (0755).
* Files are written 0644 (the folder's own 0700 keeps other users out);
  ``permissions`` sets the mode of a ``plain`` / ``base64`` file, masked with
  :data:`MODE_MASK`: no setuid, setgid or sticky bit, no group or other write.
* Values come from an opener, ``open_value(scope, key)``: a readable binary
  stream with ``mime`` and ``size`` (the store's ``open(ref)``), or None when
  the variable is missing.  It is read in chunks by the thread that writes the
  folder, so a 100 MB archive never sits in memory whole.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from ..errors import WorkflowError
from .archive import ArchiveLimits, extract
from .paths import WRITE_FLAGS, safe_relpath, write_all

__all__ = ["FILE_TYPES", "MODE_MASK", "FileSpec", "Materialiser", "OpenValue", "ValueStream"]

FILE_TYPES: Final = ("plain", "base64", "tar", "tar.gz")
#: ``permissions`` keeps only these bits: rwx for the owner, r-x for group and other.
MODE_MASK: Final = 0o755

_CHUNK: Final = 1 << 20
_WS: Final = b" \t\r\n\v\f"


class ValueStream(Protocol):
    """What materialising needs of a stored value: a readable binary stream
    with its ``mime`` type and ``size``.  The store's ``ValueReader``
    (``LmdbStore.open(ref)``) is one; so is an ``io.BytesIO`` with the two
    attributes set."""

    mime: str
    size: int

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


OpenValue = Callable[[str, str], "ValueStream | None"]
"""``open_value(scope, key)``: the value's stream, or None when it is missing."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One entry of ``files:`` on an action or a function."""

    key: str
    scope: str = "instance"
    as_: str | None = None
    type: str = "plain"  # plain | base64 | tar | tar.gz
    mode: int | None = None  # ``permissions``, applied masked with MODE_MASK

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> FileSpec:
        """From a validated YAML entry (``as`` is a keyword in Python, hence ``as_``).
        Raises ValueError for ``permissions`` that are not octal digits."""
        perms = fields.get("permissions")
        return cls(
            key=str(fields["key"]),
            scope=fields.get("scope") or "instance",
            as_=fields.get("as") or None,
            type=fields.get("type") or "plain",
            mode=None if perms is None else int(str(perms), 8),
        )

    def describe(self) -> str:
        return f"files entry {self.key!r} (scope {self.scope}, type {self.type})"


class _B64Writer:
    """Streaming base64 decode into a file descriptor.

    Whitespace is ignored (Go's decoder, which Direktiv uses, skips newlines).
    A value that starts with ``"`` is a JSON string and is decoded whole; it
    is at most ``max_variable_bytes`` long.
    """

    def __init__(self, fd: int, what: str) -> None:
        self.fd = fd
        self.what = what
        self.carry = b""
        self.started = False
        self.json: list[bytes] | None = None

    def bad(self, why: str) -> WorkflowError:
        return WorkflowError("isolde.files.badBase64", f"{self.what}: the variable is not valid base64 ({why})")

    def decode(self, data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.bad(str(exc)) from None

    def feed(self, chunk: Any) -> None:
        data = bytes(chunk)
        if not self.started:
            head = data.lstrip(_WS)
            if not head:
                return
            self.started = True
            data = head
            if head[:1] == b'"':
                self.json = []
        if self.json is not None:
            self.json.append(data)
            return
        data = self.carry + data.translate(None, _WS)
        n = len(data) - len(data) % 4
        if n:
            write_all(self.fd, self.decode(data[:n]))
        self.carry = data[n:]

    def finish(self) -> None:
        if self.json is not None:
            try:
                text = json.loads(b"".join(self.json))
            except ValueError:
                raise self.bad("it starts with '\"' but is not a JSON string") from None
            if not isinstance(text, str):
                raise self.bad("it is JSON but not a string")
            try:
                raw = text.encode("ascii")
            except UnicodeEncodeError:
                raise self.bad("non-ASCII characters") from None
            write_all(self.fd, self.decode(raw.translate(None, _WS)))
        elif self.carry:
            write_all(self.fd, self.decode(self.carry))



class Materialiser:
    """Writes ``files:`` entries into one action folder (``path``, open as ``root_fd``)."""

    def __init__(self, path: str, root_fd: int, limits: ArchiveLimits) -> None:
        self.path = path
        self.root_fd = root_fd
        self.limits = limits

    def write(self, files: Sequence[FileSpec], open_value: OpenValue) -> None:
        """Materialise every entry, in order; the first problem raises WorkflowError."""
        for spec in files:
            kind = spec.type or "plain"
            if kind not in FILE_TYPES:
                raise WorkflowError(
                    "isolde.files.badType",
                    f"{spec.describe()}: unknown type {kind!r} (expected one of {', '.join(FILE_TYPES)})",
                )
            rel = self._target(spec)
            self._make_parents(rel, spec)
            dest = os.path.join(self.path, rel)
            source = open_value(spec.scope, spec.key)
            try:
                if kind in ("tar", "tar.gz"):
                    archive = source if source is not None else io.BytesIO(b"")  # missing: an empty directory
                    extract(archive, Path(dest), gzip=kind == "tar.gz", limits=self.limits, label=spec.describe())
                else:
                    self._write_file(spec, rel, dest, source, kind == "base64")
            finally:
                if source is not None:
                    source.close()

    def _target(self, spec: FileSpec) -> str:
        """The entry's path inside the folder, re-checked here even though
        validation checks ``as``: the folder must not trust its caller."""
        name = spec.as_ or spec.key
        field = "as" if spec.as_ else "key"
        try:
            rel = safe_relpath(name)
        except ValueError as exc:
            rel, why = "", str(exc)
        else:
            why = "names the folder itself"
        if not rel:
            raise WorkflowError(
                "isolde.files.unsafePath",
                f"{spec.describe()}: {field} {name!r} {why}; use a relative path inside the action folder",
            )
        return rel

    def _make_parents(self, rel: str, spec: FileSpec) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                st = os.stat(sub, dir_fd=self.root_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(sub, 0o755, dir_fd=self.root_fd)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise WorkflowError(
                    "isolde.files.conflict", f"{spec.describe()}: cannot write {rel!r}: {sub!r} is already a file"
                )

    def _write_file(self, spec: FileSpec, rel: str, dest: str, source: ValueStream | None, b64: bool) -> None:
        try:
            fd = os.open(dest, WRITE_FLAGS, 0o644)
        except IsADirectoryError:
            raise WorkflowError(
                "isolde.files.conflict", f"{spec.describe()}: cannot write {rel!r}: it is already a directory"
            ) from None
        except OSError as exc:
            raise WorkflowError("isolde.files.io", f"{spec.describe()}: cannot write {rel!r}: {exc.strerror}") from None
        try:
            dec = _B64Writer(fd, spec.describe()) if b64 else None
            while source is not None:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                if dec is None:
                    write_all(fd, chunk)
                else:
                    dec.feed(chunk)
            if dec is not None:
                dec.finish()
            if spec.mode is not None:
                os.fchmod(fd, spec.mode & MODE_MASK)
        except OSError as exc:
            raise WorkflowError("isolde.files.io", f"{spec.describe()}: cannot write {rel!r}: {exc.strerror}") from None
        finally:
            os.close(fd)
