"""Direktiv's isolate protocol (SPEC §4.2): the request isolde sends and how a reply reads.

An *isolate* is a program that serves Direktiv's action protocol: isolde sends
``POST /`` with the action input as JSON and a handful of ``Direktiv-*``
headers, and reads the reply::

    Direktiv-ErrorCode set      -> catchable error (code, Direktiv-ErrorMessage)
    only Direktiv-ErrorMessage  -> uncatchable failure
    non-2xx, no error headers   -> uncatchable failure naming the status
    otherwise                   -> the body is the result (.return): JSON, or
                                   a base64 string when it is not JSON
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Mapping

from ..errors import InstanceFailure, WorkflowError
from ..records import NEW, Record, typed_as_dataclass

if TYPE_CHECKING:
    from ..workflow import StateContext

DEFAULT_TIMEOUT: Final[float] = 15 * 60.0
"""Seconds an action may take when neither the state nor ``[actions] timeout`` says (Direktiv's default)."""
DEFAULT_STARTUP_TIMEOUT: Final[float] = 10.0
"""Seconds a ``process`` isolate may take to accept connections (``[actions] startup_timeout``)."""
CANCEL_TIMEOUT: Final[float] = 2.0
"""Seconds the ``DELETE /`` that cancels a timed-out action may take."""
STOP_GRACE: Final[float] = 3.0
"""Seconds an isolate process gets to exit after SIGTERM before it is killed."""
POOL_SIZE: Final[int] = 8
"""Idle keep-alive connections kept per runner."""
TIMEOUT_CODE: Final[str] = "direktiv.cancels.timeout.soft"
UNAVAILABLE_CODE: Final[str] = "isolde.isolate.unavailable"
OUTPUT_TAIL: Final[int] = 20
"""Lines of an isolate's output quoted when it fails to start."""

_NO_VALUE: Any = object()

# --------------------------------------------------------------------------- requests and replies


def rfc3339(epoch: float) -> str:
    """``2024-05-01T12:00:00Z``: the form Direktiv's isolates parse (Go's time.RFC3339)."""
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@typed_as_dataclass(eq=False)
class ActionRequest(Record):
    """One call of an isolate: the input and everything the ``Direktiv-*`` headers carry.

    ``deadline`` is wall-clock (``time.time()``) for the header; runners use
    :meth:`remaining`, computed from a monotonic clock, to bound their waits.
    """

    __slots__ = ("body", "input", "action_id", "namespace", "workflow", "instance_id", "step", "timeout", "function",
                 "temp_dir", "sidecar", "iterator", "ctx", "background", "deadline", "_expires", "cancelled", "stop")
    __match_args__ = ("body", "input", "action_id", "namespace", "workflow", "instance_id", "step", "timeout",
                      "function", "temp_dir", "sidecar", "iterator", "ctx", "background", "cancelled", "stop")
    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]
    _no_repr = ("cancelled", "stop")
    _fresh = {"cancelled": threading.Event}
    body: bytes
    input: Any
    action_id: str
    namespace: str
    workflow: str
    instance_id: str
    step: int
    timeout: float
    function: Mapping[str, Any]
    temp_dir: str
    sidecar: str
    iterator: int | None
    ctx: StateContext | None
    """The calling state's context, for runners that act inside the engine (subflow)."""
    background: bool
    """True for an ``async`` action: nothing waits for the result."""
    deadline: float
    _expires: float
    cancelled: threading.Event
    """Set when the action timed out: in-process runners may poll it and stop early."""
    stop: threading.Event | None
    """Set when the state that made the call no longer needs it (a ``foreach`` or
    ``parallel`` state was decided by another branch).  A runner checks :meth:`stopped`
    where it registers the call for cancelling, under the same lock: a call that missed
    the state's cancelling is then never sent."""

    def __init__(self, body: bytes, input: Any, action_id: str, namespace: str, workflow: str, instance_id: str,
                 step: int, timeout: float, function: Mapping[str, Any], temp_dir: str = "", sidecar: str = "",
                 iterator: int | None = None, ctx: StateContext | None = None, background: bool = False,
                 cancelled: threading.Event = NEW, stop: threading.Event | None = None) -> None:
        self.body = body
        self.input = input
        self.action_id = action_id
        self.namespace = namespace
        self.workflow = workflow
        self.instance_id = instance_id
        self.step = step
        self.timeout = timeout
        self.function = function
        self.temp_dir = temp_dir
        self.sidecar = sidecar
        self.iterator = iterator
        self.ctx = ctx
        self.background = background
        self.cancelled = threading.Event() if cancelled is NEW else cancelled
        self.stop = stop
        self.__post_init__()

    def __post_init__(self) -> None:
        """The deadline, from ``timeout`` (a ``@dataclass`` subclass's ``__init__`` calls this too)."""
        self.deadline = time.time() + self.timeout
        self._expires = time.monotonic() + self.timeout

    def stopped(self) -> bool:
        """Whether the calling state no longer needs this call (see ``stop``)."""
        return self.stop is not None and self.stop.is_set()

    def remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self._expires - time.monotonic())

    def headers(self) -> dict[str, str]:
        """The request headers of Direktiv's protocol (plus isolde's ``Direktiv-Sidecar``)."""
        h = {
            "Content-Type": "application/json",
            "Direktiv-ActionID": self.action_id,
            "Direktiv-InstanceID": self.instance_id,
            "Direktiv-Namespace": self.namespace,
            "Direktiv-Workflow": self.workflow,
            "Direktiv-Step": str(self.step),
            "Direktiv-Iterator": str(self.iterator or 0),
            "Direktiv-Deadline": rfc3339(self.deadline),
        }
        if self.temp_dir:
            h["Direktiv-TempDir"] = self.temp_dir
        if self.sidecar:
            h["Direktiv-Sidecar"] = self.sidecar
        return h


