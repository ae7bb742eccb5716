"""Every hook isolde calls, in one module (STYLE.md practice 1).

Plugins implement them with ``@isolde.hookimpl``, built-ins included: the
modules in ``isolde.plugins`` register exactly like a package exposing an entry
point in the ``isolde`` group.  Hooks are called with keyword arguments only;
pluggy checks implementations against these signatures when they register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .config import Config
    from .isolates import Runner
    from .states import StateType
    from .store.protocol import VariableStore

hookspec = pluggy.HookspecMarker("isolde")


@hookspec
def isolde_state_types() -> list[type[StateType]]:
    """Return the state types this plugin provides.

    Each is a subclass of ``isolde.StateType`` with a ``name`` (the YAML
    ``type:``), a ``schema`` (its fields in the schema language of
    ``grammar/schema.lark``) and a ``run`` method.  Two plugins providing the same
    name is an error at engine start.
    """


@hookspec
def isolde_declarations() -> str | None:
    """Return extra declarations in the schema language (``struct`` and ``function`` decls).

    For plugins that add function types or shared structures without adding a
    state type.  The text is parsed with the same grammar as a state's ``schema``.
    """


@hookspec
def isolde_configure(config: Config) -> None:
    """Called once per engine after the configuration is loaded and before any workflow runs.

    A plugin reads its own settings here (``config.section("myplugin")`` gives the
    ``[plugins.myplugin]`` table) and raises ``isolde.ConfigError`` when they are wrong.
    """


@hookspec(firstresult=True)
def isolde_store(config: Config, data_dir: str) -> VariableStore | None:
    """Return a variable store for ``data_dir``, or None to leave it to the next plugin.

    The first non-None result wins; the built-in LMDB store answers last.  A
    store implements ``isolde.store.VariableStore`` (docs/plugins.md) and passes
    ``isolde.conformance.store.StoreConformance``.
    """


@hookspec
def isolde_isolate_runners() -> list[type[Runner]]:
    """Return the isolate runners this plugin provides.

    Each is a subclass of ``isolde.isolates.Runner`` whose ``types`` lists the
    function ``type`` values it serves (``process``, ``http``, ...) and whose
    ``call(request)`` performs one call of the isolate and returns its reply
    (``isolde.isolates.Response``); ``isolde.isolates.HttpIsolate`` already
    speaks Direktiv's HTTP protocol.  The fields of a new function type are
    declared separately, as ``function <type> {...}`` from
    ``isolde_declarations``.  A runner from an installed package may replace a
    built-in one (e.g. a container runner serving ``image:`` functions); two
    installed packages serving one type is an error at engine start.
    """
