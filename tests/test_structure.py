"""The seams hold: plugins use only the public plugin API, core has no import cycle,
core modules stay small, and every built-in plugin can be disabled on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import isolde
from isolde.registry import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"isolde", "isolde.plugin"}
MAX_LINES = 500


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (top-level, in functions, under TYPE_CHECKING alike);
    ``from . import x`` counts as importing the package itself too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = package if path.name == "__init__.py" else package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - node.level + 1]
                mod = ".".join(parts + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _core_modules() -> dict[str, Path]:
    core = ROOT / "core"
    out = {}
    for path in core.rglob("*.py"):
        parts = list(path.relative_to(core).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(["isolde", *parts])] = path
    return out


def _plugin_files() -> list[Path]:
    return sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "contrib").rglob("src/**/*.py"))


@pytest.mark.parametrize("path", _plugin_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_plugin_api(path: Path) -> None:
    # a plugin may be a package: its own modules are its own business
    rel = path.relative_to(ROOT / "plugins").with_suffix("").parts if path.is_relative_to(ROOT / "plugins") else ("x",)
    module = ".".join(["isolde.plugins", *(rel[:-1] if rel[-1] == "__init__" else rel)])
    own = ".".join(module.split(".")[:3])
    used = _imports(path, module)
    internal = {m for m in used if m in _core_modules() and m not in PUBLIC}
    assert not internal, f"{path.name} imports isolde internals {sorted(internal)}; use isolde.plugin"
    others = {m for m in used if m.startswith("isolde.plugins.") and m != own and not m.startswith(own + ".")}
    assert not others, f"{path.name} imports other plugins {sorted(others)}; declare `requires` instead"


def test_core_has_no_import_cycle() -> None:
    mods = _core_modules()
    graph = {m: {i for i in _imports(p, m) if i in mods and i != m} for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_core_modules_are_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _core_modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"core modules over {MAX_LINES} lines: {big}"


NOOP = "states:\n- id: a\n  type: noop\n  transform: 'jq({ok: true})'\n"
SET = "states:\n- id: a\n  type: setter\n  variables:\n  - {key: k, scope: namespace, value: 'jq(1)'}\n"


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_disabling_one_builtin_leaves_the_others_working(tmp_path: Path, name: str) -> None:
    with isolde.Engine(data_dir=tmp_path, config={"plugins": {"disable": [name]}}) as engine:
        result = engine.run(SET if name == "noop" else NOOP)
        assert result.ok, result.error
        if name != "noop":
            assert result.output == {"ok": True}
        assert name not in {p.name for p in engine.registry.plugins}


def test_a_plugin_that_needs_a_disabled_one_says_so(tmp_path: Path) -> None:
    class NeedsRunners:
        requires = ("runners",)

    with pytest.raises(isolde.ConfigError, match="plugin 'NeedsRunners' needs plugin 'runners', which is disabled"):
        isolde.Engine(data_dir=tmp_path, config={"plugins": {"disable": ["runners"]}}, plugins=[NeedsRunners()])


def test_every_core_package_is_in_the_distribution() -> None:
    """pyproject.toml lists packages by hand (core/ is mapped to isolde): a new package
    directory missing there would be left out of a wheel."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {p.parent for p in (ROOT / "core").rglob("*.py") if "__pycache__" not in p.parts}
    missing_init = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists())
    assert not missing_init, f"packages without __init__.py: {missing_init}"
    present = {".".join(["isolde", *f.relative_to(ROOT / "core").parts]) for f in folders}
    assert present <= listed, f"add to [tool.setuptools] packages: {sorted(present - listed)}"
