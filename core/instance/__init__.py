"""Running instances: the loop, the context states see, the services they use."""

from __future__ import annotations

from .context import InstanceContext
from .loop import CANCEL_CODE, Recorder, StepHook, run_instance
from .result import ErrorInfo, Result
from .services import Lazy, Limits, LogSink, Services
from .subflows import INVOKE, Subflows, manual_start_refused, resolve_subflow
from .transform import apply_transform

__all__ = [
    "CANCEL_CODE", "INVOKE", "ErrorInfo", "Recorder", "InstanceContext", "Lazy", "Limits", "LogSink", "Result", "Services", "StepHook", "Subflows",
    "apply_transform", "manual_start_refused", "resolve_subflow", "run_instance",
]