@typed_as_dataclass()
class Response(Record):
    """An isolate's reply.  ``headers`` keys are lower-case.

    In-process runners may set ``value`` to hand over a result without
    encoding it to bytes and back.
    """

    __slots__ = ("status", "headers", "body", "reason", "value")
    __match_args__ = ("status", "headers", "body", "reason", "value")
    _fresh = {"headers": dict}
    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str
    value: Any

    def __init__(self, status: int, headers: Mapping[str, str] = NEW, body: bytes = b"", reason: str = "",
                 value: Any = _NO_VALUE) -> None:
        self.status = status
        self.headers = {} if headers is NEW else headers
        self.body = body
        self.reason = reason
        self.value = value

    @classmethod
    def of(cls, value: Any) -> Response:
        """A successful reply carrying ``value`` as the result."""
        return cls(200, {}, b"", "OK", value)


class ActionTimeout(WorkflowError):
    """The action ran past its deadline (``direktiv.cancels.timeout.soft``, catchable as in Direktiv)."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(
            TIMEOUT_CODE,
            f"{what} did not answer within {seconds_text(timeout)} (the state's timeout, else [actions] timeout in isolde.toml)",
        )


class ErrorReply(WorkflowError):
    """A catchable error the isolate *answered* with (``Direktiv-ErrorCode``): unlike a
    call that broke off, the isolate finished, so what it left in ``out/`` is kept."""


def seconds_text(value: float) -> str:
    return f"{value:g}s"


def decode_result(body: bytes) -> Any:
    """The body as ``.return``: its JSON value, else a base64 string of the bytes (Direktiv's rule;
    an empty body is not JSON, so it gives ``""``)."""
    if body:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            pass
    return base64.b64encode(body).decode("ascii")


def interpret(response: Response, what: str) -> Any:
    """Apply the reply rules of SPEC §4.2 and return the result (raise for the error cases)."""
    headers = response.headers
    code = headers.get("direktiv-errorcode", "").strip()
    message = headers.get("direktiv-errormessage", "")
    if code:
        raise ErrorReply(code, message or f"{what} reported error {code} without a message")
    if message:
        raise InstanceFailure(f"{what} failed: {message}", code="isolde.isolate.failed")
    if not 200 <= response.status < 300:
        snippet = response.body[:200].decode("utf-8", "replace").strip()
        detail = f": {snippet}" if snippet else ""
        raise InstanceFailure(
            f"{what} answered HTTP {response.status} {response.reason}".rstrip()
            + f" without Direktiv-ErrorCode / Direktiv-ErrorMessage headers{detail}",
            code="isolde.isolate.status",
        )
    if response.value is not _NO_VALUE:
        return response.value
    return decode_result(response.body)



__all__ = [
    "ActionRequest", "ActionTimeout", "CANCEL_TIMEOUT", "ErrorReply", "DEFAULT_STARTUP_TIMEOUT", "DEFAULT_TIMEOUT", "OUTPUT_TAIL",
    "POOL_SIZE", "Response", "STOP_GRACE", "TIMEOUT_CODE", "UNAVAILABLE_CODE", "decode_result", "interpret", "rfc3339",
]
