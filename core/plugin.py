"""The public plugin API: everything a plugin may use, in one module (STYLE.md practice 10).

Built-in plugins (``isolde.plugins.*``) import only this module, exactly as a
third-party package does; if a plugin needs something of the core, it is added here,
for every plugin.  What each name is for:

* writing a state type: :class:`StateType`, :class:`StateSpec`, :class:`StateContext`
  (what ``run`` gets), :class:`Report` (what ``check`` gets), :class:`Workflow`,
  :func:`hookimpl`;
* calling functions from a state: :func:`compile_action` (in ``check``) and
  ``ctx.call_function`` / ``ctx.start_function`` / ``ctx.run_branches`` with
  :class:`ActionSpec`, :class:`Branch`, :class:`Outcome`;
* variable locks for a store shared by hosts (``isolde_locks``): :class:`VariableLocks` and the
  error codes :data:`TIMEOUT_CODE`, :data:`DEADLOCK_CODE`; :class:`LockTable`, the built-in
  in-process half (queues, hand-over, deadlock detection) over a :class:`CrossProcess` part
  the plugin supplies; a store that keeps versioned tables
  (``isolde_schema_admin``): :class:`SchemaAdmin`, :class:`SchemaStatus`;
* errors: :class:`WorkflowError` (catchable, with a code), :class:`InstanceFailure`
  (uncatchable), :class:`ConfigError`, :class:`ValidationError`, :class:`IsoldeError`;
* values: :class:`Expr` and its kinds, :func:`truthy`, :func:`to_text`, :func:`encode` /
  :func:`decode` (variables as a setter / getter sees them), :func:`parse_json`,
  :func:`check_key`, :func:`parse_duration`; for store backends :func:`check_ref`,
  :func:`scope_owner` and :func:`check_name` (the address rules every store applies);
* events: :class:`EventFilter`, :class:`Received`, :class:`EventError`, :class:`Cancelled`;
* isolate runners: :class:`Runner`, :class:`RunnerHost`, :class:`HttpIsolate`,
  :class:`IsolateProcess`, :class:`ActionRequest`, :class:`Response`,
  :class:`ActionTimeout`;
* services a backend plugin provides (``isolde_store``): :class:`VariableStore` and the
  value types :class:`Ref`, :class:`Put`, :class:`Variable`, :class:`ValueReader`,
  :class:`StoreError`; for a store shared by processes, :func:`registration` (this
  process, as an instance owner), :func:`machine` and :func:`is_orphan` (did that owner die here?);
* services that make several daemons one (``isolde_daemon_services``): :class:`DaemonServices`,
  with :class:`InstanceRecords`, :class:`CronScheduler` (:class:`CronThread` is the in-process
  one a backend may drive), :class:`Gatherings` (``eventsAnd`` groups shared by the workers), :func:`normalize_event` (what ``EventBus.publish`` checks);
* where instance history is kept (``isolde_instance_history``): :class:`InstanceHistory`, and
  :class:`StoreHistory`, the built-in one in the store, which a backend may extend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actions.compile import compile_action
    from .actions.spec import ActionSpec, Branch, FileItem, Outcome
    from .config import Config
    from .daemon.backend import DaemonServices
    from .daemon.records import InstanceRecords
    from .daemon.triggers import CronScheduler, CronThread, Gatherings
    from .durations import parse_duration
    from .errors import ConfigError, InstanceFailure, IsoldeError, ValidationError, WorkflowError
    from .events import Cancelled, EventBus, EventError, EventFilter, Received
    from .events import normalize as normalize_event
    from .expr import Expr, Interpolation, Literal, Query, to_text, truthy
    from .history import InstanceHistory, StoreHistory
    from .hookspecs import hookimpl
    from .isolates import (
        UNAVAILABLE_CODE,
        ActionRequest,
        ActionTimeout,
        ErrorReply,
        HttpIsolate,
        IsolateProcess,
        Response,
        Runner,
        RunnerHost,
        parse_url,
        stderr_line,
    )
    from .report import Report
    from .locks import DEADLOCK_CODE, TIMEOUT_CODE, CrossProcess, LockTable, VariableLocks
    from .migrations import SchemaAdmin, SchemaStatus
    from .liveness import is_orphan, machine, registration
    from .store import (
        InvalidKey,
        Put,
        Ref,
        StoreError,
        ValueReader,
        Variable,
        VariableStore,
        check_key,
        check_name,
        check_ref,
        scope_owner,
    )
    from .variables import JSON, OCTETS, TEXT, decode, encode, parse_json, resolve_key
    from .workflow import StateContext, StateSpec, StateType, Workflow

# Each name is imported from its module on first use: a plugin that needs a few names
# (most built-in ones) does not pay for the daemon, the isolates or the locks at start.
_HOME: dict[str, tuple[str, str]] = {
    "ActionRequest": ("isolates", "ActionRequest"),
    "ActionSpec": ("actions.spec", "ActionSpec"),
    "ActionTimeout": ("isolates", "ActionTimeout"),
    "Branch": ("actions.spec", "Branch"),
    "Cancelled": ("events", "Cancelled"),
    "Config": ("config", "Config"),
    "ConfigError": ("errors", "ConfigError"),
    "CronScheduler": ("daemon.triggers", "CronScheduler"),
    "CronThread": ("daemon.triggers", "CronThread"),
    "CrossProcess": ("locks", "CrossProcess"),
    "DEADLOCK_CODE": ("locks", "DEADLOCK_CODE"),
    "DaemonServices": ("daemon.backend", "DaemonServices"),
    "ErrorReply": ("isolates", "ErrorReply"),
    "EventBus": ("events", "EventBus"),
    "EventError": ("events", "EventError"),
    "EventFilter": ("events", "EventFilter"),
    "Expr": ("expr", "Expr"),
    "FileItem": ("actions.spec", "FileItem"),
    "Gatherings": ("daemon.triggers", "Gatherings"),
    "HttpIsolate": ("isolates", "HttpIsolate"),
    "InstanceFailure": ("errors", "InstanceFailure"),
    "InstanceHistory": ("history", "InstanceHistory"),
    "InstanceRecords": ("daemon.records", "InstanceRecords"),
    "Interpolation": ("expr", "Interpolation"),
    "InvalidKey": ("store", "InvalidKey"),
    "IsolateProcess": ("isolates", "IsolateProcess"),
    "IsoldeError": ("errors", "IsoldeError"),
    "JSON": ("variables", "JSON"),
    "Literal": ("expr", "Literal"),
    "LockTable": ("locks", "LockTable"),
    "OCTETS": ("variables", "OCTETS"),
    "Outcome": ("actions.spec", "Outcome"),
    "Put": ("store", "Put"),
    "Query": ("expr", "Query"),
    "Received": ("events", "Received"),
    "Ref": ("store", "Ref"),
    "Report": ("report", "Report"),
    "Response": ("isolates", "Response"),
    "Runner": ("isolates", "Runner"),
    "RunnerHost": ("isolates", "RunnerHost"),
    "SchemaAdmin": ("migrations", "SchemaAdmin"),
    "SchemaStatus": ("migrations", "SchemaStatus"),
    "StateContext": ("workflow", "StateContext"),
    "StateSpec": ("workflow", "StateSpec"),
    "StateType": ("workflow", "StateType"),
    "StoreError": ("store", "StoreError"),
    "StoreHistory": ("history", "StoreHistory"),
    "TEXT": ("variables", "TEXT"),
    "TIMEOUT_CODE": ("locks", "TIMEOUT_CODE"),
    "UNAVAILABLE_CODE": ("isolates", "UNAVAILABLE_CODE"),
    "ValidationError": ("errors", "ValidationError"),
    "ValueReader": ("store", "ValueReader"),
    "Variable": ("store", "Variable"),
    "VariableLocks": ("locks", "VariableLocks"),
    "VariableStore": ("store", "VariableStore"),
    "Workflow": ("workflow", "Workflow"),
    "WorkflowError": ("errors", "WorkflowError"),
    "check_key": ("store", "check_key"),
    "check_name": ("store", "check_name"),
    "check_ref": ("store", "check_ref"),
    "compile_action": ("actions.compile", "compile_action"),
    "decode": ("variables", "decode"),
    "encode": ("variables", "encode"),
    "hookimpl": ("hookspecs", "hookimpl"),
    "is_orphan": ("liveness", "is_orphan"),
    "machine": ("liveness", "machine"),
    "normalize_event": ("events", "normalize"),
    "parse_duration": ("durations", "parse_duration"),
    "parse_json": ("variables", "parse_json"),
    "parse_url": ("isolates", "parse_url"),
    "registration": ("liveness", "registration"),
    "resolve_key": ("variables", "resolve_key"),
    "scope_owner": ("store", "scope_owner"),
    "stderr_line": ("isolates", "stderr_line"),
    "to_text": ("expr", "to_text"),
    "truthy": ("expr", "truthy"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'isolde.plugin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home[0]}", __name__.rpartition(".")[0]), home[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "DEADLOCK_CODE", "SchemaAdmin", "SchemaStatus", "TIMEOUT_CODE", "VariableLocks",
    "ActionRequest", "ActionSpec", "ActionTimeout", "Branch", "Cancelled", "Config", "ConfigError", "CronScheduler", "CrossProcess", "CronThread", "DaemonServices", "ErrorReply", "EventBus", "EventError",
    "EventFilter", "Expr", "FileItem", "Gatherings", "HttpIsolate", "InstanceFailure", "Interpolation", "InvalidKey", "IsolateProcess",
    "InstanceHistory", "InstanceRecords", "IsoldeError", "JSON", "Literal", "LockTable", "OCTETS", "Outcome", "Put", "Query", "Received", "Ref", "Report", "Response",
    "Runner", "RunnerHost", "StateContext", "StateSpec", "StateType", "StoreError", "StoreHistory", "TEXT", "UNAVAILABLE_CODE",
    "ValidationError", "ValueReader", "Variable", "VariableStore", "Workflow", "WorkflowError", "check_key", "check_name", "check_ref", "compile_action",
    "decode", "encode", "hookimpl", "is_orphan", "machine", "normalize_event", "parse_duration", "parse_json", "parse_url", "registration", "resolve_key", "scope_owner", "stderr_line", "to_text", "truthy",
]
