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
- ``service``: the ``Daemon`` that wires them; ``serve``: the entry with signals.
"""

from __future__ import annotations

from .catalog import Catalog, WorkflowEntry
from .layout import Item, classify, guess_mime, workflow_id
from .records import RECORD_OWNER, InstanceRecords, LmdbInstanceRecords
from .runs import InstanceInfo, Runs
from .serve import serve
from .service import Daemon
from .settings import DEFAULT_API, DaemonError, DaemonSettings, LogfmtFormatter, configure_logging
from .triggers import CronScheduler, CronThread, event_filters

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
