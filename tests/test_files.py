"""The files package (core/files/): the action folder, files: in, out/<scope>/ back, with a real LMDB store."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import isolde

from helpers import tree, wait_until

from isolde import WorkflowError
from isolde.files import (
    DIR_MIME,
    FILE_MIME,
    INLINE_MAX,
    LIMIT_CODE,
    UNSAFE_CODE,
    ActionFolder,
    ArchiveLimits,
    FileSpec,
    OutWatcher,
)
from isolde.store import LmdbStore, Put, Ref

NS, WF, IID = "ns", "wf", "inst-1"


def ref(scope: str, key: str) -> Ref:
    return Ref(NS, scope, {"instance": IID, "workflow": WF, "namespace": ""}[scope], key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    with LmdbStore(str(tmp_path / "db"), durable=False) as s:
        yield s


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[ActionFolder]:
    base = tmp_path / "actions"
    base.mkdir()
    with ActionFolder(base=str(base)) as f:
        yield f


class Value(io.BytesIO):
    """A stored value as the readable stream the folder reads (``store.open(ref)``'s shape)."""

    def __init__(self, data: bytes, mime: str) -> None:
        super().__init__(data)
        self.mime = mime
        self.size = len(data)


class Trickle(Value):
    """A stream that hands out at most 4093 bytes per read, as a pipe or socket may."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(4093 if size is None or size < 0 or size > 4093 else size)


Readers = Callable[[str, str], Any]


@pytest.fixture(params=["whole", "trickle"])
def readers(request: pytest.FixtureRequest, store: LmdbStore) -> Iterator[Readers]:
    """``open_value(scope, key)`` over the real store: whole reads, and reads that
    come in small odd pieces.  Every stream the folder opens must be closed."""
    opened: list[Value] = []
    cls = Value if request.param == "whole" else Trickle

    def open_value(scope: str, key: str) -> Value | None:
        var = store.get(ref(scope, key))
        if var is None:
            return None
        opened.append(cls(bytes(var.data), var.mime))
        return opened[-1]

    yield open_value
    assert all(v.closed for v in opened), "a value stream was left open"


def put(store: LmdbStore, scope: str, key: str, data: bytes, mime: str = "application/octet-stream") -> None:
    store.write([Put(ref(scope, key), data, mime)])


def make_tar(files: dict[str, bytes], *, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()




def write(folder: ActionFolder, readers: Readers, *specs: FileSpec) -> None:
    folder.write_files(list(specs), readers)


# --------------------------------------------------------------------------- the folder itself


def test_folder_layout_mode_and_removal(tmp_path: Path) -> None:
    base = tmp_path / "b"
    base.mkdir()
    f = ActionFolder(base=str(base))
    path = f.path
    assert path.parent == base and path.name.startswith("isolde-action-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert sorted(os.listdir(path / "out")) == ["instance", "namespace", "workflow"]
    f.close()
    f.close()  # idempotent
    assert not path.exists()
    assert os.listdir(base) == []
    with pytest.raises(RuntimeError):
        f.collect()


def test_keep_leaves_the_folder(tmp_path: Path) -> None:
    with ActionFolder(base=str(tmp_path), keep=True) as f:
        (f.path / "out" / "instance" / "x").write_bytes(b"1")
        assert [o[1] for o in f.collect()] == ["x"]
    assert (f.path / "out" / "instance" / "x").read_bytes() == b"1"
    assert [p for p in os.listdir(tmp_path) if p.startswith("isolde-stage-")] == []


def test_close_removes_what_an_isolate_made_read_only(tmp_path: Path) -> None:
    with ActionFolder(base=str(tmp_path)) as f:
        ro = f.path / "out" / "instance" / "ro"
        ro.mkdir()
        (ro / "file").write_bytes(b"x")
        ro.chmod(0o500)
        path = f.path
    assert not path.exists()


def test_forgotten_folder_is_removed_when_collected(tmp_path: Path) -> None:
    f = ActionFolder(base=str(tmp_path))
    path = f.path
    del f
    assert not path.exists()


# --------------------------------------------------------------------------- files: in


def test_plain_with_and_without_as(folder: ActionFolder, store: LmdbStore, readers: Readers) -> None:
    payload = os.urandom(20_000)
    put(store, "instance", "data", payload)
    put(store, "workflow", "cfg", b'{"a":1}', "application/json")
    write(folder, readers, FileSpec("data"), FileSpec("cfg", "workflow", "conf/settings.json"))
    assert (folder.path / "data").read_bytes() == payload
    assert (folder.path / "conf" / "settings.json").read_bytes() == b'{"a":1}'


def test_missing_variable_gives_empty_file(folder: ActionFolder, readers: Readers) -> None:
    write(folder, readers, FileSpec("nothing", "namespace"), FileSpec("nothing", "namespace", as_="other"))
    assert (folder.path / "nothing").read_bytes() == b""
    assert (folder.path / "other").read_bytes() == b""


def test_base64_with_and_without_as(folder: ActionFolder, store: LmdbStore, readers: Readers) -> None:
    import base64

    raw = os.urandom(10_001)
    enc = base64.b64encode(raw)
    put(store, "instance", "b", enc)
    put(store, "instance", "wrapped", b"\n".join(enc[i : i + 76] for i in range(0, len(enc), 76)) + b"\n")
    # what a setter stores by default for a string value: a JSON string
    put(store, "instance", "quoted", b'"' + base64.b64encode(b"hello") + b'"', "application/json")
    write(folder, readers, FileSpec("b", type="base64"), FileSpec("wrapped", type="base64", as_="w.bin"), FileSpec("quoted", type="base64", as_="q"))
    assert (folder.path / "b").read_bytes() == raw
    assert (folder.path / "w.bin").read_bytes() == raw
    assert (folder.path / "q").read_bytes() == b"hello"


@pytest.mark.parametrize("bad", [b"not*base64", b"YWJj\x00", b'"unterminated', b"YQ", b"[1,2]"])
def test_bad_base64_is_an_error(folder: ActionFolder, store: LmdbStore, readers: Readers, bad: bytes) -> None:
    put(store, "instance", "b", bad)
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("b", type="base64"))
    assert info.value.code == "isolde.files.badBase64"
    assert "'b'" in info.value.msg


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_tar_types_with_and_without_as(folder: ActionFolder, store: LmdbStore, readers: Readers, kind: str) -> None:
    files = {"main.go": b"package main\n", "pkg/util.go": b"package pkg\n", "big.bin": os.urandom(300_000)}
    put(store, "instance", "src", make_tar(files, gz=kind == "tar.gz"))
    write(folder, readers, FileSpec("src", type=kind), FileSpec("src", type=kind, as_="build/src"))
    expected = {"main.go": files["main.go"], "pkg": None, "pkg/util.go": files["pkg/util.go"], "big.bin": files["big.bin"]}
    assert tree(folder.path / "src") == expected
    assert tree(folder.path / "build" / "src") == expected


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_missing_archive_gives_empty_directory(folder: ActionFolder, readers: Readers, kind: str) -> None:
    write(folder, readers, FileSpec("gone", type=kind), FileSpec("gone", type=kind, as_="d/e"))
    assert (folder.path / "gone").is_dir() and os.listdir(folder.path / "gone") == []
    assert (folder.path / "d" / "e").is_dir()


def test_directory_round_trip_through_a_variable(folder: ActionFolder, store: LmdbStore, readers: Readers, tmp_path: Path) -> None:
    """A directory an action left in out/ is a tar.gz a later action unpacks."""
    site = folder.path / "out" / "workflow" / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_bytes(b"<h1>hi</h1>")
    (site / "css" / "a.css").write_bytes(b"body{}")
    [(scope, key, data, mime)] = folder.collect()
    assert (scope, key, mime) == ("workflow", "site", DIR_MIME)
    put(store, scope, key, data, mime)
    with ActionFolder(base=str(tmp_path)) as second:
        second.write_files([FileSpec("site", "workflow", type="tar.gz")], readers)
        assert tree(second.path / "site") == {"index.html": b"<h1>hi</h1>", "css": None, "css/a.css": b"body{}"}


def test_bad_archive_member_fails_and_extracts_nothing(folder: ActionFolder, store: LmdbStore, readers: Readers) -> None:
    put(store, "instance", "evil", make_tar({"ok.txt": b"fine", "../escape": b"evil"}))
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("evil", type="tar.gz"))
    assert info.value.code == UNSAFE_CODE and "'../escape'" in info.value.msg and "'evil'" in info.value.msg
    assert sorted(os.listdir(folder.path)) == ["out"]
    assert not (folder.path.parent / "escape").exists()


def test_archive_cap_from_folder_limits(tmp_path: Path, store: LmdbStore, readers: Readers) -> None:
    put(store, "instance", "big", make_tar({"zeros": bytes(2 << 20)}))
    with ActionFolder(base=str(tmp_path), limits=ArchiveLimits(max_member_bytes=1 << 20)) as f:
        with pytest.raises(WorkflowError) as info:
            f.write_files([FileSpec("big", type="tar.gz")], readers)
        assert info.value.code == LIMIT_CODE
        assert sorted(os.listdir(f.path)) == ["out"]


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "..", "/", "."])
def test_as_must_stay_inside(folder: ActionFolder, readers: Readers, bad: str) -> None:
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("k", as_=bad))
    assert info.value.code == "isolde.files.unsafePath"
    assert repr(bad) in info.value.msg
    assert not (folder.path.parent / "x").exists()


def test_leading_slash_in_as_or_key_lands_inside(folder: ActionFolder, store: LmdbStore, readers: Readers) -> None:
    put(store, "instance", "k", b"v")
    write(folder, readers, FileSpec("k", as_="/etc/passwd"))
    assert (folder.path / "etc" / "passwd").read_bytes() == b"v"


def test_conflicting_targets(folder: ActionFolder, store: LmdbStore, readers: Readers) -> None:
    put(store, "instance", "k", b"v")
    write(folder, readers, FileSpec("k", as_="f"))
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("k", as_="f/below"))
    assert info.value.code == "isolde.files.conflict" and "'f'" in info.value.msg
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("k", as_="out"))
    assert info.value.code == "isolde.files.conflict"


def test_unknown_type(folder: ActionFolder, readers: Readers) -> None:
    with pytest.raises(WorkflowError) as info:
        write(folder, readers, FileSpec("k", type="zip"))
    assert info.value.code == "isolde.files.badType" and "tar.gz" in info.value.msg


def test_filespec_from_mapping() -> None:
    assert FileSpec.from_mapping({"key": "a"}) == FileSpec("a", "instance", None, "plain")
    assert FileSpec.from_mapping({"key": "a", "scope": "workflow", "as": "x/y", "type": "tar"}) == FileSpec("a", "workflow", "x/y", "tar")
    assert FileSpec.from_mapping({"key": "a", "permissions": "0750"}).mode == 0o750


# --------------------------------------------------------------------------- out/<scope>/


def test_collect_files_of_every_scope(folder: ActionFolder) -> None:
    out = folder.path / "out"
    (out / "namespace" / "a").write_bytes(b"5")
    (out / "workflow" / "b").write_bytes(b"7")
    (out / "instance" / "d").write_bytes(b"13")
    (out / "instance" / "c").write_bytes(b"\x00\xff")
    assert folder.collect() == [
        ("instance", "c", b"\x00\xff", FILE_MIME),
        ("instance", "d", b"13", FILE_MIME),
        ("workflow", "b", b"7", FILE_MIME),
        ("namespace", "a", b"5", FILE_MIME),
    ]


def test_collect_nothing(folder: ActionFolder) -> None:
    assert folder.collect() == []


def test_collect_directory_as_tar_gz(folder: ActionFolder) -> None:
    d = folder.path / "out" / "instance" / "result"
    (d / "z" / "deep").mkdir(parents=True)
    (d / "b.txt").write_bytes(b"b")
    (d / "a.txt").write_bytes(b"a")
    (d / "z" / "deep" / "c.txt").write_bytes(b"c")
    [(scope, key, data, mime)] = folder.collect()
    assert (scope, key, mime) == ("instance", "result", DIR_MIME)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        names = tf.getnames()
        assert tf.extractfile("z/deep/c.txt").read() == b"c"  # type: ignore[union-attr]
    assert names == ["a.txt", "b.txt", "z", "z/deep", "z/deep/c.txt"]


def test_invalid_name_fails_and_returns_nothing(folder: ActionFolder) -> None:
    out = folder.path / "out"
    (out / "instance" / "good").write_bytes(b"1")
    (out / "workflow" / "bad name!").write_bytes(b"2")
    with pytest.raises(WorkflowError) as info:
        folder.collect()
    assert info.value.code == "direktiv.var.invalidKey"
    assert "out/workflow/bad name!" in info.value.msg


def test_hidden_file_is_an_invalid_name(folder: ActionFolder) -> None:
    (folder.path / "out" / "namespace" / ".tmp123").write_bytes(b"x")
    with pytest.raises(WorkflowError) as info:
        folder.collect_outputs()
    assert info.value.code == "direktiv.var.invalidKey" and ".tmp123" in info.value.msg


def test_symlink_in_out_is_not_followed(folder: ActionFolder, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET")
    (folder.path / "out" / "instance" / "ok").write_bytes(b"fine")
    (folder.path / "out" / "instance" / "leak").symlink_to(secret)
    with pytest.raises(WorkflowError) as info:
        folder.collect()
    assert info.value.code == "isolde.files.unsafe"
    assert "out/instance/leak" in info.value.msg and "symbolic link" in info.value.msg
    assert "TOPSECRET" not in str(info.value)


def test_symlink_inside_an_out_directory_is_refused(folder: ActionFolder, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET")
    d = folder.path / "out" / "namespace" / "bundle"
    d.mkdir()
    (d / "leak").symlink_to(secret)
    with pytest.raises(WorkflowError) as info:
        folder.collect()
    assert info.value.code == UNSAFE_CODE
    assert "out/namespace/bundle" in info.value.msg and "'leak'" in info.value.msg


def test_scope_directory_replaced_by_symlink(folder: ActionFolder, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stolen").write_bytes(b"TOPSECRET")
    scope_dir = folder.path / "out" / "workflow"
    scope_dir.rmdir()
    scope_dir.symlink_to(elsewhere)
    with pytest.raises(WorkflowError) as info:
        folder.collect()
    assert info.value.code == "isolde.files.unsafe" and "out/workflow" in info.value.msg


def test_removed_scope_directory_is_empty(folder: ActionFolder) -> None:
    (folder.path / "out" / "instance").rmdir()
    (folder.path / "out" / "namespace" / "n").write_bytes(b"1")
    assert folder.collect() == [("namespace", "n", b"1", FILE_MIME)]


def test_fifo_in_out_is_refused_without_blocking(folder: ActionFolder) -> None:
    os.mkfifo(folder.path / "out" / "instance" / "pipe")
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            folder.collect()
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "collect() blocked on a FIFO"
    [err] = result
    assert isinstance(err, WorkflowError) and err.code == "isolde.files.unsafe"
    assert "out/instance/pipe" in err.msg and "FIFO" in err.msg


def test_variable_size_cap(tmp_path: Path) -> None:
    with ActionFolder(base=str(tmp_path), max_variable_bytes=1000) as f:
        (f.path / "out" / "instance" / "big").write_bytes(b"x" * 1001)
        with pytest.raises(WorkflowError) as info:
            f.collect()
        assert info.value.code == "direktiv.limits.variable" and "out/instance/big" in info.value.msg
        os.unlink(f.path / "out" / "instance" / "big")
        d = f.path / "out" / "instance" / "dir"
        d.mkdir()
        (d / "noise").write_bytes(os.urandom(5000))  # its tar.gz is bigger than 1000 bytes
        with pytest.raises(WorkflowError) as info:
            f.collect()
        assert info.value.code == "direktiv.limits.variable" and "out/instance/dir" in info.value.msg


def test_large_outputs_are_staged_and_mapped(folder: ActionFolder) -> None:
    big = os.urandom(INLINE_MAX + 12345)
    (folder.path / "out" / "instance" / "big").write_bytes(big)
    (folder.path / "out" / "instance" / "small").write_bytes(b"s")
    outs = folder.collect_outputs()
    assert [(o.key, o.size) for o in outs] == [("big", len(big)), ("small", 1)]
    view = outs[0].view()
    assert view.readonly and bytes(view) == big
    with outs[0].open() as fh:
        assert fh.read(10) == big[:10]
    assert outs[1].view() == b"s" and outs[1].read_bytes() == b"s"
    folder.close()
    assert bytes(view[:100]) == big[:100]  # the mapping outlives the staged file
    view.release()


@pytest.fixture(params=["private", "shared"])
def watcher(request: pytest.FixtureRequest) -> Iterator[OutWatcher | None]:
    """A folder's own observer, or one shared like an engine shares it."""
    if request.param == "private":
        yield None
        return
    w = OutWatcher()
    yield w
    w.close()


def wait_staged(folder: ActionFolder, scope: str, name: str) -> str:
    """The watcher's staged copy (an internal: the only way to see the cache work)."""
    deadline = time.monotonic() + 60  # a hang guard: far above what a loaded machine needs
    stage = folder._res.stage
    while stage.known(scope, name) is None:
        assert time.monotonic() < deadline, f"the watcher never staged {scope}/{name}"
        time.sleep(0.01)
    return stage._copies[(scope, name)][1]


def test_watcher_stages_closed_files_and_collect_stays_authoritative(folder: ActionFolder, watcher: OutWatcher | None) -> None:
    folder.start_watch(watcher)
    target = folder.path / "out" / "namespace" / "report"
    first = os.urandom(INLINE_MAX + 1)
    target.write_bytes(first)
    wait_staged(folder, "namespace", "report")
    # same size, rewritten in place after staging: collect must see the new bytes
    second = bytes(b ^ 0xFF for b in first[:100]) + first[100:]
    with open(target, "r+b") as fh:
        fh.write(second[:100])
    (folder.path / "out" / "namespace" / "late").write_bytes(b"after")
    outs = folder.collect_outputs()
    assert [(o.key, o.read_bytes() == second) for o in outs] == [("late", False), ("report", True)]


def test_watcher_copy_is_used_when_unchanged(folder: ActionFolder, watcher: OutWatcher | None) -> None:
    folder.start_watch(watcher)
    tmp = folder.path / "out" / "instance" / "partial"
    data = os.urandom(INLINE_MAX + 1)
    tmp.write_bytes(data)
    os.rename(tmp, folder.path / "out" / "instance" / "final")  # moved in
    staged_path = wait_staged(folder, "instance", "final")
    [out] = folder.collect_outputs()
    assert out._path == staged_path and out.read_bytes() == data


def test_watcher_threads_end_with_the_folder(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with ActionFolder(base=str(tmp_path)) as f:
        f.start_watch()
        f.start_watch()  # once is enough
        (f.path / "out" / "instance" / "big").write_bytes(bytes(INLINE_MAX + 1))
        wait_staged(f, "instance", "big")
    assert set(threading.enumerate()) - before == set()


def test_shared_watcher_serves_many_folders(tmp_path: Path) -> None:
    w = OutWatcher()
    try:
        folders = [ActionFolder(base=str(tmp_path)) for _ in range(3)]
        for i, f in enumerate(folders):
            f.start_watch(w)
            (f.path / "out" / "workflow" / "data").write_bytes(bytes([i]) * (INLINE_MAX + 1))
        for i, f in enumerate(folders):
            wait_staged(f, "workflow", "data")
            [out] = f.collect_outputs()
            assert out.read_bytes()[:1] == bytes([i])
            f.close()
        # the observer outlives the folders, ready for the next action
        with ActionFolder(base=str(tmp_path)) as f:
            f.start_watch(w)
            (f.path / "out" / "instance" / "x").write_bytes(b"1")
            assert f.collect() == [("instance", "x", b"1", FILE_MIME)]
    finally:
        w.close()
    with pytest.raises(RuntimeError):
        OutWatcher.schedule(w, None, [])


# --------------------------------------------------------------------------- through the engine and the CLI

HERE = Path(__file__).resolve().parent
PROBE = HERE / "isolates" / "probe.py"


def file_modes(data: Any, request: Any) -> dict[str, int]:
    """A ``type: python`` function: the mode bits of the named files in its action folder."""
    folder = Path(request.temp_dir)
    return {name: stat.S_IMODE(os.stat(folder / name).st_mode) for name in data["names"]}


def modes_function(**files: str) -> str:
    entries = [{"key": name, "permissions": mode} for name, mode in files.items()]
    fn = {"id": "modes", "type": "python", "call": "test_files:file_modes", "files": entries}
    return "- " + json.dumps(fn)


def modes_workflow(**files: str) -> str:
    state = {"id": "a", "type": "action", "action": {"function": "modes", "input": {"names": sorted(files)}}}
    return f"functions:\n{modes_function(**files)}\nstates:\n- {json.dumps(state)}\n"


def test_permissions_never_give_setuid_or_group_and_other_write(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``permissions:`` is masked with 0o755 (issue 12): no setuid / setgid / sticky, no group or other write."""
    monkeypatch.syspath_prepend(str(HERE))
    with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}}) as eng:
        res = eng.run(modes_workflow(suid="4777", shared="0666", script="0750", private="0600"))
    assert res.ok, res.error
    assert res.output["return"] == {"suid": 0o755, "shared": 0o644, "script": 0o750, "private": 0o600}


def _action_folders(base: Path) -> set[str]:
    return {p.name for p in base.iterdir() if p.name.startswith("isolde-action-")}


def _hanging_run(tmp_path: Path, name: str, base: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A real ``isolde run`` whose action (with an input file) hangs in the probe isolate;
    returns once the isolate has the call, i.e. once the action folder exists."""
    record = tmp_path / f"{name}.jsonl"
    fn = {"id": "probe", "type": "process", "command": [sys.executable, str(PROBE)], "env": {"RECORD": str(record)}}
    state = {"id": "a", "type": "action", "action": {"function": "probe", "input": {"op": "hang", "seconds": 120},
                                                        "files": [{"key": "input.txt", "scope": "file"}]}}
    (tmp_path / "input.txt").write_text("unpacked input\n")
    wf = tmp_path / f"{name}.yaml"
    wf.write_text(f"functions:\n- {json.dumps(fn)}\nstates:\n- {json.dumps(state)}\n")
    config = tmp_path / "isolde.toml"
    config.write_text(f"[actions]\ntemp_dir = {json.dumps(str(base))}\n[sidecar]\nport = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
    cmd = [sys.executable, "-m", "isolde.cli", "run", str(wf), "--config", str(config), "--data-dir", str(tmp_path / f"{name}-data")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: record.exists() and '"POST"' in record.read_text() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, "isolde run ended before its isolate got the call"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc, record


def test_folders_of_a_killed_process_are_swept_and_live_ones_kept(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of ``isolde run`` leaves its action folder behind; the next engine's
    first action removes it, and leaves the folder of a live ``isolde run`` alone (issue 12)."""
    base = tmp_path / "actions"
    base.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dead, _ = _hanging_run(tmp_path, "dead", base)
        procs.append(dead)
        (dead_folder,) = _action_folders(base)
        assert (base / dead_folder / "input.txt").read_text() == "unpacked input\n"
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert _action_folders(base) == {dead_folder}  # nothing could clean up

        live, _ = _hanging_run(tmp_path, "live", base)
        procs.append(live)
        (live_folder,) = _action_folders(base) - {dead_folder}

        monkeypatch.syspath_prepend(str(HERE))
        with isolde.Engine(data_dir=data_dir, config={"sidecar": {"port": 0}, "actions": {"temp_dir": str(base)}}) as eng:
            res = eng.run(modes_workflow())
        assert res.ok, res.error
        assert _action_folders(base) == {live_folder}
        assert (base / live_folder / "input.txt").exists()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_sweep_removes_only_dead_owners_of_this_machine_and_never_follows_links(tmp_path: Path) -> None:
    from isolde.files import sweep_dead_folders

    base = tmp_path / "actions"
    base.mkdir()
    live = ActionFolder(base=str(base))
    kept = ActionFolder(base=str(base), keep=True)  # a debugging folder carries no owner
    mine = live.path.name.split("-")  # isolde-action-<pid>-<start>-<machine>-<random>
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead_pid = ended.pid  # reaped: no such process any more
    dead = base / f"isolde-action-{dead_pid}-1-{mine[4]}-x1"
    (dead / "out" / "instance").mkdir(parents=True)
    dead_stage = base / f"isolde-stage-{dead_pid}-1-{mine[4]}-x2"
    dead_stage.mkdir()
    elsewhere = base / f"isolde-action-{dead_pid}-1-00000000-x3"  # another host, boot or pid namespace
    elsewhere.mkdir()
    target = tmp_path / "precious"
    target.mkdir()
    (target / "f").write_text("keep me")
    (base / f"isolde-action-{dead_pid}-1-{mine[4]}-x4").symlink_to(target)
    unrelated = base / "isolde-action-notours"
    unrelated.mkdir()
    try:
        assert sweep_dead_folders(str(base)) == 2
        assert not dead.exists() and not dead_stage.exists()
        assert live.path.exists() and kept.path.exists() and elsewhere.exists() and unrelated.exists()
        assert (target / "f").read_text() == "keep me"
    finally:
        live.close()
        kept.close()
