"""A second store backend, written against the interface only (tests/backends/memory_store.py):
it passes the same conformance suite as LMDB, and the engine runs the whole language on it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import isolde
from backends.memory_store import MemoryStore, MemoryStorePlugin
from helpers import in_thread, wait_until
from isolde.conformance.records import InstanceRecordsConformance
from isolde.conformance.store import StoreConformance
from isolde.store import Ref

HERE = Path(__file__).parent
EXAMPLES = HERE.parent / "examples"
VALID = sorted((HERE / "workflows" / "valid").glob("*.yaml"))


class TestMemoryStore(StoreConformance):
    large = 200_000

    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        s = MemoryStore()
        yield s
        s.close()


@pytest.fixture
def plugin() -> MemoryStorePlugin:
    return MemoryStorePlugin()


def make(data_dir: Path, plugin: MemoryStorePlugin, **config: Any) -> isolde.Engine:
    return isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, **config}, plugins=[plugin])


def stored(store: MemoryStore, namespace: str, scope: str, owner: str, key: str) -> Any:
    v = store.get(Ref(namespace, scope, owner, key))
    return None if v is None else json.loads(v.data)


def test_engine_uses_the_plugin_store_and_never_opens_lmdb(data_dir: Path, plugin: MemoryStorePlugin) -> None:
    with make(data_dir, plugin) as engine:
        assert engine.run(EXAMPLES / "counter.yaml").output == {"var": {"x": 1}}
        assert engine.run(EXAMPLES / "counter.yaml").output == {"var": {"x": 2}}
        assert engine.variables.value("x", scope="workflow", workflow="counter") == 2
    assert len(plugin.stores) == 1
    assert not (data_dir / "data.mdb").exists()


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_golden_workflows(path: Path, data_dir: Path, plugin: MemoryStorePlugin) -> None:
    """The golden files of tests/workflows/valid (see test_validate.py), on the memory store."""
    golden = json.loads(path.with_suffix(".golden.json").read_text())
    namespace = golden.get("namespace", "default")
    with make(data_dir, plugin) as engine:
        wf = engine.load(path)
        for i, run in enumerate(golden["runs"]):
            given = run["input_bytes"].encode() if "input_bytes" in run else run.get("input")
            res = engine.run(wf, input=given, namespace=namespace)
            if "error" in run:
                assert res.error is not None and res.error.code == run["error"]["code"], f"run {i + 1}"
            else:
                assert res.ok and res.output == run["output"], f"run {i + 1}: {res.error}"
            if "log" in run:
                assert res.log == run["log"]
        store = plugin.stores[0]
        for want in golden.get("variables", []):
            if want["scope"] == "instance":
                continue  # gone with the instance
            owner = wf.id if want["scope"] == "workflow" else ""
            var = store.get(Ref(namespace, want["scope"], owner, want["key"]))
            assert (None if var is None else var.data.decode()) == want["bytes"], want["key"]


# --------------------------------------------------------------------------- every state type


def remember(data: Any, request: Any) -> dict[str, Any]:
    """A python-function isolate: files under out/workflow/ become workflow variables."""
    name = data.get("name", "")
    (Path(request.temp_dir) / "out" / "workflow" / f"seen-{name}").write_text(json.dumps(name))
    return {"hello": name}


LANGUAGE = """
functions:
- id: remember
  type: python
  call: test_memory_backend:remember
states:
- id: start
  type: setter
  variables:
  - key: n
    scope: workflow
    value: 'jq(.n)'
  - key: scratch
    scope: instance
    value: 1
  transition: read
- id: read
  type: getter
  variables:
  - key: n
    scope: workflow
    lock: true
  transition: bump
- id: bump
  type: setter
  variables:
  - key: n
    scope: workflow
    value: 'jq(.var.n + 1)'
  transition: check
- id: check
  type: validate
  schema:
    type: object
    required: [n]
  transition: route
- id: route
  type: switch
  conditions:
  - condition: 'jq(.n > 1)'
    transition: greet
  defaultTransition: small
- id: greet
  type: action
  action:
    function: remember
    input:
      name: one
  transition: each
- id: each
  type: foreach
  array: 'jq([{name: "two"}, {name: "three"}])'
  action:
    function: remember
    input: 'jq(.)'
  transition: both
- id: both
  type: parallel
  actions:
  - function: remember
    input:
      name: four
  - function: remember
    input:
      name: five
  transition: pause
- id: pause
  type: delay
  duration: PT0S
  transition: done
