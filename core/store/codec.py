"""The record format of the ``vars`` database: header, mime, then the data or a
blob reference.

value ``<QddH`` header -- version, created and updated (Unix seconds, float),
mime length -- then the mime bytes, then the data bytes.  When the top bit
(0x8000) of the mime length is set, the data lies in a blob file and the record
ends with a reference instead: ``<Q`` size, then the file's 32-character name.
"""

from __future__ import annotations

import struct

from .types import Variable, make_var

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "HDR_SIZE", "BLOB_FLAG", "MAX_MIME", "BLOB_NAME_LEN", "Stub", "hdr_pack", "hdr_unpack",
    "decode", "stub", "blob_name", "is_blob", "blob_ref", "record",
]

# version, created, updated, mime length
_HDR: Final[struct.Struct] = struct.Struct("<QddH")
HDR_SIZE: Final[int] = _HDR.size
hdr_pack = _HDR.pack
hdr_unpack = _HDR.unpack_from
# The top bit of the mime length marks a blob reference (``get`` tests the
# literal 0x8000 on its hot path), so a mime type may have 32767 bytes.
BLOB_FLAG: Final[int] = 0x8000
MAX_MIME: Final[int] = 0x7FFF

# A blob reference, after header and mime: size, then the file name.
_BLOB_SIZE: Final[struct.Struct] = struct.Struct("<Q")
BLOB_NAME_LEN: Final[int] = 32


class Stub:
    """A blob record seen inside a transaction: everything but the data, which
    is read from the file after the transaction."""

    __slots__ = ("name", "mime", "size", "created", "updated", "version")

    def __init__(self, name: str, mime: str, size: int, created: float, updated: float, version: int) -> None:
        self.name = name
        self.mime = mime
        self.size = size
        self.created = created
        self.updated = updated
        self.version = version

    def variable(self, data: bytes) -> Variable:
        return make_var(data, self.mime, self.size, self.created, self.updated, self.version)


def stub(raw: bytes | memoryview, ml: int, version: int, created: float, updated: float) -> Stub:
    """Parse the reference of a blob record (``ml`` still carries the flag)."""
    end = HDR_SIZE + (ml & MAX_MIME)
    (size,) = _BLOB_SIZE.unpack_from(raw, end)
    name = str(raw[end + _BLOB_SIZE.size :], "ascii")
    return Stub(name, str(raw[HDR_SIZE:end], "utf-8"), size, created, updated, version)


def blob_name(raw: bytes | memoryview) -> bytes:
    """The file name of a blob record, as the ``blobs`` index keys it."""
    return bytes(raw[-BLOB_NAME_LEN:])


def is_blob(raw: bytes | memoryview) -> bool:
    return bool(hdr_unpack(raw)[3] & BLOB_FLAG)


def blob_ref(size: int, name: str) -> bytes:
    """The tail of a blob record: the size and the file name."""
    return _BLOB_SIZE.pack(size) + name.encode()


def record(version: int, created: float, updated: float, mb: bytes, data: bytes | bytearray | memoryview, blob: bool = False) -> bytes:
    """A whole record; ``data`` is the value, or the blob reference if ``blob``."""
    return hdr_pack(version, created, updated, len(mb) | BLOB_FLAG if blob else len(mb)) + mb + data


def decode(raw: bytes | memoryview) -> Variable | Stub:
    """Turn a stored value (bytes or a memoryview into the map) into a Variable
    whose data is an independent ``bytes``, or a Stub for a blob record."""
    version, created, updated, ml = hdr_unpack(raw)
    if ml & BLOB_FLAG:
        return stub(raw, ml, version, created, updated)
    end = HDR_SIZE + ml
    data = bytes(raw[end:])
    return make_var(data, str(raw[HDR_SIZE:end], "utf-8"), len(data), created, updated, version)
