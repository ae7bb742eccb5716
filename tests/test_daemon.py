"""``isolde serve DIR`` as a real process: the watched folder, drop folders, starts, restarts.

Every test starts the daemon with ``python -m isolde.cli serve`` on a temp folder,
its own data directory and a free API port (``--api 127.0.0.1:0``; the address is
read from the "daemon ready" log line), and stops it at the end.  Behaviour is
observed through the HTTP API, the ``isolde`` CLI on the same data directory and
the daemon's logfmt lines on stderr.  A tiny entry-point plugin (installed as a
real distribution on ``PYTHONPATH``) provides ``nap``, a resumable state that
sleeps, and ``poke``, the same but not resumable (as an action is not).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import pytest
from helpers import install_plugin
from isolde.conformance.records import InstanceRecordsConformance

if TYPE_CHECKING:
    from conftest import Cli

T = TypeVar("T")

READY_TIMEOUT = 30.0

NAP_PLUGIN = '''
"""Test plugin: states that sit still for a while, one resumable and one not."""
from __future__ import annotations

from isolde import StateType, hookimpl


class Nap(StateType):
    name = "nap"
    resumable = True
    schema = """
    state nap "Sleeps; running it again is harmless." {
        seconds!: number "How long."
    }
    """

    def run(self, state, data, ctx):
        ctx.events.sleep(state.fields["seconds"], owner=ctx.instance_id, namespace=ctx.namespace)
        return {**data, "naps": data.get("naps", 0) + 1}


class Poke(Nap):
    name = "poke"
    resumable = False
    schema = """
    state poke "Sleeps, standing for an action: not safe to run twice." {
        seconds!: number "How long."
    }
    """


class Boom(StateType):
    name = "boom"
    schema = """
    state boom "Its check has a bug: it raises." {
    }
    """

    def check(self, state, workflow, report):
        raise RuntimeError("a bug in boom's check")


class Where(StateType):
    name = "where"
    resumable = True
    waits = False
    schema = """
    state where "Says which thread runs it; never waits." {
    }
    """

    def run(self, state, data, ctx):
        import threading
        return {**data, "thread": threading.current_thread().name}


HELD = __import__("threading").Event()  # set by a test: lets each `hold` state go on


class Hold(Where):
    name = "hold"
    schema = """
    state hold "Says which thread runs it once the test lets it go on (claims not to wait)." {
    }
    """

    def run(self, state, data, ctx):
        if not HELD.wait(60):
            raise RuntimeError("the test never let the hold state go on")
        return super().run(state, data, ctx)


@hookimpl
def isolde_state_types():
    return [Nap, Poke, Boom, Where, Hold]
'''


# --------------------------------------------------------------------------- helpers


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Client:
    """HTTP helpers and log-line waits shared by the in-process and the process daemon."""

    url = ""
    lines: list[str]
    _cond: threading.Condition

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def _gone(self) -> bool:
        return False

    def until(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """``fn()`` once it is truthy (see ``eventually``)."""
        return eventually(fn, timeout)

    def ended(self, iid: str) -> dict[str, Any]:
        """The instance once the daemon logged its end (``instance complete`` is a debug
        line: the process daemons of these tests run with ``--verbose``)."""
        ends = ('msg="instance complete"', 'msg="instance failed"')
        deadline = time.monotonic() + 30
        with self._cond:
            while not any(f"id={iid}" in x and any(e in x for e in ends) for x in self.lines):
                left = deadline - time.monotonic()
                assert left > 0 and not self._gone(), "no end of instance %s; log:\n%s" % (iid, "\n".join(self.lines[-30:]))
                self._cond.wait(left)
        view: dict[str, Any] = self.get(f"/api/namespaces/ns1/instances/{iid}").json
        return view

    def wait_log(self, text: str, *also: str, timeout: float = 30.0, since: int = 0) -> str:
        """The first line (from ``since``) containing ``text`` (and each of ``also``); each
        line wakes the waiter as it is logged (the timeout only bounds a failing test)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[since:]:
                    if text in line and all(a in line for a in also):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._gone():
                    raise AssertionError(f"no log line with {text!r}; log:\n" + "\n".join(self.lines[-40:]))
                self._cond.wait(left)

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def start(self, ns: str, wf: str, body: Any = None, *, wait: bool = True) -> Response:
        data = None if body is None else json.dumps(body)
        return self.request("POST", f"/api/namespaces/{ns}/workflows/{wf}/instances" + ("?wait=true" if wait else ""), data)

    def workflows(self, ns: str) -> dict[str, dict[str, Any]]:
        r = self.get(f"/api/namespaces/{ns}/workflows")
        if r.status == 404:
            return {}
        return {w["path"]: w for w in r.json["workflows"]}


