"""The base class of isolate runners, and what the engine gives them (:class:`RunnerHost`).

A *runner* is how a function of a workflow reaches its isolate.  Runners are
plugins (``isolde_isolate_runners``); the built-in ones live in
``isolde.plugins.runners``; :class:`isolde.isolates.http.HttpIsolate` already speaks
Direktiv's HTTP protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol

if TYPE_CHECKING:
    from ..config import Config
    from .protocol import ActionRequest, Response
    from .settings import ActionSettings


class RunnerHost(Protocol):
    """What a runner may use of the engine (the engine's isolate hub implements it)."""

    @property
    def settings(self) -> ActionSettings:
        """The checked ``[actions]`` table."""

    @property
    def config(self) -> Config:
        """The engine's configuration (``[images]``, ``[limits]``, ...)."""

    def shared(self, key: str, factory: Callable[[], Runner]) -> Runner:
        """The runner kept under ``key``, made by ``factory`` on first use (one per engine)."""


class Runner:
    """Base class of isolate runners (built-in and third-party alike).

    A subclass lists the function ``type`` values it serves in ``types`` and
    implements :meth:`call`.  The hub makes one runner per distinct function
    definition (see :meth:`key`) and per engine, so a runner may keep
    connections or a process between calls; :meth:`close` releases them when
    the engine closes.  Register runners with the ``isolde_isolate_runners``
    hook; the function's fields are declared separately, as
    ``function <type> {...}`` through ``isolde_declarations``.
    """

    types: ClassVar[tuple[str, ...]] = ()
    """The function ``type`` values this runner serves."""

    uses_folder: ClassVar[bool] = True
    """Whether calls get an action folder (files, ``out/``) and a sidecar action id.
    False for runners that do not run an isolate (subflows)."""

    def __init__(self, host: RunnerHost, function: Mapping[str, Any], base_dir: Path) -> None:
        """``function`` holds the validated fields of the function; ``base_dir`` is
        the directory of the workflow file (relative paths in it are resolved there)."""
        self.host = host
        self.function = function
        self.base_dir = base_dir

    @classmethod
    def key(cls, function: Mapping[str, Any], base_dir: Path) -> str:
        """Which definitions share one runner: by default every field but ``id``
        and ``files`` (two workflows naming the same isolate share its process)."""
        fields = {k: v for k, v in function.items() if k not in ("id", "files")}
        return f"{cls.__module__}.{cls.__qualname__}:{json.dumps(fields, sort_keys=True, default=str)}"

    def describe(self) -> str:
        """How error messages name this isolate."""
        return f"function '{self.function.get('id', '?')}' ({self.function.get('type', '?')})"

    def call(self, request: ActionRequest) -> Response:
        """Call the isolate once and return its reply.

        Raise :class:`ActionTimeout` when ``request.remaining()`` runs out (after
        cancelling the call if the isolate supports it), ``WorkflowError`` for a
        catchable failure, ``InstanceFailure`` for an uncatchable one.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections, processes, threads."""


__all__ = ["Runner", "RunnerHost"]
