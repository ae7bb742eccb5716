"""isolde: Direktiv-style YAML workflows with persistent data, on one machine.

The API for programs that embed isolde is what this module exports; plugins use
``isolde.plugin``; everything else is internal.
"""

from __future__ import annotations

from .version import __version__

TYPE_CHECKING = False  # (not typing's: a short command never imports typing; docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

    from .config import Config, load_config
    from .engine import Engine
    from .errors import ConfigError, Diagnostic, InstanceFailure, IsoldeError, ValidationError, WorkflowError
    from .hookspecs import hookimpl
    from .instance import ErrorInfo, Result
    from .report import Report
    from .variable_access import Variables
    from .workflow import StateContext, StateSpec, StateType, Workflow

# The exports are imported on first use, so that a command that needs little (``isolde
# vars list``, ``isolde --help``) does not pay for the engine, jq, YAML and the plugins.
_HOME = {
    "Config": "config", "load_config": "config", "Engine": "engine", "Variables": "variable_access",
    "ConfigError": "errors", "Diagnostic": "errors", "InstanceFailure": "errors", "IsoldeError": "errors",
    "ValidationError": "errors", "WorkflowError": "errors", "hookimpl": "hookspecs", "ErrorInfo": "instance",
    "Result": "instance", "Report": "report", "StateContext": "workflow", "StateSpec": "workflow",
    "StateType": "workflow", "Workflow": "workflow",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'isolde' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Config",
    "ConfigError",
    "Diagnostic",
    "Engine",
    "ErrorInfo",
    "InstanceFailure",
    "IsoldeError",
    "Report",
    "Result",
    "StateContext",
    "StateSpec",
    "StateType",
    "ValidationError",
    "Variables",
    "Workflow",
    "WorkflowError",
    "__version__",
    "hookimpl",
    "load_config",
]
