"""Every hook isolde calls, in one module (STYLE.md practice 1).

Plugins implement them with ``@hookimpl`` (``from isolde.plugin import hookimpl``), built-ins included: the
modules in ``isolde.plugins`` register exactly like a package exposing an entry
point in the ``isolde`` group.  Hooks are called with keyword arguments only;
pluggy checks implementations against these signatures when they register.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .config import Config
    from .daemon.backend import DaemonServices
    from .history import InstanceHistory
    from .isolates.runner import Runner
    from .locks import VariableLocks
    from .migrations import SchemaAdmin
    from .store import VariableStore
    from .workflow import StateType

hookspec = pluggy.HookspecMarker("isolde")
hookimpl = pluggy.HookimplMarker("isolde")
"""Marks a plugin's implementation of one of the hooks below."""


@hookspec
def isolde_state_types() -> list[type[StateType]]:
    """Return the state types this plugin provides.

    Each is a subclass of ``isolde.StateType`` with a ``name`` (the YAML
    ``type:``), a ``schema`` (its fields in the schema language of
    ``grammar/schema.lark``) and a ``run`` method.  Two plugins providing the same
    name is an error at engine start.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def isolde_declarations() -> str | None:
    """Return extra declarations in the schema language (``struct`` and ``function`` decls).

    For plugins that add function types or shared structures without adding a
    state type.  The text is parsed with the same grammar as a state's ``schema``.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def isolde_configure(config: Config) -> None:
    """Called once per engine after the configuration is loaded and before any workflow runs.

    A plugin reads its own settings here (``config.section("myplugin")`` gives the
    ``[plugins.myplugin]`` table) and raises ``isolde.ConfigError`` when they are wrong.
    """


@hookspec(firstresult=True)
def isolde_store(config: Config, data_dir: str) -> VariableStore | None:
    """Return a variable store for ``data_dir``, or None to leave it to the next plugin.

    The first non-None result wins; the built-in LMDB store answers last.  A store
    implements ``isolde.plugin.VariableStore`` and passes the conformance suite
    ``isolde.conformance.store`` (see docs/plugins.md).
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec(firstresult=True)
def isolde_daemon_services(config: Config, store: VariableStore) -> DaemonServices | None:
    """Return the services that make this daemon one worker of many, or None.

    Called by ``isolde serve`` once its store is open.  A plugin whose store is shared
    by several daemons (PostgreSQL) returns a ``isolde.plugin.DaemonServices``: instance
    records with claims and fencing, a cron scheduler that fires each tick once, an event
    bus that reaches every worker (docs/scale-out.md).  None keeps the single-host ones.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def isolde_isolate_runners() -> list[type[Runner]]:
    """Return the isolate runners this plugin provides.

    Each is a subclass of ``isolde.plugin.Runner`` whose ``types`` lists the
    function ``type`` values it serves (``process``, ``http``, ...) and whose
    ``call(request)`` performs one call of the isolate and returns its reply
    (``isolde.plugin.Response``); ``isolde.plugin.HttpIsolate`` already
    speaks Direktiv's HTTP protocol.  A runner is made with ``(host, function,
    base_dir)``: ``host`` (``isolde.plugin.RunnerHost``) gives it the ``[actions]``
    settings, the configuration and runners shared by key.  The fields of a new function type are
    declared separately, as ``function <type> {...}`` from
    ``isolde_declarations``.  A runner from an installed package may replace a
    built-in one (e.g. a container runner serving ``image:`` functions); two
    installed packages serving one type is an error at engine start.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec(firstresult=True)
def isolde_locks(config: Config, store: VariableStore, data_dir: str) -> VariableLocks | None:
    """Return the variable locks (``lock: true``) to use with ``store``, or None for the default.

    Called once per engine, on the first ``lock: true``, with the store already
    opened.  A store shared by processes on several hosts answers with locks that
    are exact across those hosts (the PostgreSQL plugin: advisory locks); the
    built-in byte-range locks on a file in ``data_dir`` answer last.  Locks pass
    the conformance suite ``isolde.conformance.locks``.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec(firstresult=True)
def isolde_schema_admin(config: Config, data_dir: str) -> SchemaAdmin | None:
    """Return the schema administration of the configured store, or None when it has none.

    ``isolde db status`` and ``isolde db upgrade`` use it: a plugin whose store
    keeps tables reports and applies its versioned migrations here, without
    opening the store.
    """
    raise NotImplementedError  # a specification: plugins implement it


@hookspec(firstresult=True)
def isolde_instance_history(config: Config, store: VariableStore) -> InstanceHistory | None:
    """Return where the instance history of an engine on ``store`` is kept, or None.

    Called once per engine, on the first use of its history, with the store already
    opened.  A plugin whose daemons keep their instance records in a table of their own
    (the PostgreSQL one: the records every ``isolde serve`` worker shares) answers with an
    ``isolde.plugin.InstanceHistory`` that also reads them (``get``, ``elsewhere``), so
    ``isolde instances`` and every worker's API see those instances; the first non-None
    answer wins, none keeps ``isolde.plugin.StoreHistory`` (the history in the store).
    """
    raise NotImplementedError  # a specification: plugins implement it


SPECS: ModuleType = sys.modules[__name__]
"""This module, as pluggy's ``add_hookspecs`` takes it."""