class _Lines(logging.Handler):
    """Collects the daemon's logfmt lines and wakes whoever waits for one."""

    def __init__(self, owner: _Client) -> None:
        super().__init__(logging.DEBUG)
        self.owner = owner
        from isolde.daemon import LogfmtFormatter

        self.setFormatter(LogfmtFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self.owner._cond:
            self.owner.lines.append(line)
            if record.getMessage() != "api request":  # the test's own requests change nothing
                self.owner.changes += 1
            self.owner._cond.notify_all()


def nap_plugin() -> types.ModuleType:
    """The ``nap`` / ``poke`` / ``boom`` plugin as a module object, for an in-process engine."""
    mod = types.ModuleType("isolde_test_nap_inprocess")
    exec(compile(NAP_PLUGIN, "isolde_test_nap_inprocess", "exec"), mod.__dict__)
    return mod


class InProcess(_Client):
    """A ``Daemon`` running in this process (the API on a free port), its log collected.
    Everything but signals, ``kill -9`` and exit codes is tested this way."""

    def __init__(self, root: Path, data_dir: Path, *, config: Path | None = None) -> None:
        import isolde
        from isolde.daemon import Daemon, DaemonSettings

        self.lines = []
        self.changes = 0
        self._probes = 0
        self._cond = threading.Condition()
        if hasattr(signal, "SIGIO"):
            signal.signal(signal.SIGIO, signal.SIG_IGN)  # as `serve` does: leases tell open writers
        self.logger = logging.getLogger(f"isolde.test.daemon.{id(self)}")
        self.logger.handlers[:] = [_Lines(self)]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)  # instance ends and files still being written are debug lines
        self.engine = isolde.Engine(data_dir=data_dir, config=str(config) if config else {}, plugins=[nap_plugin()])
        try:
            settings = DaemonSettings.from_config(self.engine.config, api="127.0.0.1:0")
            self.daemon = Daemon(root, self.engine, settings, logger=self.logger)
            self.daemon.start()
        except BaseException:
            self.engine.close()
            raise
        self.url = self.daemon.api.url
        self.stopped = False

    def ready(self) -> InProcess:
        return self

    def until(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """``fn()`` once it is truthy, re-checked each time the daemon logs something (every
        change it applies is logged: registrations, stores, deletions, instance ends); the
        timeout only bounds a failing test."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self.changes
            err: BaseException | None = None
            try:
                value = fn()
                if value:
                    return value
            except (AssertionError, LookupError) as exc:  # not there yet
                err = exc
            with self._cond:
                left = deadline - time.monotonic()
                if left <= 0:
                    if err is not None:
                        raise err
                    raise AssertionError(f"condition not met; log:\n" + "\n".join(self.lines[-30:]))
                self._cond.wait_for(lambda: self.changes != seen, left)

    def settle(self, ns: str = "ns1") -> None:
        """Return once every change to the folder made so far is applied, deletions past
        their grace included: a probe file is logged after all earlier events (they are
        delivered in order), then nothing is due or being synced."""
        self._probes += 1
        probe = f"settle probe {self._probes}"
        mark = self.mark()
        (self.daemon.root / ns / ".vars").mkdir(parents=True, exist_ok=True)
        (self.daemon.root / ns / ".vars" / probe).write_bytes(b"")  # not a valid key: only logged
        self.wait_log(probe, since=mark, timeout=30)
        assert self.daemon.pending.wait_quiet(30)

    # -- the daemon's store, read and written as the CLI would (a JSON value, or text) --
    def _ref(self, ns: str, key: str, wf: str | None) -> Any:
        from isolde.store import Ref

        return Ref(ns, "workflow" if wf else "namespace", wf or "", key)

    def set_var(self, ns: str, key: str, value: str, *, wf: str | None = None) -> bool:
        from isolde.store import Put

        self.daemon.store.write([Put(self._ref(ns, key, wf), value.encode(), "application/json")])
        return True

    def var(self, ns: str, key: str, *, wf: str | None = None) -> str | None:
        got = self.daemon.store.get(self._ref(ns, key, wf))
        return None if got is None else bytes(got.data).decode()

    def var_keys(self, ns: str, *, wf: str | None = None) -> list[str]:
        return [k for k, _ in self.daemon.store.list(ns, "workflow" if wf else "namespace", wf or "")]

    def store_namespaces(self) -> list[str]:
        return list(self.daemon.store.namespaces())

    def store_workflows(self, ns: str) -> list[str]:
        return list(self.daemon.store.workflows(ns))

    def done(self, ns: str, iid: str, timeout: float = 60.0) -> dict[str, Any]:
        """The instance once it ended (waits on the daemon's own completion event)."""
        return self.daemon.wait_for(ns, iid, timeout)

    def stop(self, timeout: float = 20.0) -> int:
        if not self.stopped:
            self.stopped = True
            self.daemon.stop()
        return 0


class Served(_Client):
    """One ``isolde serve`` process, its stderr collected line by line."""

    def __init__(self, root: Path, data_dir: Path, args: tuple[str, ...], env: dict[str, str], cwd: Path) -> None:
        cmd = [sys.executable, "-m", "isolde.cli", "serve", str(root), "--data-dir", str(data_dir)]
        if not any(a.startswith("--api") or a == "--no-api" for a in args):
            cmd += ["--api", "127.0.0.1:0"]
        self.proc = subprocess.Popen(
            [*cmd, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def ready(self) -> Served:
        line = self.wait_log("daemon ready", timeout=READY_TIMEOUT)
        for part in line.split():
            if part.startswith("api="):
                self.url = part[4:]
        return self

    def _gone(self) -> bool:
        return self.proc.poll() is not None and not self._reader.is_alive()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the daemon did not stop within %.0f s of SIGTERM" % timeout) from None
            finally:
                self._close()
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def eventually(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Call ``fn`` until it returns something truthy without failing an assert or a lookup."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
            err: BaseException | None = None
        except (AssertionError, LookupError) as exc:  # not there yet: a 404 body has no "output"
            err = exc
        if time.monotonic() > deadline:
            if err is not None:
                raise err
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def write(path: Path, text: str) -> Path:
    """Write a file the way a careful tool does: content, then close (one close-write event)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


NOOP = """
direktiv_api: workflow/v1
states:
- id: a
  type: noop
  transform:
    says: {word}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The ``nap`` / ``poke`` test plugin installed as a distribution."""
    return install_plugin(tmp_path / "site", "isolde_test_nap", NAP_PLUGIN, "nap")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "flows"
    (d / "ns1").mkdir(parents=True)
    return d


@pytest.fixture
def serve(tmp_path: Path, data_dir: Path) -> Iterator[Callable[..., InProcess]]:
    """``serve(root, config=None)`` starts a daemon in this process."""
    started: list[InProcess] = []

    def _serve(root: Path, *, config: str | None = None) -> InProcess:
        cfg = None
        if config is not None:
            cfg = tmp_path / f"isolde-{len(started)}.toml"
            cfg.write_text(textwrap.dedent(config))
        d = InProcess(root, data_dir, config=cfg)
        started.append(d)
        return d

    yield _serve
    for d in started:
        d.stop()


@pytest.fixture
def serve_process(tmp_path: Path, data_dir: Path, site: Path) -> Iterator[Callable[..., Served]]:
    """``serve_process(root, *args, config=None)`` starts ``isolde serve`` and waits until it is ready."""
    started: list[Served] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    env["PYTHONPATH"] = str(site)

    def _serve(root: Path, *args: str, config: str | None = None, ready: bool = True) -> Served:
        extra = list(args)
        if config is not None:
            cfg = tmp_path / f"isolde-{len(started)}.toml"
            cfg.write_text(textwrap.dedent(config))
            extra += ["--config", str(cfg)]
        s = Served(root, data_dir, ("--verbose", *extra), env, tmp_path)  # debug lines: instance ends, state logs
        started.append(s)
        return s.ready() if ready else s

    yield _serve
    for s in started:
        s.stop()


@pytest.fixture
def plugin_cli(cli: Cli, site: Path) -> Cli:
    cli.env["PYTHONPATH"] = str(site)
    return cli


# --------------------------------------------------------------------------- 1. watched workflows


def test_initial_scan_registers_what_is_there(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "hello.yaml", NOOP.format(word="hello"))
    write(root / "ns1" / "sub" / "deep" / "wf.yml", NOOP.format(word="deep"))
    write(root / "ns1" / "broken.yaml", "states:\n- id: a\n  type: nope\n")
    write(root / "ns1" / ".hidden.yaml", NOOP.format(word="hidden"))
    write(root / "ns1" / "hello.yaml~", NOOP.format(word="backup"))
    write(root / "ns1" / ".hidden" / "x.yaml", NOOP.format(word="x"))
    write(root / "top.yaml", NOOP.format(word="top"))  # directly in DIR: not in a namespace
    (root / "ns2").mkdir()
    d = serve(root)
    wfs = d.workflows("ns1")
    assert sorted(wfs) == ["broken", "hello", "sub/deep/wf"]
    assert wfs["hello"]["valid"] and wfs["hello"]["serving"]
    assert not wfs["broken"]["valid"] and not wfs["broken"]["serving"]
    assert "broken.yaml:3:9" in wfs["broken"]["errors"][0], wfs["broken"]["errors"]
    assert [n["name"] for n in d.get("/api/namespaces").json["namespaces"]] == ["ns1", "ns2"]
    assert d.start("ns1", "sub/deep/wf").json["output"] == {"says": "deep"}
    # Direktiv-style references name the same workflow
    assert d.start("ns1", "sub/deep/wf.yml").json["output"] == {"says": "deep"}
    assert "broken.yaml:3:9: state 'a'" in d.log_text()


def test_create_change_invalid_change_delete(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    d = serve(root)
    f = write(root / "ns1" / "flow.yaml", NOOP.format(word="one"))
    d.until(lambda: d.workflows("ns1").get("flow"))
    assert d.start("ns1", "flow").json["output"] == {"says": "one"}

    write(f, NOOP.format(word="two"))
    d.until(lambda: d.start("ns1", "flow").json["output"] == {"says": "two"})

    mark = d.mark()
    write(f, NOOP.format(word="three").replace("type: noop", "type: noop\n  transition: nowhere"))
    line = d.wait_log("flow.yaml:", since=mark)
    assert "nowhere" in line and ":5:" in line, line  # FILE:LINE:COL of the bad transition
    assert "previous version keeps serving" in d.log_text()
    info = d.workflows("ns1")["flow"]
    assert info["serving"] and not info["valid"] and info["errors"]
    assert d.start("ns1", "flow").json["output"] == {"says": "two"}  # the last good version

    assert d.set_var("ns1", "kept", "1", wf="flow")
    f.unlink()
    d.wait_log('msg="workflow deleted" ns=ns1 workflow=flow')  # logged once its variables went
    assert "flow" not in d.workflows("ns1")
    assert d.var_keys("ns1", wf="flow") == []  # its variables went with it
    assert d.start("ns1", "flow").status == 404


def test_rename_and_move_keep_variables(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "a.yaml", NOOP.format(word="a"))
    (root / "ns2").mkdir()
    d = serve(root)
    assert d.set_var("ns1", "n", "7", wf="a")

    (root / "ns1" / "a.yaml").rename(root / "ns1" / "b.yaml")
    d.until(lambda: sorted(d.workflows("ns1")) == ["b"])
    assert d.var("ns1", "n", wf="b") == "7"
    assert d.var_keys("ns1", wf="a") == []

    (root / "ns1" / "sub").mkdir()
    (root / "ns1" / "b.yaml").rename(root / "ns1" / "sub" / "c.yaml")
    d.until(lambda: sorted(d.workflows("ns1")) == ["sub/c"])
    assert d.var("ns1", "n", wf="sub/c") == "7"

    (root / "ns1" / "sub").rename(root / "ns1" / "folder")  # a whole folder renamed
    d.until(lambda: sorted(d.workflows("ns1")) == ["folder/c"])
    assert d.var("ns1", "n", wf="folder/c") == "7"

    (root / "ns1" / "folder" / "c.yaml").rename(root / "ns2" / "c.yaml")  # to another namespace
    d.until(lambda: sorted(d.workflows("ns2")) == ["c"] and not d.workflows("ns1"))
    assert d.var("ns2", "n", wf="c") == "7"
    assert d.store_workflows("ns1") == []


def test_editor_save_by_rename_keeps_variables(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    """vim's default save: the file is renamed to a backup, a new one written, the backup removed."""
    f = write(root / "ns1" / "flow.yaml", NOOP.format(word="old"))
    d = serve(root)
    assert d.set_var("ns1", "n", "1", wf="flow")
    backup = root / "ns1" / "flow.yaml~"
    f.rename(backup)
    (root / "ns1" / "4913").write_text("")  # vim's probe file
    (root / "ns1" / "4913").unlink()
    swap = root / "ns1" / ".flow.yaml.swp"
    swap.write_bytes(b"\x00" * 100)
    write(f, NOOP.format(word="new"))
    backup.unlink()
    swap.unlink()
    d.until(lambda: d.start("ns1", "flow").json["output"] == {"says": "new"})
    d.settle()  # past the delete grace: nothing may have been deleted
    assert d.var("ns1", "n", wf="flow") == "1"
    assert sorted(d.workflows("ns1")) == ["flow"]
    assert "workflow deleted" not in d.log_text()


BOOM = """
direktiv_api: workflow/v1
states:
- id: a
  type: boom
"""


def test_a_workflow_that_fails_to_load_leaves_the_daemon_serving(root: Path, serve: Callable[..., InProcess]) -> None:
    """Issue 12: any exception while loading a dropped file (here a plugin's check that
    raises) makes an invalid workflow with a located error, at start and later."""
    write(root / "ns1" / "early.yaml", BOOM)
    write(root / "ns1" / "fine.yaml", NOOP.format(word="fine"))
    d = serve(root)
    write(root / "ns1" / "late.yaml", BOOM)
    wfs = d.until(lambda: (w := d.workflows("ns1")).get("late") and w)
    for name in ("early", "late"):
        assert not wfs[name]["valid"] and not wfs[name]["serving"], wfs[name]
        assert f"{name}.yaml:1:1: the workflow could not be loaded: RuntimeError" in wfs[name]["errors"][0], wfs[name]
    assert d.start("ns1", "fine").json["output"] == {"says": "fine"}
    assert "late.yaml:1:1: the workflow could not be loaded" in d.log_text()


def test_half_written_workflow_never_registers(root: Path, serve: Callable[..., InProcess]) -> None:
    d = serve(root)
    text = textwrap.dedent(NOOP.format(word="whole")).lstrip("\n").encode()
    path = root / "ns1" / "slow.yaml"
    with open(path, "wb") as fh:
        fh.write(text[:40])  # "direktiv_api: ...\nstates:\n- id: a" -- would even parse
        fh.flush()
        mark = d.mark()
        d.daemon.pending.mark(path, 0.0)  # make the daemon look at it now, as a rescan would
        d.wait_log(f"file={path}", since=mark)  # "still open for writing, looked at later"
        assert "slow" not in d.workflows("ns1")
        fh.write(text[40:])
    d.until(lambda: d.start("ns1", "slow").json["output"] == {"says": "whole"})


def test_namespace_folder_removed_and_renamed(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "a.yaml", NOOP.format(word="a"))
    write(root / "ns1" / ".vars" / "shared", "42")
    write(root / "gone" / "b.yaml", NOOP.format(word="b"))
    d = serve(root)
    assert d.set_var("gone", "w", "1", wf="b")
    assert d.set_var("gone", "x", "2")

    shutil.rmtree(root / "gone")
    d.until(lambda: [n["name"] for n in d.get("/api/namespaces").json["namespaces"]] == ["ns1"])
    d.wait_log('msg="namespace removed" ns=gone')  # its variables are deleted after it stops serving
    assert "gone" not in d.store_namespaces()
    assert d.var_keys("gone") == []

    (root / "ns1").rename(root / "renamed")
    d.until(lambda: [n["name"] for n in d.get("/api/namespaces").json["namespaces"]] == ["renamed"])
    d.until(lambda: sorted(d.workflows("renamed")) == ["a"])
    d.wait_log('msg="namespace removed" ns=ns1')
    assert d.var("renamed", "shared") == "42"
    assert d.var_keys("ns1") == []


def test_changes_while_down_are_applied_at_start(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "a.yaml", NOOP.format(word="a"))
    write(root / "ns1" / "b.yaml", NOOP.format(word="b"))
    write(root / "old" / "c.yaml", NOOP.format(word="c"))
    d = serve(root)
    for ns, wf in (("ns1", "a"), ("ns1", "b"), ("old", "c")):
        assert cli("vars", "set", "v", "1", "-n", ns, "-w", wf).code == 0
    assert d.set_var("ns1", "mine", "1", wf="cli-run")  # not the daemon's
    assert d.stop() == 0
    (root / "ns1" / "a.yaml").rename(root / "ns1" / "renamed.yaml")  # same content: a rename
    (root / "ns1" / "b.yaml").unlink()
    shutil.rmtree(root / "old")
    d = serve(root)
    assert sorted(d.workflows("ns1")) == ["renamed"]
    assert d.var("ns1", "v", wf="renamed") == "1"
    assert d.var_keys("ns1", wf="b") == []
    assert d.var_keys("old") == [] and "old" not in d.store_namespaces()
    assert d.var("ns1", "mine", wf="cli-run") == "1"


# --------------------------------------------------------------------------- 2. drop folders


def test_drop_files_become_variables(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "flow.yaml", NOOP.format(word="x"))
    write(root / "ns1" / "flow.yaml.before", "early")
    d = serve(root)
    assert d.var("ns1", "before", wf="flow") == "early"

    write(root / "ns1" / ".vars" / "config.json", '{"a": 1}')
    write(root / "ns1" / "flow.yaml.count", "5")
    write(root / "ns1" / ".vars" / "notes.txt", "hello")
    r = d.until(lambda: (x := d.get("/api/namespaces/ns1/variables/config.json")).status == 200 and x)
    assert json.loads(r.body) == {"a": 1} and r.headers["content-type"] == "application/json"
    assert d.until(lambda: d.get("/api/namespaces/ns1/workflows/flow/variables/count").body == b"5")
    assert d.until(lambda: d.get("/api/namespaces/ns1/variables/notes.txt").headers.get("content-type") == "text/plain")

    write(root / "ns1" / "flow.yaml.count", "6")  # a change is stored again
    assert d.until(lambda: d.get("/api/namespaces/ns1/workflows/flow/variables/count").body == b"6")

    # deleting the file leaves the variable (the default)
    (root / "ns1" / ".vars" / "notes.txt").unlink()
    d.settle()
    assert d.get("/api/namespaces/ns1/variables/notes.txt").status == 200

    # a file whose name is no valid key is refused with a log line
    write(root / "ns1" / ".vars" / "bad name", "x")
    d.wait_log("not a valid variable key")


def test_drop_directory_is_stored_as_tar_gz(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "flow.yaml", NOOP.format(word="x"))
    write(root / "ns1" / ".vars" / "site" / "index.html", "<h1>hi</h1>")
    d = serve(root)

    def members(path: str) -> dict[str, bytes]:
        r = d.get(path)
        assert r.status == 200, r.body
        assert r.headers["content-type"] == "application/gzip"
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:gz") as tf:
            return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]

    assert members("/api/namespaces/ns1/variables/site") == {"index.html": b"<h1>hi</h1>"}
    write(root / "ns1" / ".vars" / "site" / "css" / "a.css", "b{}")
    d.until(lambda: members("/api/namespaces/ns1/variables/site") == {"index.html": b"<h1>hi</h1>", "css/a.css": b"b{}"})
    write(root / "ns1" / "flow.yaml.assets" / "x.txt", "x")  # a workflow variable directory
    d.until(lambda: members("/api/namespaces/ns1/workflows/flow/variables/assets") == {"x.txt": b"x"})


def test_half_written_drop_file_is_not_read(root: Path, serve: Callable[..., InProcess]) -> None:
    d = serve(root)
    path = root / "ns1" / ".vars" / "big"
    path.parent.mkdir()
    with open(path, "wb") as fh:
        fh.write(b"first half, ")
        fh.flush()
        mark = d.mark()
        d.daemon.pending.mark(path, 0.0)  # make the daemon look at it now, as a rescan would
        d.wait_log(f"file={path}", since=mark)  # "still open for writing, looked at later"
        assert d.get("/api/namespaces/ns1/variables/big").status == 404
        fh.write(b"second half")
    assert d.until(lambda: d.get("/api/namespaces/ns1/variables/big").body == b"first half, second half")


def test_delete_vars_with_files_option(root: Path, serve: Callable[..., InProcess]) -> None:
    write(root / "ns1" / ".vars" / "temp", "1")
    d = serve(root, config="[daemon]\ndelete_vars_with_files = true\n")
    assert d.get("/api/namespaces/ns1/variables/temp").status == 200
    (root / "ns1" / ".vars" / "temp").unlink()
    d.until(lambda: d.get("/api/namespaces/ns1/variables/temp").status == 404)


# --------------------------------------------------------------------------- 3. starts


def test_cron_start_fires(root: Path, serve: Callable[..., InProcess], cli: Cli) -> None:
    write(root / "ns1" / "tick.yaml", """
        direktiv_api: workflow/v1
        start:
          type: scheduled
          cron: "* * * * * *"
        states:
        - id: a
          type: noop
    """)
    d = serve(root)
    assert d.workflows("ns1")["tick"]["cron"] == "* * * * * *"
    assert d.workflows("ns1")["tick"]["next_run"] > time.time() - 1
    runs = d.until(lambda: [i for i in d.get("/api/namespaces/ns1/instances").json["instances"]
                             if i["trigger"] == "cron" and i["status"] == "complete"][1:])
    assert all(r["workflow"] == "tick" for r in runs)
    (root / "ns1" / "tick.yaml").unlink()
    d.until(lambda: "tick" not in d.workflows("ns1"))
    assert d.daemon.triggers.scheduler.next_fire("ns1", "tick") is None  # unscheduled


def test_event_starts(root: Path, serve: Callable[..., InProcess]) -> None:
    write(root / "ns1" / "on-greet.yaml", """
        direktiv_api: workflow/v1
        start:
          type: event
          event:
            type: greet
            context:
              source: "tests*"
        states:
        - id: a
          type: noop
          transform:
            name: jq(.greet.data.name)
            hello: jq(.greet.hello)
    """)
    write(root / "ns1" / "either.yaml", """
        direktiv_api: workflow/v1
        start:
          type: eventsXor
          events:
          - type: one
          - type: two
        states:
        - id: a
          type: noop
          transform:
            got: jq(keys)
    """)
    write(root / "ns1" / "both.yaml", """
        direktiv_api: workflow/v1
        start:
          type: eventsAnd
          correlate: [order]
          events:
          - type: paid
          - type: shipped
        states:
        - id: a
          type: noop
          transform:
            paid: jq(.paid.data)
            shipped: jq(.shipped.data)
    """)
    d = serve(root)

    def post(event: dict[str, Any]) -> list[str]:
        r = d.request("POST", "/api/namespaces/ns1/events", json.dumps(event))
        assert r.status == 202, r.body
        return r.json["instances"]

    def output(iid: str) -> Any:
        return d.until(lambda: (x := d.get(f"/api/namespaces/ns1/instances/{iid}").json)["status"] == "complete" and x)["output"]

    [iid] = post({"type": "greet", "source": "tests/a", "hello": "world", "data": {"name": "Ada"}})
    assert output(iid) == {"name": "Ada", "hello": "world"}
    assert post({"type": "greet", "source": "elsewhere", "data": {}}) == []  # context does not match

    [a] = post({"type": "one", "source": "t"})
    [b] = post({"type": "two", "source": "t"})
    assert output(a) == {"got": ["one"]} and output(b) == {"got": ["two"]}

    assert post({"type": "paid", "source": "t", "order": "1", "data": "p1"}) == []
    assert post({"type": "paid", "source": "t", "order": "2", "data": "p2"}) == []
    [c] = post({"type": "shipped", "source": "t", "order": "2", "data": "s2"})
    assert output(c) == {"paid": "p2", "shipped": "s2"}  # correlated on `order`


def test_singular_refuses_a_second_instance(root: Path, serve: Callable[..., InProcess]) -> None:
    write(root / "ns1" / "one.yaml", """
        direktiv_api: workflow/v1
        singular: true
        states:
        - id: a
          type: nap
          seconds: 0.8
    """)
    d = serve(root)
    first = d.start("ns1", "one", wait=False)
    assert first.status == 202
    second = d.start("ns1", "one", wait=False)
    assert second.status == 409
    assert second.json["error"]["code"] == "direktiv.mutex" and first.json["id"] in second.json["error"]["message"]
    d.until(lambda: d.get(f"/api/namespaces/ns1/instances/{first.json['id']}").json["status"] == "complete")
    assert d.start("ns1", "one").status == 200


def test_queue_beyond_max_running(root: Path, serve: Callable[..., InProcess]) -> None:
    write(root / "ns1" / "nap.yaml", """
        direktiv_api: workflow/v1
        states:
        - id: a
          type: nap
          seconds: 0.4
    """)
    d = serve(root, config="[daemon]\nmax_running = 1\nmax_queue = 1\n")
    first, second = (d.start("ns1", "nap", wait=False).json["id"] for _ in range(2))
    assert d.get(f"/api/namespaces/ns1/instances/{second}").json["status"] == "pending"
    third = d.start("ns1", "nap", wait=False)
    assert third.status == 503 and third.json["error"]["code"] == "isolde.daemon.busy"
    for iid in (first, second):
        d.until(lambda: d.get(f"/api/namespaces/ns1/instances/{iid}").json["status"] == "complete")
    assert d.get("/api/status").json["complete"] == 2


def test_a_waited_start_of_states_that_never_wait_runs_in_the_request_thread(root: Path, serve: Callable[..., InProcess]) -> None:
    """``?wait=true`` on a workflow whose states all never wait (``StateType.waits``) runs
    the instance in the request's own thread; one that may wait, or a wait with a
    ``timeout``, goes to an instance thread as before."""
    write(root / "ns1" / "quick.yaml", "states:\n- id: a\n  type: where\n  transition: b\n- id: b\n  type: noop\n")
    write(root / "ns1" / "slow.yaml", "states:\n- id: a\n  type: where\n  transition: b\n- id: b\n  type: nap\n  seconds: 0\n")
    d = serve(root)
    quick = d.start("ns1", "quick")
    assert quick.status == 200 and quick.json["status"] == "complete"
    assert quick.json["output"]["thread"] != "isolde-instance", quick.json
    slow = d.start("ns1", "slow")
    assert slow.status == 200 and slow.json["output"]["thread"] == "isolde-instance", slow.json
    timed = d.request("POST", "/api/namespaces/ns1/workflows/quick/instances?wait=true&timeout=30")
    assert timed.status == 200 and timed.json["output"]["thread"] == "isolde-instance", timed.json
    later = d.start("ns1", "quick", wait=False)
    assert d.done("ns1", later.json["id"])["output"]["thread"] == "isolde-instance"
    status = d.get("/api/status").json
    assert status["complete"] == 4 and status["running"] == 0


def test_an_instance_queued_behind_one_run_in_a_request_thread_runs_after_it(root: Path, serve: Callable[..., InProcess]) -> None:
    """With ``max_running = 1`` held by an instance running in a request's thread, a
    start without wait is queued; when the first ends, the queued one takes the slot."""
    write(root / "ns1" / "held.yaml", "states:\n- id: a\n  type: hold\n")
    d = serve(root, config="[daemon]\nmax_running = 1\nmax_queue = 1\n")
    plugin = next(m for m in d.engine.registry.pm.get_plugins() if getattr(m, "HELD", None) is not None)
    answers: list[Response] = []
    first = threading.Thread(target=lambda: answers.append(d.start("ns1", "held")))
    first.start()
    try:
        d.until(lambda: d.get("/api/status").json["running"] == 1)
        queued = d.start("ns1", "held", wait=False)
        assert queued.status == 202 and d.get(f"/api/namespaces/ns1/instances/{queued.json['id']}").json["status"] == "pending"
    finally:
        plugin.HELD.set()
        first.join(60)
    assert answers[0].status == 200 and answers[0].json["output"]["thread"] != "isolde-instance", answers[0].json
    assert d.done("ns1", queued.json["id"])["output"]["thread"] == "isolde-instance"
    assert d.get("/api/status").json["running"] == 0


def test_outcomes_beyond_keep_go_in_the_commit_of_the_newest(root: Path, serve: Callable[..., InProcess]) -> None:
    """Past ``keep_instances``, the oldest outcome and its timeline are dropped in the
    transaction that stores the newest: as many commits per instance as before the limit
    (a second durable commit each would halve a busy daemon's rate)."""
    from isolde.history.codec import timeline_owner

    write(root / "ns1" / "two.yaml", """
        states:
        - id: a
          type: setter
          variables:
          - key: n
            scope: workflow
            value: jq(.x)
          transition: b
        - id: b
          type: noop
    """)
    d = serve(root, config="[daemon]\nkeep_instances = 3\n")
    store = d.engine.store
    commits = store._live().commits

    def one(i: int) -> tuple[str, int]:
        before = commits.batches
        r = d.start("ns1", "two", {"x": i})
        assert r.status == 200 and r.json["status"] == "complete", r.json
        return r.json["id"], commits.batches - before

    first = [one(i) for i in range(3)]
    later = [one(i) for i in range(3, 8)]
    assert {n for _, n in later} == {first[-1][1]}, (first, later)
    listed = [i["id"] for i in d.get("/api/namespaces/ns1/instances").json["instances"]]
    assert listed == [iid for iid, _ in reversed(later[-3:])]
    for iid, _ in first + later[:2]:  # gone, timelines too
        assert d.get(f"/api/namespaces/ns1/instances/{iid}").status == 404
        assert store.list("ns1", "instance", timeline_owner(iid)) == []
    assert store.list("ns1", "instance", timeline_owner(later[-1][0])) != []


def test_outcomes_beyond_keep_are_dropped_a_tenth_at_a_time(root: Path, serve: Callable[..., InProcess]) -> None:
    write(root / "ns1" / "nop.yaml", """
        states:
        - id: a
          type: noop
    """)
    d = serve(root, config="[daemon]\nkeep_instances = 20\n")
    ids = [d.start("ns1", "nop").json["id"] for _ in range(22)]

    def listed() -> list[str]:
        return [i["id"] for i in d.get("/api/namespaces/ns1/instances?limit=100").json["instances"]]

    assert listed() == ids[::-1]  # 20 kept and 2 more (a tenth)
    ids.append(d.start("ns1", "nop").json["id"])
    assert listed() == ids[:2:-1]  # the 3 oldest dropped at once: 20 left
    assert all(d.get(f"/api/namespaces/ns1/instances/{iid}").status == 404 for iid in ids[:3])


# --------------------------------------------------------------------------- 5. restarts

SITTING = """
direktiv_api: workflow/v1
states:
- id: set
  type: setter
  variables:
  - key: scratch
    scope: instance
    value: jq(.n)
  - key: committed
    scope: workflow
    value: jq(.n)
  transition: sit
- id: sit
  log: sitting
  type: {kind}
  seconds: {seconds}
  transition: read
- id: read
  type: getter
  variables:
  - key: scratch
    scope: instance
"""


SITTING_LOG = 'msg="\\"sitting\\""'
"""How the daemon logs ``log: sitting``: the state's log line is JSON text (a quoted string,
as Direktiv wrote it), quoted again by logfmt."""


def _sitting(d: _Client, wf: str) -> str:
    """Start ``wf`` and return its id once it sits in state ``sit``: its ``log: sitting``
    line comes after the setter's writes (and the record with them) were committed."""
    r = d.start("ns1", wf, {"n": 5}, wait=False)
    assert r.status == 202, r.body
    iid: str = r.json["id"]
    d.wait_log(SITTING_LOG, f"id={iid}")
    return iid


def test_kill9_in_a_resumable_state_resumes(root: Path, serve_process: Callable[..., Served], plugin_cli: Cli) -> None:
    write(root / "ns1" / "sit.yaml", SITTING.format(kind="nap", seconds=30))
    d = serve_process(root)
    iid = _sitting(d, "sit")
    d.kill9()
    write(root / "ns1" / "sit.yaml", SITTING.format(kind="nap", seconds=0.2))  # a shorter nap this time
    d = serve_process(root)
    d.wait_log("resuming instance")
    done = d.ended(iid)
    assert done["status"] == "complete", done
    assert done["resumed"] is True
    assert done["output"]["var"] == {"scratch": 5}  # its instance variable survived the crash
    assert plugin_cli("vars", "list", "-n", "ns1", "--instance", iid).stdout == ""  # ... and is gone now
    assert plugin_cli("vars", "get", "committed", "-n", "ns1", "-w", "sit").stdout == "5"


def test_kill9_in_an_unsafe_state_fails_interrupted(root: Path, serve_process: Callable[..., Served], plugin_cli: Cli) -> None:
    write(root / "ns1" / "sit.yaml", SITTING.format(kind="poke", seconds=30))
    d = serve_process(root)
    iid = _sitting(d, "sit")
    d.kill9()
    d = serve_process(root)
    info = d.get(f"/api/namespaces/ns1/instances/{iid}").json
    assert info["status"] == "failed" and info["error"]["code"] == "interrupted", info
    assert "poke" in info["error"]["message"]
    assert plugin_cli("vars", "list", "-n", "ns1", "--instance", iid).stdout == ""
    assert plugin_cli("vars", "get", "committed", "-n", "ns1", "-w", "sit").stdout == "5"  # nothing committed is lost
    assert d.get(f"/api/namespaces/ns1/instances/{iid}/logs").status == 200


def test_kill9_in_a_delay_state(root: Path, serve_process: Callable[..., Served], plugin_cli: Cli) -> None:
    """The built-in ``delay``: resumed when its type says it is safe, else interrupted."""
    write(root / "ns1" / "wait.yaml", SITTING.format(kind="delay", seconds=0).replace("seconds: 0", "duration: PT1S"))
    d = serve_process(root)
    assert d.workflows("ns1")["wait"]["serving"], "the built-in delay state must be installed"
    iid = _sitting(d, "wait")
    d.kill9()
    d = serve_process(root)
    done = d.ended(iid)
    import isolde

    with isolde.Engine(data_dir=plugin_cli.data_dir / "probe", config={}) as probe:
        resumable = probe.registry.state_types["delay"].resumable
    if resumable:
        assert done["status"] == "complete" and done["resumed"] and done["output"]["var"] == {"scratch": 5}, done
    else:
        assert done["status"] == "failed" and done["error"]["code"] == "interrupted", done
    assert plugin_cli("vars", "list", "-n", "ns1", "--instance", iid).stdout == ""
    assert plugin_cli("vars", "get", "committed", "-n", "ns1", "-w", "wait").stdout == "5"


def test_sigterm_stops_gracefully_and_the_next_start_resumes(root: Path, serve_process: Callable[..., Served], plugin_cli: Cli) -> None:
    write(root / "ns1" / "sit.yaml", SITTING.format(kind="nap", seconds=30))
    write(root / "ns1" / "quick.yaml", NOOP.format(word="quick"))
    d = serve_process(root, config="[daemon]\nstop_grace = 0.3\n")
    iid = _sitting(d, "sit")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 10
    assert "instances still running at stop" in d.log_text()
    write(root / "ns1" / "sit.yaml", SITTING.format(kind="nap", seconds=0.1))
    d = serve_process(root)
    done = d.ended(iid)
    assert done["status"] == "complete", done
    assert plugin_cli("vars", "list", "-n", "ns1", "--instance", iid).stdout == ""


LOCKED = """
direktiv_api: workflow/v1
states:
- id: get
  type: getter
  variables:
  - key: x
    scope: namespace
    lock: true
  transition: mark
- id: mark
  type: setter
  variables:
  - key: seen
    scope: namespace
    value: jq(.var.x)
  transition: sit
- id: sit
  log: sitting
  type: nap
  seconds: {seconds}
  transition: put
- id: put
  type: setter
  variables:
  - key: x
    scope: namespace
    value: jq(.var.x + 1)
"""


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_a_resumed_instance_that_held_a_lock_reads_again(
    root: Path, serve_process: Callable[..., Served], data_dir: Path, how: str
) -> None:
    """Issue 12: stopped after a ``lock: true`` getter, the instance must not resume past
    it with the value it read (x went from 3 back to 1): it re-runs the getter."""
    write(root / "ns1" / "inc.yaml", LOCKED.format(seconds=30))
    d = serve_process(root, config="[daemon]\nstop_grace = 0.2\n")
    assert d.request("PUT", "/api/namespaces/ns1/variables/x", "0", {"Content-Type": "application/json"}).status == 201
    r = d.start("ns1", "inc", wait=False)
    iid = r.json["id"]
    d.wait_log(SITTING_LOG, f"id={iid}")  # read 0 and wrote `seen`, holds the lock
    if how == "kill9":
        d.kill9()
    else:
        assert d.stop() == 0
    from isolde.store import LmdbStore, Put, Ref

    store = LmdbStore(data_dir)  # a newer write while no daemon runs
    try:
        store.write([Put(Ref("ns1", "namespace", "", "x"), b"3", "application/json")])
    finally:
        store.close()
    write(root / "ns1" / "inc.yaml", LOCKED.format(seconds=0))
    d = serve_process(root)
    done = d.ended(iid)
    assert done["status"] == "complete", done
    assert d.get("/api/namespaces/ns1/variables/x").body == b"4"  # read again under the lock: 3 + 1
    assert d.get("/api/namespaces/ns1/variables/seen").body == b"3"


def _hanging_action(root: Path, record: Path) -> None:
    """``call.yaml``: a setter (instance + workflow variable), then an action on the probe
    isolate that hangs until its ``DELETE`` (or 30 s), then a getter."""
    probe = Path(__file__).resolve().parent / "isolates" / "probe.py"
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(probe)], "env": {"RECORD": str(record)}}
    write(root / "ns1" / "call.yaml", SITTING.format(kind="noop", seconds=0).replace(
        "  type: noop\n  seconds: 0\n", "  type: action\n  action:\n    function: probe\n    input: {op: hang, seconds: 30}\n"
    ).replace("states:", "functions:\n- " + json.dumps(fn) + "\nstates:"))


def _reap_orphans(record: Path) -> None:
    """End the probe isolate a ``kill -9``-ed daemon left behind: the process whose
    environment carries this test's own ``RECORD`` path (nothing else matches it)."""
    want = f"RECORD={record}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env:
            try:
                os.kill(int(entry.name), signal.SIGTERM)
            except ProcessLookupError:
                pass


def _calls(record: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_stopped_during_an_action_the_restart_marks_it_interrupted(
    root: Path, serve_process: Callable[..., Served], cli: Cli, tmp_path: Path, how: str
) -> None:
    record = tmp_path / "probe.jsonl"
    _hanging_action(root, record)
    d = serve_process(root, config="[daemon]\nstop_grace = 0.2\n[sidecar]\nport = 0\n")
    assert d.workflows("ns1")["call"]["valid"], d.workflows("ns1")["call"]["errors"]
    iid = _sitting(d, "call")
    eventually(lambda: [c for c in _calls(record) if c["method"] == "POST"])
    if how == "kill9":
        d.kill9()
        _reap_orphans(record)  # the killed daemon could not stop its isolate
    else:
        assert d.stop() == 0
    d = serve_process(root, config="[sidecar]\nport = 0\n")
    info = d.get(f"/api/namespaces/ns1/instances/{iid}").json
    assert info["status"] == "failed" and info["error"]["code"] == "interrupted" and info["state"] == "sit", info
    assert "type action" in info["error"]["message"]
    assert cli("vars", "list", "-n", "ns1", "--instance", iid).stdout == ""
    assert cli("vars", "get", "committed", "-n", "ns1", "-w", "call").stdout == "5"
    assert len([c for c in _calls(record) if c["method"] == "POST"]) == 1  # never called twice


def test_sigterm_sends_delete_to_actions_in_flight(root: Path, serve: Callable[..., InProcess], tmp_path: Path) -> None:
    record = tmp_path / "probe.jsonl"
    _hanging_action(root, record)
    d = serve(root, config="[daemon]\nstop_grace = 0.2\n[sidecar]\nport = 0\n")
    _sitting(d, "call")
    posted = eventually(lambda: [c for c in _calls(record) if c["method"] == "POST"])
    assert d.stop() == 0
    assert any(c["method"] == "DELETE" and c["aid"] == posted[0]["aid"] for c in _calls(record)), _calls(record)


# --------------------------------------------------------------------------- 6. operations


def test_cli_works_beside_the_daemon(root: Path, serve: Callable[..., InProcess], cli: Cli, tmp_path: Path) -> None:
    write(root / "ns1" / "count.yaml", """
        direktiv_api: workflow/v1
        states:
        - id: get
          type: getter
          variables:
          - key: n
            scope: namespace
          transition: set
        - id: set
          type: setter
          variables:
          - key: n
            scope: namespace
            value: jq((.var.n // 0) + 1)
    """)
    d = serve(root)
    assert cli("vars", "set", "n", "10", "-n", "ns1").code == 0
    assert d.start("ns1", "count").status == 200
    assert d.get("/api/namespaces/ns1/variables/n").body == b"11"
    r = cli("run", str(root / "ns1" / "count.yaml"), "-n", "ns1")
    assert r.code == 0, r.stderr
    assert cli("vars", "get", "n", "-n", "ns1").stdout == "12"
    assert d.start("ns1", "count").status == 200
    assert d.get("/api/namespaces/ns1/variables/n").body == b"13"


def test_logs_are_structured_and_verbose_adds_debug(root: Path, serve_process: Callable[..., Served]) -> None:
    write(root / "ns1" / "flow.yaml", NOOP.format(word="x").replace("type: noop", "type: noop\n  log: jq(.says)"))
    d = serve_process(root, "--verbose")
    for line in d.log_text().splitlines():
        assert line.startswith("ts=") and " level=" in line and " msg=" in line, line
    assert d.start("ns1", "flow").status == 200
    d.wait_log("level=debug msg=\"instance complete\"")


def test_one_daemon_per_data_directory(root: Path, serve_process: Callable[..., Served]) -> None:
    d = serve_process(root)
    other = serve_process(root, ready=False)
    assert other.proc.wait(30) == 2
    other._close()
    assert f"another isolde serve (pid {d.proc.pid})" in other.log_text()
    assert d.get("/api/namespaces").status == 200


def test_refuses_a_missing_folder_and_a_public_api_without_token(tmp_path: Path, cli: Cli, root: Path) -> None:
    r = cli("serve", str(tmp_path / "nope"), "--api", "127.0.0.1:0")
    assert r.code == 2 and "not a directory" in r.stderr
    r = cli("serve", str(root), "--api", "0.0.0.0:0", timeout=30)
    assert r.code == 2 and "without a token" in r.stderr, r.stderr


# --------------------------------------------------------------------------- 7. interfaces


class TestLmdbInstanceRecords(InstanceRecordsConformance):
    """The LMDB records pass the suite every ``InstanceRecords`` backend runs."""

    @pytest.fixture
    def records(self, tmp_path: Path) -> Iterator[Any]:
        from isolde.daemon import LmdbInstanceRecords
        from isolde.store import LmdbStore

        store = LmdbStore(tmp_path / "data")
        try:
            yield LmdbInstanceRecords(store, keep=self.KEEP)
        finally:
            store.close()
