"""isolde: Direktiv-style YAML workflows with persistent data, on one machine.

The public API is what this module exports; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, load_config
from .engine import Engine, Variables
from .errors import ConfigError, Diagnostic, InstanceFailure, IsoldeError, ValidationError, WorkflowError
from .instance import ErrorInfo, Result, StateContext
from .registry import hookimpl
from .states import StateSpec, StateType
from .workflow import Workflow

__all__ = [
    "Config",
    "ConfigError",
    "Diagnostic",
    "Engine",
    "ErrorInfo",
    "InstanceFailure",
    "IsoldeError",
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
