"""Instance history: the record and state-by-state timeline of every instance, kept in
the variable store under a retention, and cancelling instances (docs/operating.md)."""

from __future__ import annotations

from .codec import CANCEL_CODE, ENDED, RECORD_OWNER, assemble, capped_input, decode_record, encode_record, summary
from .protocol import InstanceHistory
from .recorder import Recorder
from .service import HistoryService, NotFound
from .settings import HistorySettings
from .store import StoreHistory

__all__ = [
    "CANCEL_CODE", "ENDED", "RECORD_OWNER", "HistoryService", "HistorySettings", "InstanceHistory", "NotFound",
    "Recorder", "StoreHistory", "assemble", "capped_input", "decode_record", "encode_record", "summary",
]
