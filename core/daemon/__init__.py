"""Daemon mode: ``isolde serve DIR`` turns a folder into a running workflow server (SPEC §6).

docs/daemon.md has the user's view.  The parts, each in its module:

- ``settings``: the ``[daemon]`` table, ``DaemonError``, the logfmt log format;
- ``layout``: what a path under DIR means (namespaces, workflows, drop files);
- ``watch``: watchdog events, debouncing, reading a file only once it is complete;
- ``catalog``: the workflows and namespaces served;
- ``sync``: folder -> catalog and store (workflows, renames, drop-file variables);
- ``records``: ``InstanceRecords`` (interface) and its LMDB implementation;
- ``runs``: the run queue and instance threads, records written with each state;
- ``recovery``: one daemon per data directory, taking over after a crash;
- ``triggers``: ``CronScheduler`` (interface), cron and event starts;
- ``backend``: ``DaemonServices``, what a plugin gives a daemon that is one worker of many;
- ``service``: the ``Daemon`` that wires them; ``serve``: the entry with signals.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use below: ``isolde.plugin`` reaches a few interfaces
    # here, and a plugin loading them should not pay for the whole daemon (watchdog, the API)
    from .catalog import Catalog, WorkflowEntry
    from .layout import Item, classify, guess_mime, workflow_id
    from .records import RECORD_OWNER, InstanceRecords, LmdbInstanceRecords
    from .instance_info import InstanceInfo
    from .runs import Runs
    from .serve import serve
    from .service import Daemon
    from .settings import DEFAULT_API, DaemonError, DaemonSettings, LogfmtFormatter, configure_logging
    from .triggers import CronScheduler, CronThread, event_filters

_WHERE = {
    "Catalog": "catalog", "WorkflowEntry": "catalog", "Item": "layout", "classify": "layout",
    "guess_mime": "layout", "workflow_id": "layout", "RECORD_OWNER": "records", "InstanceRecords": "records",
    "LmdbInstanceRecords": "records", "InstanceInfo": "instance_info", "Runs": "runs", "serve": "serve", "Daemon": "service",
    "DEFAULT_API": "settings", "DaemonError": "settings", "DaemonSettings": "settings",
    "LogfmtFormatter": "settings", "configure_logging": "settings", "CronScheduler": "triggers",
    "CronThread": "triggers", "event_filters": "triggers",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # also over the submodule of that name (``serve``)
    return value


__all__ = [
    "Catalog",
    "CronScheduler",
    "CronThread",
    "DEFAULT_API",
    "Daemon",
    "DaemonError",
    "DaemonSettings",
    "InstanceInfo",
    "InstanceRecords",
    "Item",
    "LmdbInstanceRecords",
    "LogfmtFormatter",
    "RECORD_OWNER",
    "Runs",
    "WorkflowEntry",
    "classify",
    "configure_logging",
    "event_filters",
    "guess_mime",
    "serve",
    "workflow_id",
]
