"""Plugin machinery, tested the way plugins reach isolde: through the ``isolde`` entry-point group.

Test plugins are installed as real (tiny) distributions: a module plus a
``*.dist-info`` folder with ``entry_points.txt``, on a fresh ``sys.path`` entry
(and ``PYTHONPATH`` for the CLI).  That is exactly what ``pip install`` of a
third-party package leaves behind, so the engine finds them with no test hook.

Meta-tests in the style of datasette's: every hook spec has a docstring, is
listed in docs/plugins.md and has a ``test_hook_<name>`` here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
import textwrap
import uuid
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

import isolde
from helpers import install_plugin
from isolde import hookspecs
from isolde.registry import BUILTIN_PLUGINS

if TYPE_CHECKING:
    from conftest import Cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

Install = Callable[..., Path]

try:
    CHECKSUM_VERSION: str | None = distribution("isolde-checksum").version
except PackageNotFoundError:  # pragma: no cover - depends on the environment
    CHECKSUM_VERSION = None
needs_checksum = pytest.mark.skipif(
    CHECKSUM_VERSION is None, reason="contrib plugin not installed (pip install ./contrib/isolde-checksum)"
)

HOOKS = sorted(
    name for name, fn in vars(hookspecs).items() if name.startswith("isolde_") and hasattr(fn, "isolde_spec")
)


# -- installing test plugins -------------------------------------------------------------------

@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(name, source, version="1.0")`` installs a plugin distribution; returns its site dir.

    Each call gets its own site directory (importlib.metadata caches a
    directory's listing by mtime) and a unique module name, removed from
    ``sys.modules`` afterwards so no test sees another's plugin.
    """
    modules: list[str] = []

    def _install(name: str, source: str, version: str = "1.0") -> Path:
        module = "isolde_test_" + re.sub(r"\W", "_", name) + "_" + uuid.uuid4().hex[:8]
        site = install_plugin(tmp_path / f"site-{module}", module, textwrap.dedent(source), name, version)
        monkeypatch.syspath_prepend(str(site))
        modules.append(module)
        return site

    yield _install
    for module in modules:
        sys.modules.pop(module, None)


def cli_with(cli: Cli, *sites: Path) -> Cli:
    cli.env["PYTHONPATH"] = ":".join(str(s) for s in sites)
    return cli


def make_engine(tmp_path: Path, config: dict[str, Any] | None = None) -> isolde.Engine:
    return isolde.Engine(data_dir=tmp_path / "data", config=config or {})


GREETER = '''
    """A plugin using three hooks: a state type, shared declarations, and its own settings."""
    from __future__ import annotations

    from isolde import ConfigError, StateType, hookimpl


    class Greet(StateType):
        name = "greet"
        schema = """
        state greet "Greets people." {
            people!: [person]   "Whom to greet (struct declared by isolde_declarations)."
        }
        """

        def run(self, state, data, ctx):
            greeting = ctx.config.section("greeter").get("greeting", "Hello")
            return {**data, "greetings": [f"{greeting} {p['name']}" for p in state.fields["people"]]}


    @hookimpl
    def isolde_state_types():
        return [Greet]


    @hookimpl
    def isolde_declarations():
        return """
        struct person { name!: string "Who." }
        function echo "A function type that is only declared." { text!: string }
        """


    @hookimpl
    def isolde_configure(config):
        greeting = config.section("greeter").get("greeting", "Hello")
        if not isinstance(greeting, str):
            raise ConfigError(f"[plugins.greeter] greeting must be a string, got {greeting!r}")
'''

GREET_WF = """\
states:
- id: hi
  type: greet
  people:
  - name: Ada
  - name: Bob
"""


# -- meta-tests ----------------------------------------------------------------------------------

