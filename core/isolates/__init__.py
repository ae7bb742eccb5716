"""Isolates: Direktiv's call protocol, the runner base classes, isolate processes and the
per-engine hub of runners (SPEC §4.1, §4.2)."""

from __future__ import annotations

from .hub import Isolates
from .http import HttpIsolate, parse_url
from .process import IsolateProcess, free_port, stderr_line
from .protocol import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TIMEOUT,
    TIMEOUT_CODE,
    UNAVAILABLE_CODE,
    ActionRequest,
    ActionTimeout,
    ErrorReply,
    Response,
    decode_result,
    interpret,
    rfc3339,
)
from .runner import Runner, RunnerHost
from .settings import ActionSettings, config_seconds

__all__ = [
    "ActionRequest", "ActionSettings", "ActionTimeout", "DEFAULT_STARTUP_TIMEOUT", "ErrorReply", "DEFAULT_TIMEOUT", "HttpIsolate",
    "IsolateProcess", "Isolates", "Response", "Runner", "RunnerHost", "TIMEOUT_CODE", "UNAVAILABLE_CODE",
    "config_seconds", "decode_result", "free_port", "interpret", "parse_url", "rfc3339", "stderr_line",
]
