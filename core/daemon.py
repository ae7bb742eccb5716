"""Daemon mode: ``isolde serve DIR`` turns a folder into a running workflow server (SPEC §6).

What it does, and the decisions behind it (docs/daemon.md has the user's view):

Folder layout
    ``DIR/<namespace>/**/*.yaml`` (and ``.yml``) are workflows.  A workflow's id
    is its path inside the namespace folder without the extension, with ``/``
    between folders: ``DIR/ns1/sub/wf.yaml`` is workflow ``sub/wf`` of namespace
    ``ns1``, and that id is the owner of its workflow variables in the store
    (``isolde vars list -n ns1 -w sub/wf``).  An ``id:`` inside the document is
    ignored: the file is the name, as in Direktiv's git sync.  References in
    Direktiv's form (``/sub/wf.yaml``, ``sub/wf``) resolve to the same id
    (:func:`workflow_id`).  Hidden files and folders, editors' temporary files
    (``*~``, ``*.swp``, ``.#*``, ``#*#``, vim's ``4913``) and files directly in
    ``DIR`` are ignored.

Drop folders
    ``NAME.yaml.KEY`` beside ``NAME.yaml`` is workflow variable ``KEY`` of
    workflow ``NAME``; ``DIR/<ns>/.vars/KEY`` is namespace variable ``KEY``.  A
    directory in either place is stored as a deterministic tar.gz
    (:func:`isolde.archive.pack_dir`, mime ``application/gzip``, as ``out/``
    directories).  Deleting the file leaves the variable unless ``[daemon]
    delete_vars_with_files = true``.

When a file counts
    Every watchdog event only marks a path dirty; a single sync thread looks at
    what is on disk once the path is due, so the order and number of events do
    not matter (debouncing).  On Linux (inotify) a file is due when it is
    *closed after writing* or moved into place: a file still open for writing
    is never read, however long the writer pauses.  Without close events
    (other platforms, the polling observer) a file is due once its size and
    mtime have not changed for ``settle`` seconds.  A file is read, then
    ``stat`` again: if it changed meanwhile it is tried again later.  A
    half-written workflow that does not validate never replaces the version
    that serves; a variable directory is packed once no event touched it for
    ``settle`` seconds.  A path that disappears is acted on only after
    ``delete_grace`` seconds, so an editor that saves by renaming the old file
    away and writing a new one never deletes anything.

Instances and records
    An instance runs in its own thread (at most ``max_running`` at once, the
    rest wait in a FIFO queue of at most ``max_queue``).  Where each running
    instance stands is kept in the variable store as a small JSON record (id,
    workflow, next state, state data, log) -- an instance-scope variable
    ``i-<id>`` of the reserved owner ``~isolde-daemon`` in the instance's
    namespace.  It is written through ``run_instance``'s ``on_step`` hook in the
    same LMDB transaction as a state's own variable writes, and before and
    after every state whose type is not ``resumable`` (an action), so the
    record never claims less progress than what was committed.  A finished
    instance's record keeps its outcome (the last ``keep_instances`` are kept).

Restarts
    On start, records of instances that were running are looked at before the
    store sweeps orphans: the daemon takes over their instance-variable
    registration, then resumes each one at its recorded state when that
    state's type is ``resumable`` (getter, setter, noop, switch, ...) and its
    instance variables are intact, or marks it failed with code
    ``interrupted``; either way its instance variables are removed when it
    ends.  A SIGTERM stops the watcher, the scheduler and the API, lets
    running instances finish for ``stop_grace`` seconds, stops the rest at
    their next state (their records stay for the next start), and closes the
    engine (in-flight actions get their ``DELETE``, action folders go).

Starts
    ``start: {type: scheduled, cron}`` fires by croniter in UTC; a sixth field
    is seconds (croniter's convention, an isolde extension).  ``event``,
    ``eventsXor`` and ``eventsAnd`` starts fire from CloudEvents posted to the
    API (through the engine's event bus, so waiting instances get them too).  ``singular: true`` refuses a second start while one instance runs:
    the API answers 409 with code ``direktiv.mutex``; a cron or event start is
    skipped and logged.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import mimetypes
import os
import re
import signal
import stat as _stat
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

from .errors import ConfigError, InstanceFailure, IsoldeError, ValidationError
from .instance import ErrorInfo, InstanceContext, Result, manual_start_refused
from .store import LmdbStore, Put, Ref, StoreError, check_key
from .variables import sniff_mime

if TYPE_CHECKING:
    from watchdog.events import FileSystemEvent
    from watchdog.observers.api import BaseObserver

    from .engine import Engine
    from .workflow import StateSpec, Workflow

__all__ = [
    "DEFAULT_API",
    "Daemon",
    "DaemonError",
    "DaemonSettings",
    "LogfmtFormatter",
    "RECORD_OWNER",
    "serve",
    "workflow_id",
]

DEFAULT_API: Final = "127.0.0.1:8890"
"""The API's default address: loopback, next to the sidecar's 8889 (Direktiv's), not on it."""

RECORD_OWNER: Final = "~isolde-daemon"
"""Instance-scope owner of the daemon's records.  An instance id never starts with ``~``
(ids are UUIDs), so the records can't collide with an instance's variables, and because
no instance ``~isolde-daemon`` is ever registered, the orphan sweep never removes them."""

MANIFEST_KEY: Final = "workflows"
"""The per-namespace record listing the workflow files the daemon manages (id -> digest)."""

VARS_DIR: Final = ".vars"
DIR_MIME: Final = "application/gzip"  # the same type as directories collected from out/
WORKFLOW_SUFFIXES: Final = (".yaml", ".yml")
LOG_LINE_MAX: Final = 4096
"""Characters of one instance log line kept in a record."""

_VAR_FILE = re.compile(r"(.+)\.(yaml|yml)\.(.+)")
_TEMP_SUFFIXES: Final = ("~", ".swp", ".swo", ".swx", ".swpx", ".tmp", ".part", ".crdownload", ".kate-swp")
_RECORD_KEY = "i-"
WORKER_IDLE: Final = 30.0
"""Seconds an idle instance-runner thread waits for work before it ends."""
STOP_DRAIN: Final = 1.0
"""Seconds the instances stopped at shutdown get to unwind before the engine closes."""
WRITER_RECHECK: Final = 0.5
"""Seconds until a file found still open for writing is looked at again."""
MOVE_HINT_TTL: Final = 10.0
"""Seconds a rename event is remembered to pair a vanished path with its new name."""

_SETTINGS: Final[dict[str, type | tuple[type, ...]]] = {
    "api": str,
    "token": str,
    "delete_vars_with_files": bool,
    "settle": (int, float),
    "delete_grace": (int, float),
    "max_running": int,
    "max_queue": int,
    "keep_instances": int,
    "keep_log_lines": int,
    "stop_grace": (int, float),
    "status_interval": (int, float),
    "max_wait": (int, float),
}


class DaemonError(IsoldeError):
    """A request the daemon refuses; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """The ``[daemon]`` table, checked (unknown keys and wrong types are refused)."""

    api: str = DEFAULT_API
    token: str | None = None
    delete_vars_with_files: bool = False
    settle: float = 0.05
    """Seconds a file must stay unchanged when the platform gives no close-after-write event;
    also how long a variable directory must be quiet before it is packed."""
    delete_grace: float = 0.25
    """Seconds a path must stay gone before its workflow or variable is deleted."""
    max_running: int = 256
    max_queue: int = 10_000
    keep_instances: int = 1000
    keep_log_lines: int = 1000
    stop_grace: float = 10.0
    status_interval: float = 60.0
    max_wait: float = 3600.0
    """Longest ``?wait=true`` holds a request (seconds); then the answer is the status so far."""

    @classmethod
    def from_config(cls, config: Any, *, api: str | None = None, token: str | None = None) -> DaemonSettings:
        table = config.data.get("daemon", {})
        where = f"{config.path}: [daemon]" if getattr(config, "path", None) else "[daemon]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            want = _SETTINGS.get(key)
            if want is None:
                raise ConfigError(f"{where}: unknown setting '{key}' (known: {', '.join(sorted(_SETTINGS))})")
            if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
                raise ConfigError(f"{where}: {key} has the wrong type ({type(value).__name__})")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{where}: {key} must not be negative")
            values[key] = value
        if api is not None:
            values["api"] = api
        if token is not None:
            values["token"] = token
        if not values.get("token"):
            values["token"] = None
        for key in ("max_running", "max_queue", "keep_instances"):
            if key in values and values[key] < 1:
                raise ConfigError(f"{where}: {key} must be at least 1")
        return cls(**values)


# --------------------------------------------------------------------------- logging


class LogfmtFormatter(logging.Formatter):
    """One line per record, ``key=value`` pairs (logfmt), so logs are greppable and parseable.

    Fields come from ``extra={"fields": {...}}``; values with spaces or quotes are quoted.
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"msg={_quote(record.getMessage())}"]
        for key, value in (getattr(record, "fields", None) or {}).items():
            if value is not None:
                parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if text and not any(c in text for c in ' "=\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def configure_logging(verbose: bool) -> logging.Logger:
    """The daemon's logger, writing logfmt lines to stderr (debug level with ``--verbose``)."""
    logger = logging.getLogger("isolde")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(LogfmtFormatter())
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logging.getLogger("isolde.daemon")


# --------------------------------------------------------------------------- names and paths


def workflow_id(reference: str) -> str:
    """A workflow id from any of the forms Direktiv used: ``/sub/wf.yaml``, ``sub/wf.yml``, ``sub/wf``."""
    ref = reference.strip().lstrip("/")
    for suffix in WORKFLOW_SUFFIXES:
        if ref.endswith(suffix):
            return ref[: -len(suffix)]
    return ref


def _ignored(name: str) -> bool:
    """Hidden files, editors' swap/backup files and vim's write test file ``4913``."""
    return (
        not name
        or name.startswith(".")
        or (name.startswith("#") and name.endswith("#"))
        or name.endswith(_TEMP_SUFFIXES)
        or name == "4913"
    )


def _valid_namespace(name: str) -> bool:
    return not _ignored(name) and "\x00" not in name and len(name.encode()) <= 255


@dataclass(frozen=True, slots=True)
class Item:
    """What a path under ``DIR`` means: a namespace folder, a workflow file, a variable
    (file or directory), a namespace's ``.vars`` folder, or some other folder."""

    kind: str  # "ns" | "wf" | "wvar" | "nvar" | "vars" | "dir"
    namespace: str
    path: Path
    workflow: str = ""
    key: str = ""


def classify(root: Path, path: Path) -> Item | None:
    """Map a path to the item it belongs to (a file inside a variable directory belongs to
    that directory), or None when the daemon ignores it."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if not parts or not _valid_namespace(parts[0]):
        return None
    ns = parts[0]
    base = root / ns
    if len(parts) == 1:
        return Item("ns", ns, base)
    if parts[1] == VARS_DIR:
        if len(parts) == 2:
            return Item("vars", ns, base / VARS_DIR)
        if _ignored(parts[2]):
            return None
        return Item("nvar", ns, base / VARS_DIR / parts[2], key=parts[2])
    for i in range(1, len(parts)):
        part = parts[i]
        if _ignored(part):
            return None
        last = i == len(parts) - 1
        if last and part.endswith(WORKFLOW_SUFFIXES):
            return Item("wf", ns, path, workflow=workflow_id("/".join(parts[1:])))
        m = _VAR_FILE.fullmatch(part)
        if m:
            wid = "/".join((*parts[1:i], m.group(1)))
            return Item("wvar", ns, base.joinpath(*parts[1 : i + 1]), workflow=wid, key=m.group(3))
    return Item("dir", ns, path)


def guess_mime(name: str, data: bytes) -> str:
    """A drop file's mime type: from its extension when known, else from its bytes
    (JSON, UTF-8 text, or octet-stream).  A getter decodes by content either way."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed and not encoding:
        return guessed
    return sniff_mime(data)


# --------------------------------------------------------------------------- registry


@dataclass(slots=True)
class WorkflowEntry:
    """One workflow file: the version that serves (last good) and the state of the file."""

    namespace: str
    id: str
    path: Path
    workflow: Workflow | None = None  # the last version that validated; serves instances
    digest: str = ""  # sha256 of the file as last read (valid or not)
    errors: list[str] = field(default_factory=list)  # diagnostics of the file as last read
    updated: float = 0.0
    subscription: Callable[[], None] | None = None  # cancels its event start
    created: float = field(default_factory=time.time)  # when the daemon first saw this name

    def summary(self) -> dict[str, Any]:
        wf = self.workflow
        start = (wf.fields.get("start") or {}) if wf is not None else {}
        return {
            "path": self.id,
            "file": str(self.path),
            "valid": not self.errors,
            "serving": wf is not None,
            "errors": list(self.errors),
            "start": start.get("type", "default") if wf is not None else None,
            "cron": start.get("cron") if wf is not None else None,
            "singular": bool(wf.fields.get("singular")) if wf is not None else None,
            "updated": self.updated,
        }


# --------------------------------------------------------------------------- instances


@dataclass(slots=True, eq=False)
class InstanceInfo:
    """A pending or running instance, as the API reports it."""

    id: str
    namespace: str
    workflow: str
    data: dict[str, Any]
    trigger: str
    created: float
    status: str = "pending"  # pending | running | complete | failed
    state: str | None = None  # the state it is in (or will resume at)
    started: float | None = None
    ended: float | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    log: deque[list[Any]] = field(default_factory=deque)
    done: threading.Event = field(default_factory=threading.Event)
    resumed: bool = False
    ivars: bool = False  # may hold instance variables (the record says so at restart)
    cancel: str | None = None
    ctx: InstanceContext | None = None  # its context, once it finished a state (to detach it at stop)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "workflow": self.workflow,
            "status": self.status,
            "state": self.state,
            "trigger": self.trigger,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
            "output": self.output,
            "error": self.error,
            "resumed": self.resumed,
        }

    def record(self) -> bytes:
        rec = self.view()
        rec["v"] = 1
        rec["data"] = self.data if self.status in ("pending", "running") else None
        rec["ivars"] = self.ivars
        rec["log"] = list(self.log)
        return json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode()