def test_hookspecs_exist() -> None:
    assert {"isolde_state_types", "isolde_declarations", "isolde_configure", "isolde_store"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and len(doc) > 40, f"hook {hook} needs a docstring that says what it is for"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    text = (REPO / "docs" / "plugins.md").read_text()
    assert f"`{hook}" in text, f"hook {hook} is not listed in docs/plugins.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_tested(hook: str) -> None:
    """A hook's test is named ``test_hook_<hook>``; it may live in any file under tests/."""
    pattern = re.compile(rf"^def test_hook_{hook}\(", re.MULTILINE)
    hits = [p.name for p in (REPO / "tests").rglob("test_*.py") if pattern.search(p.read_text())]
    assert hits, f"no test_hook_{hook} under tests/: every hook needs a test that exercises it"


def test_builtin_state_types_are_documented(engine: isolde.Engine) -> None:
    """Each built-in state type and each of its fields is named in one docs page."""
    pages = {p.name: p.read_text() for p in (REPO / "docs").glob("*.md")}
    for info in engine.registry.plugins:
        if info.source != "builtin":
            continue
        for state in info.state_types:
            fields = engine.registry.schema.states[state].fields
            hits = [name for name, text in pages.items() if f"`{state}`" in text and all(f"`{f}`" in text for f in fields)]
            assert hits, f"state type '{state}' (fields {sorted(fields)}) is not documented in docs/*.md"


def test_every_limit_is_documented() -> None:
    """docs/configuration.md documents every [limits] key with its default."""
    from isolde.config import DEFAULT_LIMITS

    text = (REPO / "docs" / "configuration.md").read_text()
    for key, default in DEFAULT_LIMITS.items():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |")), None)
        assert row is not None, f"[limits] {key} is not documented in docs/configuration.md"
        assert f"`{default}`" in row or f"`{default:g}`" in row or f"`{float(default)}`" in row, (key, row)


# -- each hook ---------------------------------------------------------------------------------------

def test_hook_isolde_state_types(install: Install, tmp_path: Path) -> None:
    install("greeter", GREETER)
    with make_engine(tmp_path) as engine:
        result = engine.run(GREET_WF)
        assert result.ok, result.error
        assert result.output == {"greetings": ["Hello Ada", "Hello Bob"]}
        problems = [str(d) for d in engine.validate(GREET_WF.replace("type: greet", "type: gret"))]
        assert len(problems) == 1
        assert "unknown state type 'gret' (did you mean 'greet'?)" in problems[0]
        assert "greet" in problems[0].split("available:")[1]


def test_hook_isolde_declarations(install: Install, tmp_path: Path) -> None:
    """Structs one plugin declares are usable in state schemas; function decls validate `functions`."""
    functions = "functions:\n- id: f\n  type: echo\n  {field}: hi\n"
    with make_engine(tmp_path) as engine:  # not installed yet: no function type 'echo'
        problems = [str(d) for d in engine.validate(functions.format(field="text") + GREET_WF)]
        assert any("unknown function type 'echo'" in p for p in problems)
    install("greeter", GREETER)
    with make_engine(tmp_path) as engine:
        wf = engine.load(functions.format(field="text") + GREET_WF)
        assert wf.functions == {"f": {"id": "f", "type": "echo", "text": "hi"}}
        problems = [str(d) for d in engine.validate(functions.format(field="txt") + GREET_WF)]
        assert any("unknown field 'txt' in function type 'echo' (did you mean 'text'?)" in p for p in problems)
        problems = [str(d) for d in engine.validate(GREET_WF.replace("name: Bob", "nam: Bob"))]
        assert any("state 'hi'" in p and "unknown field 'nam' in person (did you mean 'name'?)" in p for p in problems)


def test_hook_isolde_configure(install: Install, tmp_path: Path) -> None:
    install("greeter", GREETER)
    with make_engine(tmp_path, {"plugins": {"greeter": {"greeting": "Hi"}}}) as engine:
        assert engine.run(GREET_WF).output == {"greetings": ["Hi Ada", "Hi Bob"]}
    with pytest.raises(isolde.ConfigError, match=r"\[plugins.greeter\] greeting must be a string"):
        make_engine(tmp_path, {"plugins": {"greeter": {"greeting": 3}}})


STORE_PLUGIN = '''
    """Puts the variable store in a subdirectory when [plugins.altstore] asks for it."""
    import os

    from isolde import hookimpl
    from isolde.store import LmdbStore


    @hookimpl
    def isolde_store(config, data_dir):
        subdir = config.section("altstore").get("subdir")
        if not subdir:
            return None  # leave it to the next plugin (in the end the built-in store)
        return LmdbStore(os.path.join(data_dir, subdir), durable=config.durable)
'''


def test_hook_isolde_store(install: Install, tmp_path: Path) -> None:
    install("altstore", STORE_PLUGIN)
    counter = EXAMPLES / "counter.yaml"
    data = tmp_path / "data"
    with make_engine(tmp_path, {"plugins": {"altstore": {"subdir": "alt"}}}) as engine:
        assert engine.run(counter).output == {"var": {"x": 1}}
        assert engine.run(counter).output == {"var": {"x": 2}}
    assert (data / "alt" / "data.mdb").is_file()
    assert not (data / "data.mdb").exists()
    with make_engine(tmp_path) as engine:  # the plugin answers None: the built-in store is used
        assert engine.run(counter).output == {"var": {"x": 1}}
    assert (data / "data.mdb").is_file()
    with make_engine(tmp_path, {"plugins": {"altstore": {"subdir": "alt"}}}) as engine:
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 2


RUNNER_PLUGIN = '''
    """A function type `upper` served by an in-process runner."""
    from isolde import hookimpl
    from isolde.plugin import Response, Runner


    class Upper(Runner):
        types = ("upper",)
        uses_folder = False  # no action folder, no sidecar: it runs in-process

        def call(self, request):
            return Response.of({"up": request.input["text"].upper()})


    @hookimpl
    def isolde_declarations():
        return 'function upper "Upper-cases .text of the input." { }'


    @hookimpl
    def isolde_isolate_runners():
        return [Upper]
'''

RUNNER_WF = """\
functions:
- id: up
  type: upper
states:
- id: call
  type: action
  action:
    function: up
    input: 'jq({text: .name})'
  transform: 'jq({up: .return.up})'
"""


@pytest.mark.skipif("isolde_isolate_runners" not in HOOKS, reason="no isolate runner hook in this version")
def test_hook_isolde_isolate_runners(install: Install, tmp_path: Path, cli: Cli) -> None:
    site = install("upper", RUNNER_PLUGIN)
    with make_engine(tmp_path) as engine:
        result = engine.run(RUNNER_WF, input={"name": "Ada"})
        assert result.ok, result.error
        assert result.output == {"up": "ADA"}
    assert "upper" in plugin_lines(cli_with(cli, site)("plugins").stdout)


# -- `isolde plugins`, disabling ---------------------------------------------------------------------

def plugin_lines(stdout: str) -> dict[str, list[str]]:
    return {line.split("\t")[0]: line.split("\t") for line in stdout.splitlines() if line.strip()}


def test_cli_plugins_lists_builtins(cli: Cli) -> None:
    done = cli("plugins")
    assert done.code == 0, done.stderr
    lines = plugin_lines(done.stdout)
    for name in BUILTIN_PLUGINS:
        assert name in lines, f"built-in plugin {name} missing from `isolde plugins`"
        assert lines[name][1:3] == [isolde.__version__, "builtin"]
    assert "state getter" in lines["getter"][3]


@needs_checksum
def test_cli_plugins_lists_contrib_plugin(cli: Cli) -> None:
    line = plugin_lines(cli("plugins").stdout)["checksum"]
    assert line[1] == CHECKSUM_VERSION and line[2] == "isolde-checksum" and "state checksum" in line[3]


def test_cli_plugins_lists_third_party_version(cli: Cli, install: Install) -> None:
    site = install("greeter", GREETER, version="2.5.1")
    line = plugin_lines(cli_with(cli, site)("plugins").stdout)["greeter"]
    assert line[1] == "2.5.1" and "state greet" in line[3]


@needs_checksum
def test_disabling_a_plugin_removes_its_state_type(cli: Cli, tmp_path: Path) -> None:
    wf = tmp_path / "hash.yaml"
    wf.write_text("states:\n- id: h\n  type: checksum\n  value: abc\n")
    assert cli("validate", str(wf)).code == 0
    (tmp_path / "isolde.toml").write_text('[plugins]\ndisable = ["checksum"]\n')
    listing = plugin_lines(cli("plugins").stdout)
    assert listing["checksum"][1:] == ["-", "disabled"]
    done = cli("validate", str(wf))
    assert done.code == 2
    assert f"{wf}:3:9: state 'h': unknown state type 'checksum'" in done.stderr
    available = done.stderr.split("available: ")[1].split(" (see")[0].split(", ")
    assert "getter" in available and "checksum" not in available
    assert "see `isolde plugins`" in done.stderr


def test_disabling_a_builtin(tmp_path: Path) -> None:
    wf = "states:\n- id: s\n  type: switch\n  conditions: []\n"
    with make_engine(tmp_path, {"plugins": {"disable": ["switch"]}}) as engine:
        (problem,) = engine.validate(wf)
        assert "unknown state type 'switch'" in str(problem)
        assert "switch" not in str(problem).split("available:")[1]
        misspelt = engine.validate(wf.replace("type: switch", "type: seter"))
        assert "(did you mean 'setter'?)" in str(misspelt[0])


def test_disabling_an_unknown_plugin_is_a_config_error(tmp_path: Path, cli: Cli) -> None:
    with pytest.raises(isolde.ConfigError, match=r"unknown plugin 'gettr' \(did you mean 'getter'\?\); installed: .*noop"):
        make_engine(tmp_path, {"plugins": {"disable": ["gettr"]}})
    (tmp_path / "isolde.toml").write_text('[plugins]\ndisable = ["nosuch"]\n')
    (tmp_path / "counter.yaml").write_text((EXAMPLES / "counter.yaml").read_text())  # examples/ has its own isolde.toml
    done = cli("run", str(tmp_path / "counter.yaml"))
    assert done.code == 2
    assert done.stderr.startswith("isolde: error: ") and "unknown plugin 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_disable_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(isolde.ConfigError, match=r"\[plugins\] disable must be a list of plugin names"):
        make_engine(tmp_path, {"plugins": {"disable": "checksum"}})


# -- broken plugins fail loudly at engine start, naming the plugin ---------------------------------------

BROKEN = {
    "malformed": 'state malformed "x" { value!: }',
    "typo": 'state typo "x" { value!: strnig }',
    "misnamed": 'state something_else "x" { }',
}


@pytest.mark.parametrize(("name", "expected"), [
    ("malformed", r"plugin 'malformed'.*line 1"),
    ("typo", r"plugin 'typo': state typo: field 'value' uses unknown type 'strnig'"),
    ("misnamed", r"plugin 'misnamed': schema of Broken does not declare `state misnamed"),
])
def test_bad_schema_fails_at_engine_start(install: Install, tmp_path: Path, cli: Cli, name: str, expected: str) -> None:
    site = install(name, f'''
        from isolde import StateType, hookimpl

        class Broken(StateType):
            name = "{name}"
            schema = {BROKEN[name]!r}

        @hookimpl
        def isolde_state_types():
            return [Broken]
    ''')
    with pytest.raises(isolde.IsoldeError, match=expected):
        make_engine(tmp_path)
    done = cli_with(cli, site)("validate", str(EXAMPLES / "counter.yaml"))
    assert done.code == 2
    assert f"plugin '{name}'" in done.stderr and "Traceback" not in done.stderr


def test_bad_declarations_and_clashes_fail_at_engine_start(install: Install, tmp_path: Path) -> None:
    install("decls", '''
        from isolde import hookimpl

        @hookimpl
        def isolde_declarations():
            return "struct thing { x!: nosuchtype }"
    ''')
    with pytest.raises(isolde.IsoldeError, match=r"plugin 'decls': struct thing: field 'x' uses unknown type 'nosuchtype'"):
        make_engine(tmp_path)


def test_state_type_provided_twice(install: Install, tmp_path: Path) -> None:
    install("dupnoop", '''
        from isolde import StateType, hookimpl

        class Noop(StateType):
            name = "noop"
            schema = 'state noop "Another noop." { }'

            def run(self, state, data, ctx):
                return {**data, "replaced": True}

        @hookimpl
        def isolde_state_types():
            return [Noop]
    ''')
    with pytest.raises(isolde.IsoldeError, match=r"state type 'noop' is provided twice \(plugin 'dupnoop'"):
        make_engine(tmp_path)
    with make_engine(tmp_path, {"plugins": {"disable": ["noop"]}}) as engine:  # replacing a built-in
        assert engine.run("states:\n- id: a\n  type: noop\n").output == {"replaced": True}


def test_misspelt_hook_fails_at_engine_start(install: Install, tmp_path: Path) -> None:
    install("misspelt", '''
        from isolde import hookimpl

        @hookimpl
        def isolde_state_type():
            return []
    ''')
    with pytest.raises(Exception, match="isolde_state_type"):
        make_engine(tmp_path)


# -- one plugin manager per engine ------------------------------------------------------------------------

TICK = '''
    import itertools

    from isolde import StateType, hookimpl


    class Tick(StateType):
        name = "tick"
        schema = 'state tick "Counts its runs, per engine." { }'

        def run(self, state, data, ctx):
            counter = ctx.resource("tick-test", itertools.count)  # per engine, closed with it
            return {"tick": next(counter) + 1}


    @hookimpl
    def isolde_state_types():
        return [Tick]
'''


def test_engines_have_separate_plugin_managers(install: Install, tmp_path: Path) -> None:
    install("tick", TICK)
    wf = "states:\n- id: t\n  type: tick\n"
    with make_engine(tmp_path / "a", {"plugins": {"disable": ["tick"]}}) as off, make_engine(tmp_path / "b") as one, \
            make_engine(tmp_path / "c") as two:
        assert off.registry.pm is not one.registry.pm is not two.registry.pm
        assert "unknown state type 'tick'" in str(off.validate(wf)[0])
        assert [one.run(wf).output["tick"] for _ in range(3)] == [1, 2, 3]
        assert two.run(wf).output == {"tick": 1}
        assert off.validate(wf) and not one.validate(wf)  # the first engine's blocking did not leak


# -- the contrib example ---------------------------------------------------------------------------

@needs_checksum
def test_checksum_example(cli: Cli) -> None:
    example = str(EXAMPLES / "checksum.yaml")
    first = cli("run", example, "--input", '{"order": 42}')
    assert first.code == 0, first.stderr
    assert first.json["changed"] is True
    digest = first.json["digest"]
    assert digest == hashlib.sha256(b'{"order":42}').hexdigest()
    assert cli("run", example, "--input", '{"order": 42}').json == {"digest": digest, "changed": False}
    assert cli("run", example, "--input", '{"order": 43}').json["changed"] is True
    assert json.loads(cli("vars", "get", "lastDigest", "-w", "checksum").stdout) != digest


class _Shout(isolde.StateType):
    name = "shout"
    schema = """
    state shout "Upper-cases a string." {
        text!: jx  "What to shout."
    }
    """

    def run(self, state: Any, data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {**data, "shout": str(state.fields["text"].eval(data)).upper()}


class _EmbeddedPlugin:
    """An embedder's plugin object, registered with Engine(plugins=[...])."""

    __name__ = "shouting"

    @isolde.hookimpl
    def isolde_state_types(self) -> list[type[isolde.StateType]]:
        return [_Shout]


def test_engine_plugins_argument_registers_embedded_plugins(tmp_path: Path) -> None:
    with isolde.Engine(data_dir=tmp_path / "d", config={}, plugins=[_EmbeddedPlugin()]) as engine:
        assert "shout" in engine.registry.state_types
        assert any(p.name == "shouting" and p.source == "embedded" for p in engine.registry.plugins)
        result = engine.run("states:\n- id: a\n  type: shout\n  text: jq(.who)\n", {"who": "ada"})
        assert result.output == {"who": "ada", "shout": "ADA"}
    with isolde.Engine(data_dir=tmp_path / "d", config={"plugins": {"disable": ["shouting"]}}, plugins=[_EmbeddedPlugin()]) as engine:
        assert "shout" not in engine.registry.state_types
    with isolde.Engine(data_dir=tmp_path / "d", config={}) as engine:  # no leak between engines
        assert "shout" not in engine.registry.state_types


class _MisspeltHook:
    __name__ = "misspelt"

    @isolde.hookimpl
    def isolde_stat_types(self) -> list[Any]:
        return []


def test_a_misspelt_hook_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(isolde.ConfigError, match="isolde_stat_types"):
        isolde.Engine(data_dir=tmp_path / "d", config={}, plugins=[_MisspeltHook()])


def test_value_classes_of_the_plugin_api_behave_as_dataclasses() -> None:
    """The value classes a plugin gets are written out (no ``dataclasses`` at start-up), yet
    ``dataclasses`` sees them as the dataclasses they were: fields, replace, asdict, a
    ``@dataclass`` subclass, frozen fields, equality by field, pickling."""
    import dataclasses
    import pickle

    from isolde.plugin import ActionRequest, ActionSpec, EventFilter, Put, Ref, Response
    from isolde.history.settings import HistorySettings

    result = isolde.Result("i1", "failed", error=isolde.ErrorInfo("x.y", "broke", "s1"))
    assert dataclasses.is_dataclass(result)
    assert [f.name for f in dataclasses.fields(result)] == [
        "instance_id", "status", "output", "error", "log", "workflow", "namespace", "states"]
    assert dataclasses.asdict(result)["error"] == {"code": "x.y", "message": "broke", "state": "s1"}
    again = dataclasses.replace(result, status="complete", error=None)
    assert (again.status, again.instance_id, again.error, result.status) == ("complete", "i1", None, "failed")
    assert result == pickle.loads(pickle.dumps(result)) and result != again
    assert isolde.Result("a", "complete").log is not isolde.Result("a", "complete").log  # a fresh list each
    assert repr(isolde.ErrorInfo("c", "m")) == "ErrorInfo(code='c', message='m', state=None)"
    with pytest.raises(TypeError):
        hash(result)  # mutable, compared by value: not hashable (as @dataclass)

    settings = HistorySettings(keep=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.keep = 6  # type: ignore[misc]
    assert settings == HistorySettings(keep=5) and hash(settings) == hash(HistorySettings(keep=5))
    assert dataclasses.replace(settings, keep=7).keep == 7 and settings.keep == 5
    assert pickle.loads(pickle.dumps(EventFilter("t", {"source": "a"}))) == EventFilter("t", {"source": "a"})

    spec = ActionSpec("f", {}, None, (), ())
    assert spec.extra == {} and spec.extra is not ActionSpec("f", {}, None, (), ()).extra
    assert dataclasses.replace(spec, retry_max=3).retry_max == 3

    @dataclasses.dataclass
    class Timed(Response):  # a runner's reply with a field of its own
        seconds: float = 0.0

    timed = Timed(200, {"a": "b"}, b"{}", "OK", seconds=1.5)
    assert [f.name for f in dataclasses.fields(timed)][-2:] == ["value", "seconds"]
    assert (timed.status, timed.headers, timed.seconds) == (200, {"a": "b"}, 1.5)
    bare = Timed(204)  # the fields' defaults as the base gives them: a fresh dict each
    assert bare.headers == {} and bare.headers is not Timed(204).headers and bare.body == b""

    @dataclasses.dataclass(eq=False)
    class Tracked(ActionRequest):  # a request with a field of its own: deadline and cancel event as before
        trace: str = ""

    tracked = Tracked(b"{}", {}, "a1", "ns", "wf", "i1", 1, 30.0, {}, trace="t")
    assert 0 < tracked.remaining() <= 30.0 and not tracked.cancelled.is_set() and tracked.trace == "t"
    assert tracked.cancelled is not Tracked(b"{}", {}, "a2", "ns", "wf", "i1", 1, 30.0, {}).cancelled

    @dataclasses.dataclass(frozen=True)
    class Tagged(Put):
        tag: str = ""

    tagged = Tagged(Ref("ns", "namespace", "", "k"), b"1", "application/json", tag="t")
    assert tagged.ref.key == "k" and tagged.tag == "t"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tagged.tag = "u"  # type: ignore[misc]


def test_a_run_from_the_command_line_does_not_load_what_it_does_not_use(tmp_path: Path) -> None:
    """Start-up cost (docs/performance.md, cold CLI): ``isolde run`` of the counter makes no
    class with ``dataclasses``; ``isolde vars list`` loads no click either (unless a
    third-party plugin is installed: contrib's checksum plugin is, here).  A fresh
    interpreter is the only place to see what a start imports."""
    import os
    import subprocess

    probe = textwrap.dedent("""
        import json, sys
        from isolde.cli_entry import main
        sys.argv = ["isolde", *sys.argv[1:]]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("LOADED", json.dumps(sorted(m for m in ("dataclasses", "click") if m in sys.modules)))
    """)
    env = {**os.environ, "ISOLDE_DATA_DIR": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("ISOLDE_CONFIG", None)

    def loaded(*args: str) -> list[str]:
        out = ""
        for _ in range(2):  # the first start after an install reads the entry points (cached)
            out = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, env=env, check=True,
                                 capture_output=True, text=True).stdout
        return json.loads(out.rsplit("LOADED ", 1)[1])

    assert loaded("run", str(EXAMPLES / "counter.yaml")) == ["click"]
    with isolde.Engine(data_dir=tmp_path / "probe") as engine:
        third_party = any(p.source != "builtin" for p in engine.registry.plugins)
    assert loaded("vars", "list") == (["click"] if third_party else [])


def test_the_modules_of_vars_list_do_not_import_typing() -> None:
    """Start-up cost (docs/performance.md, ``vars list``): what the console script runs
    ``isolde vars list`` on (its own path: configuration, entry points, the LMDB store, the
    listing) never imports ``typing``, about 5 ms of a 100 ms command; annotations name
    typing's types under ``TYPE_CHECKING`` only.  The store's interfaces (``protocol``)
    are still there for whoever asks for them."""
    import subprocess

    probe = textwrap.dedent("""
        import sys
        import isolde.cli_entry, isolde.config, isolde.entrypoints, isolde.names, isolde.store.lmdb, isolde.varlisting
        print(sorted(m for m in ("typing", "click", "isolde.store.protocol") if m in sys.modules))
        from isolde.store import VariableStore
        print(VariableStore.__module__, "typing" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.splitlines() == ["[]", "isolde.store.protocol True"]
