"""Prometheus metrics of one engine (``engine.metrics``), served by ``isolde serve`` at ``/metrics``.

Each engine has its own ``CollectorRegistry`` (never the process-global one), so several
engines or daemons in one process, and tests, never mix their numbers.  ``Metrics`` is an
``Observer`` (``isolde.observers``): the instance loop, the context and the action
machinery tell it what happened, and it counts.  The label children are cached per label
value, so a state costs one dict lookup and one histogram observation (about 1 µs).

The metric names (all prefixed ``isolde_``) are documented in docs/operating.md.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from .observers import Observer
from .version import __version__

__all__ = ["CANCELLED_CODES", "Metrics", "exposition"]

CANCELLED_CODES: Final = frozenset({"isolde.daemon.cancelled", "isolde.cancelled", "direktiv.cancels.api"})
"""Error codes of an instance that was cancelled (the API, a daemon stop, the engine closing)
rather than failing: it counts under ``status="cancelled"``."""

STATE_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0)
ACTION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0, 600.0)
COMMIT_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
INSTANCE_BUCKETS: Final = (0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 86400.0)


class Metrics(Observer):
    """The engine's metrics: ``registry`` holds them (add your own collectors to it, or
    serve it with ``prometheus_client``); ``exposition()`` renders it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else CollectorRegistry()
        Gauge("isolde_build_info", "The isolde version (value 1).", ["version"], registry=reg).labels(__version__).set(1)
        self.started = Counter("isolde_instances_started", "Instances started (subflow children included).",
                               ["namespace", "workflow"], registry=reg)
        self.ended = Counter("isolde_instances_ended", "Instances ended, by status: complete, failed or cancelled.",
                             ["namespace", "workflow", "status"], registry=reg)
        self.running = Gauge("isolde_instances_running", "Instances running in this engine now.", registry=reg)
        self.instance_seconds = Histogram("isolde_instance_duration_seconds", "Instance run time, start to end.",
                                          buckets=INSTANCE_BUCKETS, registry=reg)
        self.state_seconds = Histogram("isolde_state_duration_seconds",
                                       "Time in one state (its transform and commit included), by state type.",
                                       ["type"], buckets=STATE_BUCKETS, registry=reg)
        self.action_seconds = Histogram("isolde_action_duration_seconds",
                                        "One action call, its retries included, by function id.",
                                        ["function"], buckets=ACTION_BUCKETS, registry=reg)
        self.action_errors = Counter("isolde_action_errors", "Action calls that ended with an error, by function id and code.",
                                     ["function", "code"], registry=reg)
        self.commit_seconds = Histogram("isolde_store_commit_seconds",
                                        "Committing a state's variable writes (durable by default; group commits "
                                        "included).", buckets=COMMIT_BUCKETS, registry=reg)
        self._states: dict[str, Any] = {}
        self._actions: dict[str, Any] = {}
        self._started: dict[tuple[str, str], Any] = {}

    # -- observer ------------------------------------------------------------------
    def instance_started(self, ctx: Any) -> None:
        key = (ctx.namespace, ctx.workflow.id)
        child = self._started.get(key)
        if child is None:
            child = self._started[key] = self.started.labels(*key)
        child.inc()
        self.running.inc()

    def instance_ended(self, ctx: Any, status: str, error_code: str | None, seconds: float) -> None:
        if status == "failed" and error_code in CANCELLED_CODES:
            status = "cancelled"
        self.ended.labels(ctx.namespace, ctx.workflow.id, status).inc()
        self.running.dec()
        self.instance_seconds.observe(seconds)

    def state_done(self, ctx: Any, state_type: str, seconds: float) -> None:
        child = self._states.get(state_type)
        if child is None:
            child = self._states[state_type] = self.state_seconds.labels(state_type)
        child.observe(seconds)

    def action_done(self, ctx: Any, function: str, seconds: float, error_code: str | None) -> None:
        child = self._actions.get(function)
        if child is None:
            child = self._actions[function] = self.action_seconds.labels(function)
        child.observe(seconds)
        if error_code is not None:
            self.action_errors.labels(function, error_code).inc()

    def committed(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)

    # -- output --------------------------------------------------------------------
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the text format the ``Accept`` header asks for (Prometheus text
        0.0.4 by default, OpenMetrics when asked): ``(body, content type)``."""
        return exposition(self.registry, accept)


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
