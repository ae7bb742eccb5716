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
  one a backend may drive), :class:`Gatherings` (``eventsAnd`` groups shared by the workers), :func:`normalize_event` (what ``EventBus.publish`` checks).
"""

from __future__ import annotations

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

__all__ = [
    "DEADLOCK_CODE", "SchemaAdmin", "SchemaStatus", "TIMEOUT_CODE", "VariableLocks",
    "ActionRequest", "ActionSpec", "ActionTimeout", "Branch", "Cancelled", "Config", "ConfigError", "CronScheduler", "CrossProcess", "CronThread", "DaemonServices", "ErrorReply", "EventBus", "EventError",
    "EventFilter", "Expr", "FileItem", "Gatherings", "HttpIsolate", "InstanceFailure", "Interpolation", "InvalidKey", "IsolateProcess",
    "InstanceRecords", "IsoldeError", "JSON", "Literal", "LockTable", "OCTETS", "Outcome", "Put", "Query", "Received", "Ref", "Report", "Response",
    "Runner", "RunnerHost", "StateContext", "StateSpec", "StateType", "StoreError", "TEXT", "UNAVAILABLE_CODE",
    "ValidationError", "ValueReader", "Variable", "VariableStore", "Workflow", "WorkflowError", "check_key", "check_name", "check_ref", "compile_action",
    "decode", "encode", "hookimpl", "is_orphan", "machine", "normalize_event", "parse_duration", "parse_json", "parse_url", "registration", "resolve_key", "scope_owner", "stderr_line", "to_text", "truthy",
]