- id: done
  type: noop
  transform:
    hellos: 'jq([.return[].hello])'
    n: 'jq(.var.n)'
- id: small
  type: error
  error: too.small
  message: 'n is only %v'
  args:
  - 'jq(.n)'
"""


def test_every_state_type_on_the_memory_store(data_dir: Path, plugin: MemoryStorePlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    with make(data_dir, plugin) as engine:
        res = engine.run(LANGUAGE, input={"n": 4}, namespace="lang")
        assert res.ok, res.error
        assert res.output == {"hellos": ["four", "five"], "n": 4}
        store = plugin.stores[0]
        wf_id = engine.load(LANGUAGE).id
        assert stored(store, "lang", "workflow", wf_id, "n") == 5
        for name in ("one", "two", "three", "four", "five"):
            assert stored(store, "lang", "workflow", wf_id, f"seen-{name}") == name
        assert store.get(Ref("lang", "instance", res.instance_id, "scratch")) is None  # ended with it
        small = engine.run(LANGUAGE, input={"n": 0}, namespace="lang")
        assert small.error is not None and (small.error.code, small.error.message) == ("too.small", "n is only 0")


def test_process_isolate_uses_the_sidecar_on_the_memory_store(data_dir: Path, plugin: MemoryStorePlugin) -> None:
    images = {"example/visits": {"command": [sys.executable, str(EXAMPLES / "isolates" / "sidecar.py")]}}
    with make(data_dir, plugin, images=images) as engine:
        wf = engine.load(EXAMPLES / "sidecar.yaml")
        first = engine.run(wf, input={"name": "Ada"})
        assert first.ok, first.error
        assert first.output["var"] == {"visits": 1, "last": "Ada"}
        second = engine.run(wf, input={"name": "Bob"})
        assert second.output["var"] == {"visits": 2, "last": "Bob"}
        store = plugin.stores[0]
        assert stored(store, "default", "namespace", "", "visits") == 2
        last = store.get(Ref("default", "workflow", wf.id, "last"))
        assert last is not None and last.data == b"Bob"


LISTENER = """
states:
- id: listen
  type: consumeEvent
  timeout: PT30S
  event:
    type: greeting
  transition: keep
- id: keep
  type: setter
  variables:
  - key: heard
    scope: namespace
    value: 'jq(.greeting.data.name)'
"""

GENERATOR = """
states:
- id: send
  type: generateEvent
  event:
    type: {kind}
    source: tests
    data:
      name: jq(.name)
"""

EITHER = """
states:
- id: wait
  type: eventsXor
  timeout: PT30S
  events:
  - event:
      type: one
    transition: a
  - event:
      type: two
    transition: a
- id: a
  type: setter
  variables:
  - key: either
    scope: namespace
    value: 'jq(.two.data.name)'
"""

BOTH = """
states:
- id: wait
  type: eventsAnd
  timeout: PT30S
  events:
  - type: paid
  - type: shipped
  transition: a
- id: a
  type: setter
  variables:
  - key: both
    scope: namespace
    value: 'jq([.paid.data.name, .shipped.data.name])'
"""


def test_events_on_the_memory_store(data_dir: Path, plugin: MemoryStorePlugin) -> None:
    with make(data_dir, plugin) as engine:
        for listener, events in ((LISTENER, ["greeting"]), (BOTH, ["paid", "shipped"]), (EITHER, ["two"])):
            t, out = in_thread(lambda listener=listener: engine.run(listener))  # type: ignore[misc]
            wait_until(lambda: bool(engine.events.waiting("default")) or bool(out))
            for kind in events:
                sent = engine.run(GENERATOR.format(kind=kind), input={"name": kind.upper()})
                assert sent.ok, sent.error
            t.join(30)
            assert out and out[0].ok, out
        store = plugin.stores[0]
        assert stored(store, "default", "namespace", "", "heard") == "GREETING"
        assert stored(store, "default", "namespace", "", "both") == ["PAID", "SHIPPED"]
        assert stored(store, "default", "namespace", "", "either") == "TWO"


class TestMemoryInstanceRecords(InstanceRecordsConformance):
    """The daemon's records (the instance history's) kept in the in-memory store pass the same
    suite as in LMDB: they only use the ``VariableStore`` interface."""

    @pytest.fixture
    def records(self) -> Iterator[Any]:
        from isolde.daemon import LmdbInstanceRecords

        store = MemoryStore()
        try:
            yield LmdbInstanceRecords(store, keep=self.KEEP)
        finally:
            store.close()
