"""The per-engine hub of isolate runners: one runner per distinct function definition,
background (``async``) calls, and cancelling calls under way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import IsoldeError, WorkflowError
from .runner import Runner
from .settings import ActionSettings

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from ..config import Config


class Isolates:
    """Runners by function definition (the engine's :class:`RunnerHost`).

    ``runner_types`` maps a function ``type`` to the runner class serving it (from the
    ``isolde_isolate_runners`` hook).  At close, background calls are waited for first
    (runners still usable), then runners (and their processes) close in reverse order
    of creation.
    """

    def __init__(self, config: Config, runner_types: Mapping[str, type[Runner]]) -> None:
        self._config = config
        self._settings = ActionSettings.from_config(config)
        self._types = runner_types
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = True
        self._closed = False

    @property
    def settings(self) -> ActionSettings:
        return self._settings

    @property
    def config(self) -> Config:
        return self._config

    def runner(self, function: Mapping[str, Any], base_dir: Path) -> Runner:
        """The runner for a function definition, made on first use."""
        ftype = str(function.get("type") or "isolated")
        cls = self._types.get(ftype)
        if cls is None:
            known = ", ".join(sorted(self._types)) or "none"
            raise WorkflowError(
                "isolde.function.unsupported",
                f"no isolate runner serves function type '{ftype}' (function '{function.get('id', '?')}'); "
                f"installed runners serve: {known} (see `isolde plugins`)",
            )
        key = cls.key(function, base_dir)
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        return self.shared(key, lambda: cls(self, function, base_dir))

    def shared(self, key: str, factory: Callable[[], Runner]) -> Runner:
        """The runner kept under ``key``, made by ``factory`` on first use
        (image mappings share one process with an equal ``process`` function this way)."""
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        with self._lock:
            if self._closed:
                raise IsoldeError("this Engine is closed")
            runner = self._runners.get(key)
            if runner is None:
                runner = factory()
                self._runners[key] = runner
            return runner

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` in the background (``async`` actions); the engine waits for it at close."""
        with self._lock:
            if not self._accepting:
                raise IsoldeError("this Engine is closing: no new background actions")
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="isolde-async")
            return self._executor.submit(fn)

    def cancel_instance(self, instance_id: str | None) -> None:
        """Cancel calls under way (``DELETE``): of one instance (a foreach or parallel state
        was decided without them), or all of them (``None``: the engine is stopping)."""
        with self._lock:
            runners = list(self._runners.values())
        for runner in runners:
            cancel = getattr(runner, "cancel_inflight", None)
            if cancel is not None:
                cancel(instance_id)

    def counts(self) -> tuple[int, int]:
        """``(runners, isolate processes running)``: a runner that owns a program keeps
        it as its ``process`` (an ``IsolateProcess``), as the built-in ``process`` runner does."""
        from .process import IsolateProcess

        with self._lock:
            runners = list(self._runners.values())
        procs = [getattr(r, "process", None) for r in runners]
        return len(runners), sum(1 for p in procs if isinstance(p, IsolateProcess) and p.running)

    def cancel_all(self) -> None:
        self.cancel_instance(None)

    def close(self) -> None:
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            executor = self._executor
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            runners = list(self._runners.values())
            self._runners.clear()
        errors: list[BaseException] = []
        for runner in reversed(runners):
            try:
                runner.close()
            except Exception as exc:  # keep closing the others
                errors.append(exc)
        if errors:
            raise errors[0]


__all__ = ["Isolates"]
