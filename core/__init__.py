"""isolde: Direktiv-style YAML workflows with persistent data, on one machine.

The API for programs that embed isolde is what this module exports; plugins use
``isolde.plugin``; everything else is internal.
"""

from __future__ import annotations

from .config import Config, load_config
from .engine import Engine
from .variable_access import Variables
from .errors import ConfigError, Diagnostic, InstanceFailure, IsoldeError, ValidationError, WorkflowError
from .hookspecs import hookimpl
from .instance import ErrorInfo, Result
from .report import Report
from .version import __version__
from .workflow import StateContext, StateSpec, StateType, Workflow

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
