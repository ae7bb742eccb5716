"""The daemon's part of ``/metrics``: what it holds now, read at scrape time (nothing on the
hot path).  Registered on the engine's registry (``engine.metrics.registry``) while the
daemon runs, with the process collectors of ``prometheus_client`` (CPU, memory, open files;
Python version)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterator

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..actions.call import Functions
    from .catalog import Catalog
    from .runs import Runs

__all__ = ["DaemonCollector", "register"]


class DaemonCollector(Collector):
    """Gauges of one daemon: up, its workflows, its run queue, its isolate processes."""

    def __init__(self, catalog: Catalog, runs: Runs, functions: Callable[[], Functions | None],
                 serving: Callable[[], bool]) -> None:
        self.catalog = catalog
        self.runs = runs
        self.functions = functions
        self.serving = serving
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("isolde_daemon_up", "1 while the daemon serves, 0 once it is stopping.",
                                value=1 if self.serving() else 0)
        yield GaugeMetricFamily("isolde_daemon_start_time_seconds", "When the daemon started (Unix time).",
                                value=self.started)
        n_ns, n_wf, invalid = self.catalog.counts()
        yield GaugeMetricFamily("isolde_namespaces", "Namespaces served (folders of DIR).", value=n_ns)
        workflows = GaugeMetricFamily("isolde_workflows", "Workflows loaded, by validity.", labels=["valid"])
        workflows.add_metric(["true"], n_wf - invalid)
        workflows.add_metric(["false"], invalid)
        yield workflows
        queue = GaugeMetricFamily("isolde_queue_instances", "Instances of the run queue: pending (queued) and running.",
                                  labels=["state"])
        queue.add_metric(["pending"], self.runs.queued())
        queue.add_metric(["running"], self.runs.running)
        yield queue
        functions = self.functions()
        runners, processes = functions.isolates.counts() if functions is not None else (0, 0)
        yield GaugeMetricFamily("isolde_isolate_runners", "Isolate runners made (one per function definition).",
                                value=runners)
        yield GaugeMetricFamily("isolde_isolate_processes", "Isolate programs running (process functions).",
                                value=processes)


def register(registry: CollectorRegistry, collector: DaemonCollector) -> Callable[[], None]:
    """Add the daemon's collector and the process collectors; returns what removes them."""
    added: list[Collector] = [collector, ProcessCollector(registry=None), PlatformCollector(registry=None)]
    for c in added:
        registry.register(c)

    def unregister() -> None:
        for c in added:
            try:
                registry.unregister(c)
            except KeyError:
                pass

    return unregister