def _record_ref(namespace: str, instance_id: str) -> Ref:
    return Ref(namespace, "instance", RECORD_OWNER, _RECORD_KEY + instance_id)


def _error_dict(err: ErrorInfo | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {"code": err.code, "message": err.message, "state": err.state}


# --------------------------------------------------------------------------- events


def event_filters(start: dict[str, Any]) -> list[dict[str, Any]]:
    """The CloudEvent filters of an ``event`` / ``eventsXor`` / ``eventsAnd`` start."""
    kind = start.get("type")
    if kind == "event":
        one = start.get("event")
        return [one] if isinstance(one, dict) else []
    if kind in ("eventsXor", "eventsAnd"):
        return [f for f in start.get("events") or [] if isinstance(f, dict)]
    return []


@dataclass(slots=True)
class _Gathering:
    """Events collected so far for one ``eventsAnd`` start (at most one per filter)."""

    created: float
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    correlation: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- scheduler


class Scheduler:
    """Fires ``start: scheduled`` workflows by cron (UTC; a sixth field is seconds)."""

    def __init__(self, fire: Callable[[str, str], None], logger: logging.Logger) -> None:
        self._fire = fire
        self._log = logger
        self._cond = threading.Condition()
        self._jobs: dict[tuple[str, str], tuple[str, Any, float]] = {}  # (cron, croniter, next fire)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="isolde-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def set(self, namespace: str, wid: str, cron: str | None) -> None:
        """Schedule (or, with None, unschedule) a workflow; the next fire time counts from now."""
        key = (namespace, wid)
        with self._cond:
            old = self._jobs.get(key)
            if cron is None:
                if self._jobs.pop(key, None) is not None:
                    self._cond.notify_all()
                return
            if old is not None and old[0] == cron:
                return  # unchanged: keep the fire time already due
            from croniter import croniter

            it = croniter(cron, _dt.datetime.now(_dt.timezone.utc))
            self._jobs[key] = (cron, it, it.get_next(float))
            self._cond.notify_all()

    def next_fire(self, namespace: str, wid: str) -> float | None:
        with self._cond:
            job = self._jobs.get((namespace, wid))
            return None if job is None else job[2]

    def _loop(self) -> None:
        while True:
            due: list[tuple[str, str]] = []
            with self._cond:
                if self._stop:
                    return
                now = time.time()
                wait = 3600.0
                for key, (cron, it, at) in list(self._jobs.items()):
                    if at <= now:
                        due.append(key)
                        nxt = it.get_next(float)
                        while nxt <= now:  # the daemon was busy or asleep: don't fire a backlog
                            nxt = it.get_next(float)
                        self._jobs[key] = (cron, it, nxt)
                        at = nxt
                    wait = min(wait, at - now)
                if not due:
                    self._cond.wait(max(0.0, wait))
                    continue
            for ns, wid in due:
                try:
                    self._fire(ns, wid)
                except Exception as exc:  # never let one workflow stop the schedule
                    self._log.error("scheduled start failed", extra={"fields": {"ns": ns, "workflow": wid, "error": str(exc)}})


# --------------------------------------------------------------------------- watcher


class _Pending:
    """Dirty paths and when each is due; the watchdog thread adds, the sync thread takes."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.due: dict[Path, float] = {}
        self.last_event: dict[Path, float] = {}
        self.moves: dict[Path, tuple[Path, float]] = {}  # destination -> (source, when) of a recent rename
        self.closed = False

    def mark(self, path: Path, delay: float) -> None:
        now = time.monotonic()
        with self.cond:
            self.due[path] = now + delay
            self.last_event[path] = now
            self.cond.notify_all()

    def move(self, src: Path, dest: Path) -> None:
        now = time.monotonic()
        with self.cond:
            self.moves[dest] = (src, now)
            if len(self.moves) > 1024:  # hints nobody consumed (renames to ignored names)
                for d, (_, t) in list(self.moves.items()):
                    if now - t > MOVE_HINT_TTL:
                        del self.moves[d]

    def moved_from(self, dest: Path) -> Path | None:
        """The source of a recent rename to ``dest`` (consumed)."""
        with self.cond:
            hit = self.moves.pop(dest, None)
        return None if hit is None or time.monotonic() - hit[1] > MOVE_HINT_TTL else hit[0]

    def moved_to(self, src: Path) -> list[Path]:
        """Destinations of recent renames of ``src``."""
        now = time.monotonic()
        with self.cond:
            return [d for d, (s, t) in self.moves.items() if s == src and now - t <= MOVE_HINT_TTL]

    def recheck(self, path: Path, delay: float) -> None:
        """Look at ``path`` again later (without counting it as a new event)."""
        with self.cond:
            self.due[path] = time.monotonic() + delay
            self.cond.notify_all()

    def since_event(self, path: Path) -> float | None:
        with self.cond:
            last = self.last_event.get(path)
        return None if last is None else time.monotonic() - last

    def forget(self, path: Path) -> None:
        with self.cond:
            self.last_event.pop(path, None)

    def take(self, timeout: float) -> list[Path]:
        """Paths that are due, oldest deadline first; waits up to ``timeout`` for one."""
        with self.cond:
            deadline = time.monotonic() + timeout
            while not self.closed:
                now = time.monotonic()
                ready = sorted((t, str(p), p) for p, t in self.due.items() if t <= now)
                if ready:
                    for _, _, p in ready:
                        del self.due[p]
                    return [p for _, _, p in ready]
                nxt = min(self.due.values(), default=deadline)
                if now >= deadline:
                    return []
                self.cond.wait(max(0.0, min(nxt, deadline) - now))
            return []

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class _Handler:
    """watchdog event handler: classify nothing, just mark paths dirty (cheap, never blocks)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def dispatch(self, event: FileSystemEvent) -> None:
        d = self.d
        kind = event.event_type
        src = Path(os.fsdecode(event.src_path))
        s = d.settings
        item = classify(d.root, src)
        if item is not None and item.path != src and item.kind in ("nvar", "wvar"):
            # Inside a variable directory: it is packed once it has been quiet for `settle`.
            d.pending.mark(item.path, s.settle)
            if kind != "moved":
                return
        if kind == "moved":
            dest = Path(os.fsdecode(event.dest_path))
            d.pending.move(src, dest)
            d.pending.mark(src, s.delete_grace)
            d.pending.mark(dest, s.settle if event.is_directory else 0.0)
        elif kind == "deleted":
            d.pending.mark(src, s.delete_grace)
        elif kind == "closed":
            d.pending.mark(src, 0.0)
        elif kind in ("created", "modified"):
            if event.is_directory:
                if kind == "created":
                    d.pending.mark(src, s.settle)
            elif not d.close_events:
                d.pending.mark(src, s.settle)
            # else: a file being written counts when it is closed (the "closed" event)


# --------------------------------------------------------------------------- the daemon


class Daemon:
    """The running server: watcher + registry + scheduler + instance runner (+ the API)."""

    def __init__(self, root: str | os.PathLike[str], engine: Engine, settings: DaemonSettings, *,
                 logger: logging.Logger | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise IsoldeError(f"{root}: not a directory (isolde serve needs DIR/<namespace>/*.yaml)")
        self.engine = engine
        self.settings = settings
        self.log = logger or logging.getLogger("isolde.daemon")
        self.pending = _Pending()
        self.close_events = False
        # Leases signal their holder (SIGIO) when a writer opens the file; only safe to
        # take when that signal is ignored, which `serve` arranges.
        self.use_leases = bool(
            hasattr(signal, "SIGIO") and sys.platform.startswith("linux")
            and signal.getsignal(signal.SIGIO) == signal.SIG_IGN
        )
        self._lock = threading.RLock()
        self._workflows: dict[tuple[str, str], WorkflowEntry] = {}
        self._namespaces: set[str] = set()
        self._manifests: dict[str, dict[str, str]] = {}
        self._instances: dict[str, InstanceInfo] = {}
        self._queue: deque[tuple[InstanceInfo, Workflow, str | None]] = deque()
        self._running = 0
        self._idle: list[_Worker] = []
        self._finished: deque[tuple[str, str]] = deque()
        self._gatherings: dict[tuple[str, str], list[_Gathering]] = {}
        self._tls = threading.local()  # instance ids started by the event being published
        self._stats = {"started": 0, "complete": 0, "failed": 0}
        self._stopping = False
        self._abandon = False
        self._stop_event = threading.Event()
        self._observer: BaseObserver | None = None
        self._sync_thread: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self.scheduler = Scheduler(self._fire_scheduled, self.log)
        self.api: Any = None
        self._dir_lock: int | None = None
        self._max_var = int(engine.config.limit("max_variable_bytes"))
        self._max_yaml = int(engine.config.limit("max_yaml_bytes"))

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, api: bool = True) -> None:
        """Recover, scan, then watch, schedule and serve (in that order, so nothing is missed:
        events arriving during the scan are handled after it, idempotently)."""
        self._claim_data_dir()
        records = self._take_over()
        with self._lock:
            managed = {ns: dict(m) for ns, m in self._manifests.items()}  # as the last run left them
        self._start_observer()
        self._scan_all()
        self._reconcile_manifests(managed)
        self._recover(records)
        self._sync_thread = threading.Thread(target=self._sync_loop, name="isolde-sync", daemon=True)
        self._sync_thread.start()
        self.scheduler.start()
        if api:
            from .api import ApiServer

            self.api = ApiServer(self, self.settings.api, token=self.settings.token)
            self.api.start()
        if self.settings.status_interval > 0:
            self._status_thread = threading.Thread(target=self._status_loop, name="isolde-status", daemon=True)
            self._status_thread.start()
        with self._lock:
            n_wf = len(self._workflows)
            n_ns = len(self._namespaces)
        self.log.info("daemon ready", extra={"fields": {
            "dir": str(self.root), "namespaces": n_ns, "workflows": n_wf,
            "api": self.api.url if self.api is not None else None,
            "data_dir": str(self.engine.data_dir), "pid": os.getpid(),
        }})

    def wait(self) -> None:
        """Block until ``request_stop`` (SIGTERM / SIGINT)."""
        while not self._stop_event.wait(1.0):
            pass

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self) -> None:
        """Graceful stop: no new starts, running instances get ``stop_grace`` seconds, the rest
        stop at their next state and are resumed (or marked interrupted) by the next start."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self.log.info("stopping", extra={"fields": {"running": self._running, "queued": len(self._queue)}})
        if self.api is not None:
            self.api.close()
        self.pending.close()
        if self._observer is not None:
            self._observer.stop()
        self.scheduler.close()
        with self._lock:
            for entry in self._workflows.values():
                if entry.subscription is not None:
                    entry.subscription()
                    entry.subscription = None
            queued = list(self._queue)
            self._queue.clear()
            for worker in self._idle:
                worker.wake.set()  # no job: the idle worker ends
            self._idle.clear()
        for info, _, _ in queued:  # never started: their records say "pending", the next start runs them
            info.done.set()
        deadline = time.monotonic() + self.settings.stop_grace
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._running:
            # Stop the rest where they are: their records stay, the next start resumes them
            # (or marks them interrupted), so their instance variables must stay too.
            self._abandon = True
            with self._lock:
                live = [i for i in self._instances.values() if i.status == "running"]
            self.log.warning("instances still running at stop; they resume or fail as interrupted at the next start",
                             extra={"fields": {"running": len(live)}})
            for info in live:
                if info.ctx is not None:
                    info.ctx.detach()
                try:
                    self.engine.events.interrupt(info.id, "the daemon is stopping")  # wakes delays and waits
                except IsoldeError:
                    pass
            left = time.monotonic() + STOP_DRAIN
            while self._running and time.monotonic() < left:
                time.sleep(0.02)
        if self._observer is not None:
            self._observer.join(timeout=5)
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=5)
        self.engine.close()
        if self._dir_lock is not None:
            os.close(self._dir_lock)  # releases the flock
            self._dir_lock = None
        self.log.info("stopped")

    # ------------------------------------------------------------------ takeover and recovery

    def _claim_data_dir(self) -> None:
        """One daemon per data directory: a second one would take the first one's running
        instances for a crashed daemon's and run them again.  An exclusive ``flock`` on
        ``DATA_DIR/daemon.lock`` says so; the kernel drops it when the process dies, even by
        ``kill -9``, so a crash never leaves a stale lock behind."""
        import fcntl

        path = Path(self.engine.data_dir)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path / "daemon.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise IsoldeError(
                f"another isolde serve (pid {other}) already uses the data directory {path}; "
                "one daemon per data directory (give this one --data-dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._dir_lock = fd

    def _take_over(self) -> list[dict[str, Any]]:
        """Read the records of instances a previous daemon left running and take over their
        instance-variable registrations, *before* the store's orphan sweep would delete them."""
        custom = bool(self.engine.registry.pm.hook.isolde_store.get_hookimpls())
        pre: LmdbStore | None = None
        store: Any
        if custom:
            store = self.engine.store
        else:
            pre = LmdbStore(self.engine.data_dir, durable=self.engine.config.durable)
            store = pre
        records: list[dict[str, Any]] = []
        try:
            for ns in store.namespaces():
                for key, var in store.list(ns, "instance", RECORD_OWNER):
                    if key == MANIFEST_KEY:
                        try:
                            self._manifests[ns] = dict(json.loads(var.data))
                        except (ValueError, TypeError):
                            self._manifests[ns] = {}
                        continue
                    if not key.startswith(_RECORD_KEY):
                        continue
                    try:
                        rec = json.loads(var.data)
                    except ValueError:
                        self.log.warning("unreadable instance record dropped", extra={"fields": {"ns": ns, "key": key}})
                        store.write([Put(Ref(ns, "instance", RECORD_OWNER, key), None)])
                        continue
                    rec["namespace"] = ns
                    records.append(rec)
                    if rec.get("status") in ("pending", "running") and rec.get("ivars"):
                        store.write([], register_instance=(ns, rec["id"]))
            _ = self.engine.store  # opens the engine's store: the orphan sweep runs now
        finally:
            if pre is not None:
                pre.close()
        return records

    def _recover(self, records: list[dict[str, Any]]) -> None:
        store = self.engine.store
        finished: list[tuple[float, str, str]] = []
        for rec in records:
            ns, iid, status = rec["namespace"], str(rec.get("id")), rec.get("status")
            if status not in ("pending", "running"):
                finished.append((float(rec.get("ended") or 0.0), ns, iid))
                continue
            wid = str(rec.get("workflow"))
            with self._lock:
                entry = self._workflows.get((ns, wid))
            wf = entry.workflow if entry is not None else None
            data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
            info = InstanceInfo(iid, ns, wid, data, str(rec.get("trigger") or "api"), float(rec.get("created") or time.time()))
            info.log.extend(rec.get("log") or [])
            info.ivars = bool(rec.get("ivars"))
            info.resumed = True
            state = rec.get("state")
            reason = None
            if wf is None:
                reason = f"workflow '{wid}' is no longer served"
            elif status == "pending":
                state = None  # it never started: run it from the start
            elif state not in wf.states:
                reason = f"state '{state}' no longer exists in workflow '{wid}'"
            elif not wf.states[state].impl.resumable:
                reason = f"state '{state}' (type {wf.states[state].type}) was running and is not safe to run again"
            elif info.ivars and not store.list(ns, "instance", iid):
                reason = "its instance variables were removed while the daemon was down"
            if reason is None and wf is not None:
                info.state = state or wf.start.id
                self.log.info("resuming instance", extra={"fields": {"ns": ns, "workflow": wid, "id": iid, "state": info.state}})
                with self._lock:
                    self._instances[iid] = info
                self._submit(info, wf, state)
            else:
                info.status = "failed"
                info.state = state
                info.started = rec.get("started")
                info.ended = time.time()
                info.error = {"code": "interrupted", "message": f"the daemon stopped while the instance ran; {reason}", "state": state}
                self.log.warning("instance interrupted", extra={"fields": {"ns": ns, "workflow": wid, "id": iid, "reason": reason}})
                self._finish_record(info)
                try:
                    store.end_instance(ns, iid)
                except StoreError as exc:
                    self.log.error("could not remove instance variables", extra={"fields": {"id": iid, "error": str(exc)}})
        finished.sort()
        with self._lock:
            for _, ns, iid in finished:
                self._finished.append((ns, iid))

    # ------------------------------------------------------------------ watching

    def _start_observer(self) -> None:
        from watchdog.events import (
            DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent,
            FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
        )
        from watchdog.observers import Observer

        observer = Observer()
        # Inotify tells when a file is closed after writing: the only reliable "complete".
        self.close_events = type(observer).__name__ == "InotifyObserver"
        wanted = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
                  DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
        observer.schedule(_Handler(self), str(self.root), recursive=True, event_filter=wanted)  # type: ignore[arg-type]
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _sync_loop(self) -> None:
        while not self._stopping:
            paths = self.pending.take(1.0)
            if not paths:
                continue
            try:
                self._sync(paths)
            except Exception as exc:  # a bug must not stop the watcher
                self.log.error("sync failed", exc_info=exc, extra={"fields": {"paths": len(paths)}})

    def _sync(self, paths: list[Path]) -> None:
        items: list[Item] = []
        for p in paths:
            item = classify(self.root, p)
            if item is not None:
                items.append(item)
        order = {"ns": 0, "vars": 1, "dir": 2, "wf": 3, "wvar": 4, "nvar": 4}
        items.sort(key=lambda it: order[it.kind])
        for item in items:
            if self._stopping:
                return
            getattr(self, f"_sync_{item.kind}")(item)

    def _gone_recently(self, path: Path) -> bool:
        """A missing path is acted on only once it stayed gone ``delete_grace`` seconds after
        its last event; until then it is looked at again later."""
        since = self.pending.since_event(path)
        if since is None:
            return False
        left = self.settings.delete_grace - since
        if left > 0:
            self.pending.recheck(path, left)
            return True
        self.pending.forget(path)
        return False

    def _scan_all(self) -> None:
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.is_symlink() and _valid_namespace(child.name):
                self._scan_namespace(child.name)

    def _scan_namespace(self, ns: str) -> None:
        with self._lock:
            new = ns not in self._namespaces
            self._namespaces.add(ns)
        if new:
            self.log.info("namespace added", extra={"fields": {"ns": ns}})
        self._scan_tree(self.root / ns)

    def _scan_tree(self, top: Path) -> None:
        """Register everything under ``top`` (a namespace or a subfolder of one)."""
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                item = classify(self.root, here / name)
                if item is None:
                    continue
                if item.kind in ("nvar", "wvar"):
                    self._sync_var(item)  # a variable directory: don't walk into it
                elif item.kind == "vars":
                    keep.append(name)
                elif item.kind == "dir":
                    keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                item = classify(self.root, here / name)
                if item is None or item.kind == "dir":
                    continue
                if item.kind == "wf":
                    self._sync_wf(item)
                elif item.kind in ("nvar", "wvar"):
                    self._sync_var(item)

    # -- namespaces ------------------------------------------------------------

    def _sync_ns(self, item: Item) -> None:
        ns = item.namespace
        if item.path.is_dir() and not item.path.is_symlink():
            src = self.pending.moved_from(item.path)
            if src is not None and src.parent == self.root and not src.exists():
                self._move_namespace(src.name, ns)
            self._scan_namespace(ns)
            return
        if self._gone_recently(item.path):
            return
        with self._lock:
            known = ns in self._namespaces
        if known:
            self._remove_namespace(ns)

    def _sync_vars(self, item: Item) -> None:
        if item.path.is_dir():
            self._scan_tree(item.path)

    def _sync_dir(self, item: Item) -> None:
        path = item.path
        if path.is_dir() and not path.is_symlink():
            src = self.pending.moved_from(path)
            if src is not None:  # a folder renamed: its workflows move (hints per file)
                with self._lock:
                    entries = [e for e in self._workflows.values() if _under(e.path, src)]
                for e in entries:
                    self.pending.move(e.path, path / e.path.relative_to(src))
            self._scan_tree(path)
            return
        if path.exists():
            return  # some other file
        if self._gone_recently(path):
            return
        with self._lock:
            entries = [e for e in self._workflows.values() if _under(e.path, path)]
        for e in entries:
            self._sync_wf(Item("wf", e.namespace, e.path, workflow=e.id))

    # -- workflows -------------------------------------------------------------

    def _sync_wf(self, item: Item) -> None:
        path, ns, wid = item.path, item.namespace, item.workflow
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not _stat.S_ISREG(st.st_mode):
            if st is not None and _stat.S_ISLNK(st.st_mode):
                self.log.warning("symbolic link ignored (never followed)", extra={"fields": {"file": str(path)}})
                return
            if st is not None:
                return
            for dest in self.pending.moved_to(path):
                moved = classify(self.root, dest)
                if moved is not None and moved.kind == "wf" and dest.is_file():
                    return  # renamed: handled when the new name is synced
            if self._gone_recently(path):
                return
            with self._lock:
                entry = self._workflows.get((ns, wid))
            if entry is None or entry.path != path:
                return
            twin = self._twin(entry)
            if twin is not None:  # moved without a rename event (e.g. into a folder not watched yet)
                self._rename_workflow(entry, twin.namespace, twin.id, twin.path)
            else:
                self._delete_workflow(entry)
            return
        data = self._read_stable(path, st, self._max_yaml + 1)
        if data is None:
            return
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            entry = self._workflows.get((ns, wid))
            self._namespaces.add(ns)
        src = self.pending.moved_from(path)
        if entry is None and src is not None:
            old = classify(self.root, src)
            with self._lock:
                moved = self._workflows.get((old.namespace, old.workflow)) if old is not None and old.kind == "wf" else None
            if moved is not None and not src.exists():
                entry = self._rename_workflow(moved, ns, wid, path)
        if entry is not None and entry.digest == digest and entry.path == path:
            return
        try:
            # Built from the bytes just read and hashed (Engine.load would read the file
            # again, and might see a newer write than the digest describes).
            wf = self.engine.build(data, str(path), wid)
            wf.id = wid  # the file is the name, whatever `id:` says
            wf.root = self.root / ns  # a leading / in subflows and file keys
            errors: list[str] = []
        except ValidationError as exc:
            wf = None
            errors = [str(d) for d in exc.diagnostics]
        now = time.time()
        with self._lock:
            created = entry is None
            if entry is None:
                entry = WorkflowEntry(ns, wid, path)
                self._workflows[(ns, wid)] = entry
            entry.path = path
            entry.digest = digest
            entry.errors = errors
            entry.updated = now
            if wf is not None:
                entry.workflow = wf
        self._manifest_set(ns, wid, digest)
        fields = {"ns": ns, "workflow": wid, "file": str(path)}
        if wf is None:
            msg = "invalid workflow" + (", the previous version keeps serving" if entry.workflow is not None else ", not registered")
            self.log.error(msg, extra={"fields": {**fields, "errors": len(errors)}})
            for line in errors:
                self.log.error(line, extra={"fields": {"ns": ns, "workflow": wid}})
            return
        self.log.info("workflow registered" if created else "workflow updated", extra={"fields": fields})
        self._apply_starts(entry)

    def _twin(self, gone: WorkflowEntry) -> WorkflowEntry | None:
        """A workflow that appeared in the last ``MOVE_HINT_TTL`` seconds with the same content
        as one that disappeared: the file was moved.  inotify reports a move into a folder it
        does not watch yet (one just created) as a deletion plus a new file."""
        now = time.time()
        with self._lock:
            for e in self._workflows.values():
                if e is not gone and e.digest == gone.digest and now - e.created < MOVE_HINT_TTL:
                    if e.path.is_file() and not self.engine.store.list(e.namespace, "workflow", e.id):
                        return e
        return None

    def _read_stable(self, path: Path, st: os.stat_result, cap: int) -> bytes | None:
        """The file's bytes if it did not change while read (else it is tried again later)."""
        if st.st_size >= cap:
            self.log.error("file too large, ignored", extra={"fields": {"file": str(path), "bytes": st.st_size, "limit": cap - 1}})
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self.log.warning("cannot read file", extra={"fields": {"file": str(path), "error": exc.strerror}})
            return None
        try:
            if self._writer_has(fd):
                # Still open for writing (a slow writer, or found by a scan of a folder that
                # just appeared): its close event comes later; look again in a while anyway.
                self.pending.recheck(path, max(self.settings.settle, WRITER_RECHECK))
                return None
            before = os.fstat(fd)
            chunks = []
            total = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total >= cap:
                    self.log.error("file too large, ignored", extra={"fields": {"file": str(path), "limit": cap - 1}})
                    return None
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or total != after.st_size:
            self.pending.recheck(path, max(self.settings.settle, 0.01))
            return None
        return b"".join(chunks)

    def _writer_has(self, fd: int) -> bool:
        """Whether some process has this file open for writing, asked the Linux way: a read
        lease (``F_SETLEASE``) is refused while any writer has the file open.  The lease is
        dropped when ``fd`` closes (right after the read), so a writer opening the file
        meanwhile waits at most that long.  False where leases are unavailable."""
        if not self.use_leases:
            return False
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except BlockingIOError:
            return True
        except OSError:
            return False  # not the file's owner, or a filesystem without leases
        return False

    def _apply_starts(self, entry: WorkflowEntry) -> None:
        """Follow the (new) version's ``start``: cron schedule and event subscription."""
        wf = entry.workflow
        start = (wf.fields.get("start") or {}) if wf is not None else {}
        kind = start.get("type", "default")
        self.scheduler.set(entry.namespace, entry.id, start.get("cron") if kind == "scheduled" and start.get("cron") else None)
        if entry.subscription is not None:
            entry.subscription()
            entry.subscription = None
        with self._lock:
            self._gatherings.pop((entry.namespace, entry.id), None)
        filters = event_filters(start)
        if filters:
            entry.subscription = self._subscribe(entry.namespace, entry.id, filters)

    def _delete_workflow(self, entry: WorkflowEntry) -> None:
        ns, wid = entry.namespace, entry.id
        with self._lock:
            self._workflows.pop((ns, wid), None)
            self._gatherings.pop((ns, wid), None)
            doomed = [i for i in self._instances.values()
                      if i.namespace == ns and i.workflow == wid and i.status in ("pending", "running")]
        for info in doomed:
            self._cancel(info, f"workflow '{wid}' was deleted")
        if entry.subscription is not None:
            entry.subscription()
        self.scheduler.set(ns, wid, None)
        n = self.engine.delete_workflow(wid, ns)
        self._manifest_set(ns, wid, None)
        self.log.info("workflow deleted", extra={"fields": {"ns": ns, "workflow": wid, "file": str(entry.path), "variables": n}})

    def _rename_workflow(self, entry: WorkflowEntry, ns: str, wid: str, path: Path) -> WorkflowEntry:
        """A workflow file renamed or moved: its variables follow it (across namespaces too)."""
        old_ns, old_wid = entry.namespace, entry.id
        store = self.engine.store
        if old_ns == ns:
            n = store.rename_workflow(ns, old_wid, wid)
        else:
            rows = store.list(old_ns, "workflow", old_wid)
            puts = [Put(Ref(ns, "workflow", wid, k), v.data, v.mime) for k, v in rows]
            puts += [Put(Ref(old_ns, "workflow", old_wid, k), None) for k, _ in rows]
            store.write(puts)
            n = len(rows)
        with self._lock:
            self._workflows.pop((old_ns, old_wid), None)
            replaced = self._workflows.get((ns, wid))
            if replaced is not None and replaced.subscription is not None:
                replaced.subscription()
            new = WorkflowEntry(ns, wid, path, entry.workflow, entry.digest, entry.errors, time.time())
            if new.workflow is not None:
                new.workflow.id = wid
            self._workflows[(ns, wid)] = new
        if entry.subscription is not None:
            entry.subscription()
        self.scheduler.set(old_ns, old_wid, None)
        self._manifest_set(old_ns, old_wid, None)
        self._manifest_set(ns, wid, entry.digest)
        self._apply_starts(new)
        self.log.info("workflow renamed", extra={"fields": {"ns": ns, "from": f"{old_ns}/{old_wid}" if old_ns != ns else old_wid, "workflow": wid, "variables": n}})
        return new

    def _move_namespace(self, old: str, new: str) -> None:
        """A namespace folder renamed: namespace and workflow variables move with it."""
        store = self.engine.store
        puts: list[Put] = []
        for k, v in store.list(old, "namespace", ""):
            puts.append(Put(Ref(new, "namespace", "", k), v.data, v.mime))
        for wid in store.workflows(old):
            for k, v in store.list(old, "workflow", wid):
                puts.append(Put(Ref(new, "workflow", wid, k), v.data, v.mime))
        if puts:
            store.write(puts)
        with self._lock:
            moved = [e for (ns, _), e in self._workflows.items() if ns == old]
        for e in moved:
            with self._lock:
                self._workflows.pop((old, e.id), None)
                ne = WorkflowEntry(new, e.id, self.root / new / e.path.relative_to(self.root / old), e.workflow, e.digest, e.errors, time.time())
                self._workflows[(new, e.id)] = ne
            if e.subscription is not None:
                e.subscription()
            self.scheduler.set(old, e.id, None)
            self._manifest_set(new, e.id, e.digest)
            self._apply_starts(ne)
        self.log.info("namespace renamed", extra={"fields": {"from": old, "ns": new, "variables": len(puts)}})
        self._remove_namespace(old)

    def _remove_namespace(self, ns: str) -> None:
        with self._lock:
            self._namespaces.discard(ns)
            entries = [e for (n, _), e in self._workflows.items() if n == ns]
            for e in entries:
                del self._workflows[(ns, e.id)]
                self._gatherings.pop((ns, e.id), None)
            doomed = [i for i in self._instances.values() if i.namespace == ns and i.status in ("pending", "running")]
            self._manifests.pop(ns, None)
        for info in doomed:
            self._cancel(info, f"namespace '{ns}' was removed")
        for e in entries:
            if e.subscription is not None:
                e.subscription()
            self.scheduler.set(ns, e.id, None)
        n = self.engine.delete_namespace(ns)
        self.log.info("namespace removed", extra={"fields": {"ns": ns, "workflows": len(entries), "variables": n}})

    # -- manifests: what the daemon manages, so deletions while it was down are applied --

    def _manifest_set(self, ns: str, wid: str, digest: str | None) -> None:
        with self._lock:
            man = self._manifests.setdefault(ns, {})
            if man.get(wid) == digest:
                return
            if digest is None:
                man.pop(wid, None)
            else:
                man[wid] = digest
            data = json.dumps(man, sort_keys=True).encode() if man else None
        self.engine.store.write([Put(Ref(ns, "instance", RECORD_OWNER, MANIFEST_KEY), data)])

    def _reconcile_manifests(self, manifests: dict[str, dict[str, str]]) -> None:
        """Apply what happened while the daemon was down: a managed workflow whose file is
        gone is deleted, unless a new file with the same content appeared (a rename); a
        managed namespace whose folder is gone is removed."""
        with self._lock:
            namespaces = set(self._namespaces)
        for ns, man in manifests.items():
            if ns not in namespaces:
                self._remove_namespace(ns)
                continue
            with self._lock:
                present = {wid: e for (n, wid), e in self._workflows.items() if n == ns}
            fresh = {e.digest: e for wid, e in present.items() if wid not in man}
            for wid, digest in man.items():
                if wid in present:
                    continue
                twin = fresh.pop(digest, None)
                if twin is not None:
                    self._rename_workflow(WorkflowEntry(ns, wid, self.root / ns / wid, twin.workflow, digest), ns, twin.id, twin.path)
                else:
                    n = self.engine.delete_workflow(wid, ns)
                    self._manifest_set(ns, wid, None)
                    self.log.info("workflow deleted (its file went while the daemon was down)",
                                  extra={"fields": {"ns": ns, "workflow": wid, "variables": n}})

    # -- drop-folder variables -----------------------------------------------------

    def _sync_nvar(self, item: Item) -> None:
        self._sync_var(item)

    def _sync_wvar(self, item: Item) -> None:
        self._sync_var(item)

    def _sync_var(self, item: Item) -> None:
        scope = "namespace" if item.kind == "nvar" else "workflow"
        fields = {"ns": item.namespace, "workflow": item.workflow or None, "key": item.key, "file": str(item.path)}
        try:
            check_key(item.key)
        except StoreError as exc:
            self.log.warning("drop file ignored: its name is not a valid variable key", extra={"fields": {**fields, "error": str(exc)}})
            return
        ref = Ref(item.namespace, scope, item.workflow if scope == "workflow" else "", item.key)
        try:
            st = os.lstat(item.path)
        except FileNotFoundError:
            st = None
        if st is None:
            if not self.settings.delete_vars_with_files or self._gone_recently(item.path):
                return
            if self.engine.store.get(ref) is not None:
                self.engine.store.write([Put(ref, None)])
                self.log.info("variable deleted with its file", extra={"fields": fields})
            return
        if _stat.S_ISREG(st.st_mode):
            data = self._read_stable(item.path, st, self._max_var + 1)
            if data is None:
                return
            mime = guess_mime(item.key, data)
        elif _stat.S_ISDIR(st.st_mode):
            packed = self._pack(item.path, fields)
            if packed is None:
                return
            data, mime = packed, DIR_MIME
        else:
            self.log.warning("drop file ignored: not a regular file or directory (links are never followed)", extra={"fields": fields})
            return
        with self._lock:
            self._namespaces.add(item.namespace)
        old = self.engine.store.get(ref)
        if old is not None and old.mime == mime and old.data == data:
            return
        self.engine.store.write([Put(ref, data, mime)])
        self.log.info("variable stored", extra={"fields": {**fields, "bytes": len(data), "mime": mime}})

    def _pack(self, path: Path, fields: dict[str, Any]) -> bytes | None:
        from .archive import ArchiveLimits, pack_dir
        from .errors import WorkflowError

        buf = _CappedBuffer(self._max_var)
        try:
            pack_dir(path, buf, limits=ArchiveLimits.from_config(self.engine.config), label=f"drop folder {path}")
        except WorkflowError as exc:
            self.log.error("variable directory not stored", extra={"fields": {**fields, "error": exc.msg}})
            return None
        except _TooBig:
            self.log.error("variable directory not stored: its tar.gz is over [limits] max_variable_bytes",
                           extra={"fields": {**fields, "limit": self._max_var}})
            return None
        return buf.getvalue()

    # ------------------------------------------------------------------ instances

    def start_instance(self, ns: str, path: str, input: Any = None, *, trigger: str = "api",
                       announce: bool = True) -> InstanceInfo:
        """Queue an instance of a served workflow; raises DaemonError (404, 409, 503, 400).

        With ``announce`` its record is durable before this returns, so an id handed out
        survives a crash.  A caller that waits for the outcome passes False and saves that
        commit: should the daemon die first, the caller gets no id, and the instance left
        no trace unless it committed something (which writes its record with it)."""
        if self._stopping:
            raise DaemonError(503, "isolde.daemon.stopping", "the daemon is stopping")
        wid = workflow_id(path)
        entry = self._entry(ns, wid)
        wf = entry.workflow
        if wf is None:
            raise DaemonError(409, "isolde.workflow.invalid",
                              f"workflow '{wid}' has no valid version to run: " + "; ".join(entry.errors[:3]))
        refused = None if trigger == "event" else manual_start_refused(wf)
        if refused is not None:  # Direktiv v0.7+: only its event starts it
            raise DaemonError(409, "direktiv.workflow.invoke", refused)
        try:
            data = self.engine.instance_input(input)
        except IsoldeError as exc:
            raise DaemonError(413 if "limit" in str(exc) else 400, "isolde.input", str(exc)) from None
        iid = str(uuid.uuid4())
        info = InstanceInfo(iid, ns, wid, data, trigger, time.time(), state=wf.start.id)
        with self._lock:
            if wf.fields.get("singular"):
                for other in self._instances.values():
                    if other.namespace == ns and other.workflow == wid and other.status in ("pending", "running"):
                        raise DaemonError(409, "direktiv.mutex",
                                          f"workflow '{wid}' is singular and instance {other.id} is still {other.status}")
            if self._running >= self.settings.max_running and len(self._queue) >= self.settings.max_queue:
                raise DaemonError(503, "isolde.daemon.busy",
                                  f"{self._running} instances running and {len(self._queue)} queued "
                                  "(raise [daemon] max_running / max_queue)")
            self._instances[iid] = info
        try:
            if announce:
                self._write_record(info)
        except StoreError as exc:
            with self._lock:
                self._instances.pop(iid, None)
            raise DaemonError(507, getattr(exc, "code", "isolde.store"), str(exc)) from None
        self._submit(info, wf, None)
        return info

    def _entry(self, ns: str, wid: str) -> WorkflowEntry:
        self._namespace(ns)
        with self._lock:
            entry = self._workflows.get((ns, wid))
        if entry is None:
            raise DaemonError(404, "isolde.workflow.notFound", f"no workflow '{wid}' in namespace '{ns}'")
        return entry

    def _namespace(self, ns: str) -> None:
        with self._lock:
            if ns in self._namespaces:
                return
        raise DaemonError(404, "isolde.namespace.notFound", f"no namespace '{ns}' (a namespace is a folder {self.root}/<namespace>)")

    def _submit(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        """Run now on an idle worker thread or a new one, or queue when ``max_running`` run."""
        job = (info, wf, start)
        with self._lock:
            if self._running >= self.settings.max_running:
                self._queue.append(job)
                return
            self._running += 1
            if self._idle:
                worker = self._idle.pop()
                worker.job = job
                worker.wake.set()
                return
        threading.Thread(target=self._work, args=(job,), name="isolde-instance", daemon=True).start()

    def _work(self, job: tuple[InstanceInfo, Workflow, str | None]) -> None:
        """A worker thread: runs its job, then queued ones, then waits idle for the next
        (``WORKER_IDLE`` seconds) -- reusing threads saves a thread start per instance."""
        me = _Worker()
        current: tuple[InstanceInfo, Workflow, str | None] | None = job
        while current is not None:
            try:
                self._run_one(*current)
            except Exception as exc:  # a bug: keep the worker (and the daemon) alive
                self.log.error("instance runner failed", exc_info=exc, extra={"fields": {"id": current[0].id}})
                current[0].done.set()
            current = None
            with self._lock:
                if self._queue and not self._stopping:
                    current = self._queue.popleft()
                    continue
                self._running -= 1
                if self._stopping:
                    return
                me.job = None
                me.wake.clear()
                self._idle.append(me)
            me.wake.wait(WORKER_IDLE)
            with self._lock:
                current = me.job
                if current is None:
                    if me in self._idle:
                        self._idle.remove(me)
                    return

    def _run_one(self, info: InstanceInfo, wf: Workflow, start: str | None) -> None:
        engine = self.engine
        ns, iid = info.namespace, info.id
        info.status = "running"
        info.started = time.time()
        first = wf.states[start] if start is not None else wf.start
        info.state = first.id
        keep = self.settings.keep_log_lines
        log = self.log

        def sink(_iid: str, state: str, message: str) -> None:
            info.log.append([time.time(), state, message[:LOG_LINE_MAX]])
            if len(info.log) > keep:
                info.log.popleft()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(message, extra={"fields": {"ns": ns, "id": iid, "state": state}})

        def on_step(ctx: InstanceContext, state: StateSpec, nxt: str | None, data: dict[str, Any], pending: Sequence[Put]) -> Sequence[Put]:
            info.ctx = ctx
            if info.cancel is not None:
                raise InstanceFailure(info.cancel, code="isolde.daemon.cancelled")
            if self._abandon:
                ctx.detach()  # keep its instance variables for the next start
                raise InstanceFailure("the daemon is stopping", code="interrupted")
            if not info.ivars and (not state.impl.resumable or any(p.ref.scope == "instance" for p in pending)):
                info.ivars = True  # an action may have written some through the sidecar
            if nxt is None:
                info.state = None
                return ()
            info.state = nxt
            if pending or not state.impl.resumable or not wf.states[nxt].impl.resumable:
                info.data = data
                return (Put(_record_ref(ns, iid), info.record()),)
            return ()

        if log.isEnabledFor(logging.DEBUG):
            log.debug("instance started", extra={"fields": {"ns": ns, "workflow": info.workflow, "id": iid, "trigger": info.trigger}})
        try:
            if not first.impl.resumable and start is None:
                self._write_record(info)  # it may call out at once: a crash must not run it twice
            if info.cancel is not None:
                raise InstanceFailure(info.cancel, code="isolde.daemon.cancelled")
            result = engine.run_loaded(wf, info.data, namespace=ns, instance_id=iid, sink=sink, start=start,
                                       on_step=on_step, started_at=info.created if start is not None else None)
        except Exception as exc:  # the store closed under us (stopping), or a bug
            if self._abandon or self._stopping:
                info.done.set()
                return
            result = Result(iid, "failed", error=ErrorInfo("isolde.internal", f"{type(exc).__name__}: {exc}", info.state))
            log.error("instance crashed", exc_info=exc, extra={"fields": {"ns": ns, "id": iid}})
        if self._abandon and result.status == "failed":
            info.done.set()  # stopped by the shutdown: its record stays, the next start resumes it
            return
        info.status = result.status
        info.output = result.output
        info.error = _error_dict(result.error)
        info.ended = time.time()
        info.data = {}
        info.ctx = None
        with self._lock:
            self._stats[result.status] = self._stats.get(result.status, 0) + 1
            self._stats["started"] += 1
        gone = info.cancel is not None and "namespace" in info.cancel
        try:
            if not gone:
                self._finish_record(info)
            if info.resumed:
                engine.store.end_instance(ns, iid)
        except StoreError as exc:
            log.error("could not store the instance's outcome", extra={"fields": {"ns": ns, "id": iid, "error": str(exc)}})
        if result.status == "failed":
            err = result.error
            log.info("instance failed", extra={"fields": {
                "ns": ns, "workflow": info.workflow, "id": iid,
                "code": err.code if err else None, "error": err.message if err else None, "state": err.state if err else None}})
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("instance complete", extra={"fields": {"ns": ns, "workflow": info.workflow, "id": iid,
                                                            "ms": round((info.ended - (info.started or info.ended)) * 1000, 1)}})
        with self._lock:
            self._instances.pop(iid, None)
        info.done.set()

    def _cancel(self, info: InstanceInfo, reason: str) -> None:
        """Stop an instance at its next state, and wake it now if it waits or sleeps."""
        info.cancel = reason
        try:
            self.engine.events.interrupt(info.id, reason)
        except IsoldeError:
            pass  # the engine is closing anyway

    def _write_record(self, info: InstanceInfo) -> None:
        self.engine.store.write([Put(_record_ref(info.namespace, info.id), info.record())])

    def _finish_record(self, info: InstanceInfo) -> None:
        """The outcome replaces the running record; the oldest outcomes beyond
        ``keep_instances`` are dropped in the same transaction."""
        puts = [Put(_record_ref(info.namespace, info.id), info.record())]
        with self._lock:
            self._finished.append((info.namespace, info.id))
            while len(self._finished) > self.settings.keep_instances:
                ns, iid = self._finished.popleft()
                puts.append(Put(_record_ref(ns, iid), None))
        self.engine.store.write(puts)

    def instance(self, ns: str, iid: str) -> dict[str, Any]:
        """An instance's status, output and error (404 when unknown)."""
        with self._lock:
            info = self._instances.get(iid)
        if info is not None and info.namespace == ns:
            return info.view()
        rec = self._stored_record(ns, iid)
        for k in ("v", "data", "ivars", "log"):
            rec.pop(k, None)
        return rec

    def instance_log(self, ns: str, iid: str) -> list[dict[str, Any]]:
        with self._lock:
            info = self._instances.get(iid)
        if info is not None and info.namespace == ns:
            lines = list(info.log)
        else:
            lines = self._stored_record(ns, iid).get("log") or []
        return [{"time": t, "state": s, "message": m} for t, s, m in lines]

    def instances(self, ns: str) -> list[dict[str, Any]]:
        """Running and queued instances of a namespace, then the kept outcomes (newest first)."""
        self._namespace(ns)
        with self._lock:
            live = [i.view() for i in self._instances.values() if i.namespace == ns]
        done = []
        for key, var in self.engine.store.list(ns, "instance", RECORD_OWNER):
            if not key.startswith(_RECORD_KEY):
                continue
            try:
                rec = json.loads(var.data)
            except ValueError:
                continue
            if rec.get("status") in ("complete", "failed"):
                done.append({k: rec.get(k) for k in ("id", "workflow", "status", "trigger", "created", "started", "ended", "error")})
        done.sort(key=lambda r: r.get("ended") or 0, reverse=True)
        return sorted(live, key=lambda r: r["created"]) + done

    def _stored_record(self, ns: str, iid: str) -> dict[str, Any]:
        if "\x00" in iid or not iid or len(iid) > 200:
            raise DaemonError(404, "isolde.instance.notFound", f"no instance '{iid[:100]}' in namespace '{ns}'")
        try:
            var = self.engine.store.get(_record_ref(ns, iid))
        except StoreError:
            var = None
        if var is None:
            raise DaemonError(404, "isolde.instance.notFound", f"no instance '{iid}' in namespace '{ns}'")
        rec: dict[str, Any] = json.loads(var.data)
        rec["namespace"] = ns
        return rec

    def wait_for(self, ns: str, iid: str, timeout: float) -> dict[str, Any]:
        with self._lock:
            info = self._instances.get(iid)
        if info is not None:
            info.done.wait(timeout)
        return self.instance(ns, iid)

    def _fire_scheduled(self, ns: str, wid: str) -> None:
        try:
            info = self.start_instance(ns, wid, None, trigger="cron")
        except DaemonError as exc:
            self.log.warning("scheduled start skipped", extra={"fields": {"ns": ns, "workflow": wid, "code": exc.code, "reason": exc.message}})
            return
        self.log.info("scheduled start", extra={"fields": {"ns": ns, "workflow": wid, "id": info.id}})

    # ------------------------------------------------------------------ events

    def _subscribe(self, ns: str, wid: str, filters: list[dict[str, Any]]) -> Callable[[], None]:
        """Start ``wid`` from matching events of the engine's bus; returns the unsubscribe function.

        ``eventsAnd`` is gathered here rather than by the bus, because the daemon also
        applies the start's ``correlate`` keys and ``lifespan``."""
        from .events import EventFilter

        flts = [EventFilter(str(f.get("type", "")), dict(f.get("context") or {})) for f in filters]

        def deliver(received: list[tuple[int, dict[str, Any]]]) -> None:
            for index, event in received:
                self._on_event(ns, wid, index, event)

        return self.engine.events.subscribe(ns, flts, deliver)  # type: ignore[no-any-return]

    def publish_event(self, ns: str, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Publish a CloudEvent posted to the API; returns it (id filled in) and the ids of
        the instances it started.  Running instances waiting for it get it too."""
        from .events import EventError

        self._namespace(ns)
        if self._stopping:
            raise DaemonError(503, "isolde.daemon.stopping", "the daemon is stopping")
        started: list[str] = []
        self._tls.started = started  # subscribers run on this thread and report here
        try:
            ev = self.engine.events.publish(ns, event)
        except EventError as exc:
            raise DaemonError(400, "isolde.event.invalid", str(exc)) from None
        finally:
            self._tls.started = None
        return ev, started

    def _on_event(self, ns: str, wid: str, index: int, event: dict[str, Any]) -> str | None:
        with self._lock:
            entry = self._workflows.get((ns, wid))
        wf = entry.workflow if entry is not None else None
        if wf is None:
            return None
        start = wf.fields.get("start") or {}
        if start.get("type") == "eventsAnd":
            data = self._gather(ns, wid, start, len(event_filters(start)), index, event)
            if data is None:
                return None
        else:
            data = {str(event.get("type")): event}
        try:
            info = self.start_instance(ns, wid, data, trigger="event")
        except DaemonError as exc:
            self.log.warning("event start skipped", extra={"fields": {"ns": ns, "workflow": wid, "code": exc.code, "reason": exc.message}})
            return None
        self.log.info("event start", extra={"fields": {"ns": ns, "workflow": wid, "id": info.id, "event": event.get("type")}})
        started = getattr(self._tls, "started", None)
        if started is not None:
            started.append(info.id)
        return info.id

    def _gather(self, ns: str, wid: str, start: dict[str, Any], count: int, index: int,
                event: dict[str, Any]) -> dict[str, Any] | None:
        """``eventsAnd``: keep one event per filter (events agreeing on the ``correlate``
        attributes go together; a group older than ``lifespan`` is dropped); once every
        filter has one, they start the instance, each under its type (a type listed twice:
        the later one under ``<type>.<index>``, as the waiting states place them)."""
        lifespan = start.get("lifespan")
        correlate = [str(k) for k in start.get("correlate") or []]
        now = time.time()
        corr = {k: event.get(k) for k in correlate}
        with self._lock:
            groups = self._gatherings.setdefault((ns, wid), [])
            if lifespan:
                groups[:] = [g for g in groups if now - g.created <= float(lifespan)]
            for g in groups:
                if g.correlation == corr and index not in g.events:
                    g.events[index] = event
                    break
            else:
                g = _Gathering(now, {index: event}, corr)
                groups.append(g)
            if len(g.events) < count:
                return None
            groups.remove(g)
        out: dict[str, Any] = {}
        for i, e in sorted(g.events.items()):
            key = str(e.get("type"))
            out[f"{key}.{i}" if key in out else key] = e  # a repeated type: .<type>.<index>, as the states do
        return out

    # ------------------------------------------------------------------ queries for the API

    def namespaces(self) -> list[dict[str, Any]]:
        with self._lock:
            names = sorted(self._namespaces)
            counts = {n: 0 for n in names}
            for (n, _) in self._workflows:
                if n in counts:
                    counts[n] += 1
        return [{"name": n, "workflows": counts[n]} for n in names]

    def workflows(self, ns: str) -> list[dict[str, Any]]:
        self._namespace(ns)
        with self._lock:
            entries = sorted((e for (n, _), e in self._workflows.items() if n == ns), key=lambda e: e.id)
            out = [e.summary() for e in entries]
        for row in out:
            row["next_run"] = self.scheduler.next_fire(ns, row["path"])
        return out

    def workflow_owner(self, ns: str, path: str) -> str:
        """The store owner of a served workflow's variables (404 when it is not served)."""
        return self._entry(ns, workflow_id(path)).id

    def check_namespace(self, ns: str) -> None:
        self._namespace(ns)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "namespaces": len(self._namespaces),
                "workflows": len(self._workflows),
                "invalid": sum(1 for e in self._workflows.values() if e.errors),
                "running": self._running,
                "queued": len(self._queue),
                **self._stats,
            }

    def _status_loop(self) -> None:
        while not self._stop_event.wait(self.settings.status_interval):
            if self._stopping:
                return
            self.log.info("status", extra={"fields": self.status()})


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


class _Worker:
    """An idle instance-runner thread, waiting to be handed a job."""

    __slots__ = ("wake", "job")

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.job: tuple[InstanceInfo, Workflow, str | None] | None = None


class _TooBig(Exception):
    pass


class _CappedBuffer(io.BytesIO):
    """A BytesIO that refuses to grow past ``cap`` (a packed directory over the variable limit)."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.cap:
            raise _TooBig()
        return super().write(data)


# --------------------------------------------------------------------------- entry point


def serve(directory: str, *, engine: Engine, api: str | None, token: str | None, verbose: bool,
          no_api: bool = False) -> int:
    """``isolde serve DIR``: run until SIGTERM / SIGINT; returns the exit code."""
    log = configure_logging(verbose)
    settings = DaemonSettings.from_config(engine.config, api=api, token=token)
    if hasattr(signal, "SIGIO"):
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks (see Daemon._writer_has)
    daemon = Daemon(directory, engine, settings, logger=log)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal received", extra={"fields": {"signal": signal.Signals(signum).name}})
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon.start(api=not no_api)
    except BaseException:
        daemon.stop()
        raise
    try:
        daemon.wait()
    finally:
        daemon.stop()
    return 0
