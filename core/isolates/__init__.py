"""Isolates: Direktiv's call protocol, the runner base classes, isolate processes and the
per-engine hub of runners (SPEC §4.1, §4.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name is imported from its module on first use: registering the runners needs the
# base classes, not the process machinery (subprocess) or the hub.
_HOME = {
    "Isolates": "hub", "HttpIsolate": "http", "parse_url": "http", "IsolateProcess": "process",
    "free_port": "process", "stderr_line": "process", "DEFAULT_STARTUP_TIMEOUT": "protocol",
    "DEFAULT_TIMEOUT": "protocol", "TIMEOUT_CODE": "protocol", "UNAVAILABLE_CODE": "protocol",
    "ActionRequest": "protocol", "ActionTimeout": "protocol", "ErrorReply": "protocol", "Response": "protocol",
    "decode_result": "protocol", "interpret": "protocol", "rfc3339": "protocol", "Runner": "runner",
    "RunnerHost": "runner", "ActionSettings": "settings", "config_seconds": "settings",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'isolde.isolates' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ActionRequest", "ActionSettings", "ActionTimeout", "DEFAULT_STARTUP_TIMEOUT", "ErrorReply", "DEFAULT_TIMEOUT", "HttpIsolate",
    "IsolateProcess", "Isolates", "Response", "Runner", "RunnerHost", "TIMEOUT_CODE", "UNAVAILABLE_CODE",
    "config_seconds", "decode_result", "free_port", "interpret", "parse_url", "rfc3339", "stderr_line",
]
