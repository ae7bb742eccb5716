"""The plugin manager: built-ins and entry-point plugins registered through one path.

As in pytest, the built-in plugins are just module names in a tuple; they are
loaded with the same ``_register`` call as plugins found through the ``isolde``
entry-point group, and any of them can be disabled by name (``[plugins]
disable = [...]``).  Each ``Engine`` builds its own manager: no module globals.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

import pluggy

from .actions.compile import DECLARATIONS as ACTION_DECLARATIONS
from .config import Config
from .entrypoints import entry_points
from .hookspecs import SPECS
from .errors import ConfigError
from .isolates.runner import Runner
from .records import NEW, Record, typed_as_dataclass
from .schema import Schema, SchemaError, parse_declarations
from .validate import STATE_BASE, Validator
from .version import __version__
from .workflow import StateType

ENTRY_POINT_GROUP = "isolde"

BUILTIN_PLUGINS: tuple[str, ...] = ("getter", "setter", "noop", "switch", "error", "action", "runners", "delay", "validate", "events", "foreach", "parallel", "postgres")
"""Modules of ``isolde.plugins`` registered at every start, under these names."""


@typed_as_dataclass()
class PluginInfo(Record):
    __slots__ = ("name", "version", "source", "state_types", "declarations", "runners", "services")
    __match_args__ = ("name", "version", "source", "state_types", "declarations", "runners", "services")
    _fresh = {"state_types": list, "declarations": list, "runners": list, "services": list}
    name: str
    version: str
    source: str
    """"builtin" or the distribution name."""
    state_types: list[str]
    declarations: list[str]
    runners: list[str]
    """Function types served by its isolate runners."""
    services: list[str]
    """"variable store" when it answers isolde_store."""

    def __init__(self, name: str, version: str, source: str, state_types: list[str] = NEW,
                 declarations: list[str] = NEW, runners: list[str] = NEW, services: list[str] = NEW) -> None:
        self.name = name
        self.version = version
        self.source = source
        self.state_types = [] if state_types is NEW else state_types
        self.declarations = [] if declarations is NEW else declarations
        self.runners = [] if runners is NEW else runners
        self.services = [] if services is NEW else services


@typed_as_dataclass()
class Registry(Record):
    """What the plugins of one engine provide."""

    __slots__ = ("pm", "schema", "state_types", "plugins", "runners")
    __match_args__ = ("pm", "schema", "state_types", "plugins", "runners")
    _fresh = {"runners": dict}
    pm: pluggy.PluginManager
    schema: Schema
    state_types: dict[str, StateType]
    plugins: list[PluginInfo]
    runners: dict[str, type[Runner]]
    """Function type -> runner class."""

    def __init__(self, pm: pluggy.PluginManager, schema: Schema, state_types: dict[str, StateType],
                 plugins: list[PluginInfo], runners: dict[str, type[Runner]] = NEW) -> None:
        self.pm = pm
        self.schema = schema
        self.state_types = state_types
        self.plugins = plugins
        self.runners = {} if runners is NEW else runners


def _register(pm: pluggy.PluginManager, name: str, load: Callable[[], Any], info: list[PluginInfo], version: str, source: str) -> None:
    """Register one plugin, built-in or third-party alike, unless it is disabled.

    A plugin that fails to import or implements a hook wrongly is one clear error
    naming it (and how to switch it off), not a traceback."""
    if pm.is_blocked(name) or pm.has_plugin(name):
        return
    try:
        plugin = load()
    except Exception as exc:
        raise ConfigError(
            f"plugin '{name}' ({source}) failed to load: {type(exc).__name__}: {exc} "
            f"(fix or uninstall it, or add \"{name}\" to [plugins] disable)"
        ) from exc
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"plugin '{name}' ({source}) is invalid: {exc}") from exc
    info.append(PluginInfo(name, version, source))


def load_plugins(config: Config, extra: Sequence[Any] = ()) -> Registry:
    """Build one engine's plugin manager: built-ins, entry points, then ``extra`` objects.

    ``extra`` is how an embedding program adds plugins without packaging them
    (``Engine(plugins=[module_or_object])``); they register under their
    ``__name__`` (or class name) through the same path as the others."""
    pm = pluggy.PluginManager("isolde")
    pm.add_hookspecs(SPECS)
    for name in config.disabled_plugins:
        pm.set_blocked(name)
    info: list[PluginInfo] = []
    for name in BUILTIN_PLUGINS:
        _register(pm, name, _importer(f"isolde.plugins.{name}"), info, __version__, "builtin")
    known = set(BUILTIN_PLUGINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        known.add(ep.name)
        _register(pm, ep.name, ep.load, info, ep.version, ep.dist)
    for obj in extra:
        name = getattr(obj, "__name__", None) or type(obj).__name__
        known.add(name)
        _register(pm, name, _given(obj), info, getattr(obj, "__version__", "-"), "embedded")
    for name in config.disabled_plugins:
        if name not in known:
            from difflib import get_close_matches  # only for the hint of this error

            hint = get_close_matches(name, sorted(known), n=1)
            raise ConfigError(
                f"[plugins] disable names unknown plugin '{name}'"
                + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; installed: {', '.join(sorted(known))}"
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigError(f"{exc} (hooks are listed in docs/plugins.md; every name starts with isolde_)") from exc

    _check_requirements(pm, info)
    schema = Schema()
    schema.add(parse_declarations(STATE_BASE, "isolde core"))
    schema.add(parse_declarations(ACTION_DECLARATIONS, "isolde core"))
    by_name = {i.name: i for i in info}
    state_types: dict[str, StateType] = {}
    for impl in pm.hook.isolde_declarations.get_hookimpls():
        text = impl.function()
        if isinstance(text, str) and text:
            schema.add(parse_declarations(text, f"plugin '{impl.plugin_name}'"))
            by_name[impl.plugin_name].declarations.append(text)
    for impl in pm.hook.isolde_state_types.get_hookimpls():
        for cls in _listed(impl.function()):
            origin = f"plugin '{impl.plugin_name}'"
            if not (isinstance(cls, type) and issubclass(cls, StateType)):
                raise SchemaError(f"{origin}: isolde_state_types returned {cls!r}, not a StateType subclass")
            decls = parse_declarations(cls.schema, origin)
            if not any(d.kind == "state" and d.name == cls.name for d in decls):
                raise SchemaError(f"{origin}: schema of {cls.__name__} does not declare `state {cls.name} {{...}}`")
            if cls.name in state_types:
                raise SchemaError(f"state type '{cls.name}' is provided twice ({origin} and another plugin)")
            schema.add(decls)
            state_types[cls.name] = cls()
            by_name[impl.plugin_name].state_types.append(cls.name)
    schema.check(set(Validator.BUILTIN_TYPES))
    runners = _collect_runners(pm, by_name)
    for impl in pm.hook.isolde_store.get_hookimpls():
        if impl.plugin_name in by_name:
            by_name[impl.plugin_name].services.append("variable store")
    pm.hook.isolde_configure(config=config)
    return Registry(pm, schema, state_types, info, runners)


def _importer(module: str) -> Callable[[], Any]:
    return lambda: importlib.import_module(module)


def _given(obj: Any) -> Callable[[], Any]:
    return lambda: obj


def _listed(value: object) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _check_requirements(pm: pluggy.PluginManager, info: list[PluginInfo]) -> None:
    """A plugin lists the plugins it needs in a ``requires`` attribute (names, as in
    ``isolde plugins``); one that is disabled or missing is one clear error at start."""
    loaded = {i.name for i in info}
    for name, plugin in pm.list_name_plugin():
        for needed in getattr(plugin, "requires", ()) or ():
            if needed in loaded:
                continue
            why = "disabled in [plugins] disable" if pm.is_blocked(needed) else "not installed"
            raise ConfigError(
                f"plugin '{name}' needs plugin '{needed}', which is {why} "
                f"(enable '{needed}', or also disable '{name}')"
            )


def _collect_runners(pm: pluggy.PluginManager, by_name: dict[str, PluginInfo]) -> dict[str, type[Runner]]:
    """Function type -> runner class.  A third-party runner may replace a built-in
    one (a container runner taking over ``image:`` functions); two third-party
    runners for one type are an error."""
    runners: dict[str, type[Runner]] = {}
    origin_of: dict[str, str] = {}
    for impl in pm.hook.isolde_isolate_runners.get_hookimpls():  # registration order: built-ins first
        origin = f"plugin '{impl.plugin_name}'"
        builtin = by_name[impl.plugin_name].source == "builtin"
        for cls in _listed(impl.function()):
            if not (isinstance(cls, type) and issubclass(cls, Runner) and cls.types):
                raise SchemaError(f"{origin}: isolde_isolate_runners returned {cls!r}, not a Runner subclass with `types`")
            for ftype in cls.types:
                prev = origin_of.get(ftype)
                if prev is not None and not (prev.endswith("(builtin)") and not builtin):
                    raise SchemaError(f"function type '{ftype}' is served by two isolate runners ({prev} and {origin})")
                runners[ftype] = cls
                origin_of[ftype] = origin + (" (builtin)" if builtin else "")
                by_name[impl.plugin_name].runners.append(ftype)
    return runners
