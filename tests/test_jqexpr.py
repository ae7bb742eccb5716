"""Tests for isolde.jqexpr through its public API.

Why these matter: jq is where workflow authors' code meets untrusted data.  The tests pin the
safety promises of SPEC §7 (no environment or file access; a runaway program is cut off and the
engine keeps working) and the contract other modules are written against (error codes,
offsets into the program for validation messages, jq(...) template spans).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import pytest
from isolde.jqexpr import JqError, JqRuntime, find_templates, uses_js

BAD = "direktiv.jq.badCommand"
LIMIT = "direktiv.limits.jq"


def _worker_pids() -> list[int]:
    """PIDs of this process's children that are jq workers (read from /proc)."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == me and b"_jqworker" in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def rt() -> Iterator[JqRuntime]:
    runtime = JqRuntime(timeout=0.5)
    try:
        yield runtime
    finally:
        runtime.close()
    assert _worker_pids() == []


# -- compiling and running ------------------------------------------------------------------


def test_compile_cache_identity(rt: JqRuntime) -> None:
    p = rt.compile(".a + 1")
    assert rt.compile(".a + 1") is p
    assert rt.compile(".a+1") is not p
    other = JqRuntime()
    try:
        assert other.compile(".a + 1") is not p
    finally:
        other.close()
    assert p.source == ".a + 1"


def test_outputs(rt: JqRuntime) -> None:
    assert rt.compile(".a + 1").run({"a": 1}) == [2]
    assert rt.compile(".a + 1").first({"a": 41}) == 42
    assert rt.compile(".[]").run([1, "x", None]) == [1, "x", None]
    assert rt.compile(".[]").first([7, 8]) == 7
    assert rt.compile("empty").run({}) == []
    assert rt.compile(".var.x += 1").first({"var": {"x": 1}}) == {"var": {"x": 2}}
    assert rt.compile("$__loc__").first(None) == {"file": "<top-level>", "line": 1}


def test_first_without_output(rt: JqRuntime) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile("empty").first({})
    assert ei.value.code == BAD
    assert ei.value.msg == "jq produced no output"
    with pytest.raises(JqError) as ei:
        rt.compile("range(0)").first({})  # the guarded path
    assert (ei.value.code, ei.value.msg) == (BAD, "jq produced no output")


def test_runtime_error(rt: JqRuntime) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile(".a.b").run({"a": 1})
    assert ei.value.code == BAD
    assert "Cannot index number" in ei.value.msg
    assert ei.value.offset is None
    with pytest.raises(JqError) as ei:
        rt.compile('error("boom")').first({})
    assert (ei.value.code, ei.value.msg) == (BAD, "boom")
    with pytest.raises(JqError) as ei:  # same failure through the worker
        rt.compile('[range(2)] | error("boom")').first({})
    assert (ei.value.code, ei.value.msg) == (BAD, "boom")


def test_input_not_json(rt: JqRuntime) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile("{a: .}").first(object())
    assert ei.value.code == BAD
    with pytest.raises(JqError) as ei:
        rt.compile("[range(1)]").first(object())
    assert ei.value.code == BAD


def test_jqerror_fields() -> None:
    e = JqError(BAD, "nope", 3)
    assert (e.code, e.msg, e.offset) == (BAD, "nope", 3)
    assert "nope" in str(e) and BAD in str(e)
    assert JqError(LIMIT, "x").offset is None


# -- compile errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset"),
    [
        (".a |||", 4),  # the second '|' is the unexpected token
        ("\n\n  .a ||| .b", 8),
        ('"é" |||', 5),  # jq counts bytes; offsets are characters
        (".a | foo(1)", 5),  # undefined function: points at its name
        ('.a | "abc', 5),  # unterminated string: its opening quote
        ('"x\\(1 + "', 2),  # unterminated interpolation: its "\("
    ],
)
def test_compile_error_offsets(rt: JqRuntime, source: str, offset: int) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile(source)
    assert ei.value.code == BAD
    assert ei.value.offset == offset
    assert "jq: error" not in ei.value.msg
    assert "compile error" not in ei.value.msg


def test_compile_error_message_is_clean(rt: JqRuntime) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile(".a |||")
    assert ei.value.msg == "syntax error, unexpected '|'"


@pytest.mark.parametrize("source", ["é", ".a | ²", "1 + `x`", "{", ")"])
def test_garbage_is_a_compile_error(rt: JqRuntime, source: str) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile(source)
    assert ei.value.code == BAD
    assert ei.value.offset is not None and 0 <= ei.value.offset <= len(source)


def test_empty_program(rt: JqRuntime) -> None:
    for src in ("", "  # only a comment"):
        with pytest.raises(JqError) as ei:
            rt.compile(src)
        assert ei.value.code == BAD


# -- forbidden and allowed identifiers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "name"),
    [
        (".a | env", 5, "env"),
        ("env.PATH", 0, "env"),
        ("$ENV.HOME", 0, "$ENV"),
        ("{$ENV}", 1, "$ENV"),
        ("{a: env}", 4, "env"),
        ("{(env | keys[0]): 1}", 2, "env"),
        ('"x\\(env)"', 4, "env"),
        ('@base64 "\\(env.HOME)"', 11, "env"),
        ("input", 0, "input"),
        ("[inputs]", 1, "inputs"),
        ("first(inputs)", 6, "inputs"),
        ("input_filename", 0, "input_filename"),
        ("input_line_number", 0, "input_line_number"),
        ("debug", 0, "debug"),
        ('debug("x")', 0, "debug"),
        ("stderr", 0, "stderr"),
        ("halt", 0, "halt"),
        ("halt_error", 0, "halt_error"),
        ('"bye" | halt_error(1)', 8, "halt_error"),
        ('import "a" as a; .', 0, "import"),
        ('include "a"; .', 0, "include"),
        ('"a" | modulemeta', 6, "modulemeta"),
        ("get_search_list", 0, "get_search_list"),
        ("$__prog_args", 0, "$__prog_args"),
        ("get_prog_origin", 0, "get_prog_origin"),
        ("get_jq_origin", 0, "get_jq_origin"),
        ("def env: 1; env", 4, "env"),
        ("# env\n.a | input", 11, "input"),
        ("# comment \\\\\nenv", 13, "env"),  # "\\" escapes itself: the comment ends
    ],
)
def test_forbidden(rt: JqRuntime, source: str, offset: int, name: str) -> None:
    with pytest.raises(JqError) as ei:
        rt.compile(source)
    assert ei.value.code == BAD
    assert ei.value.offset == offset
    assert f"'{name}'" in ei.value.msg
    assert "not allowed" in ei.value.msg


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("{env: 1}", {}, {"env": 1}),
        ("{a: 1, input: 2}", {}, {"a": 1, "input": 2}),
        ("{env}", {"env": 3}, {"env": 3}),
        (".env", {"env": 4}, 4),
        ('."input"', {"input": 5}, 5),
        (".a.halt", {"a": {"halt": 6}}, 6),
        ('"env"', {}, "env"),
        ('"\\(.a) env input"', {"a": 1}, "1 env input"),
        (". as $env_x | $env_x.a", {"a": 7}, 7),
        (". as $env | $env.a", {"a": 8}, 8),
        (". as {env: $e} | $e", {"env": 9}, 9),
        ('{"debug": 1}', {}, {"debug": 1}),
        ("# env and input in a comment\n.a", {"a": 10}, 10),
        ("$__loc__.line", {}, 1),
        ("# backslash continues a comment \\\nenv\n.a", {"a": 11}, 11),
    ],
)
def test_not_a_use(rt: JqRuntime, source: str, data: object, expected: object) -> None:
    assert rt.compile(source).first(data) == expected


# -- guarded classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "guarded"),
    [
        ("def f: f; f", True),
        (".a + 1", False),
        ("[range(3)]", True),
        ("repeat(1)", True),
        ("[limit(3; repeat(1))]", True),
        ("[.[] | while(. < 3; . + 1)]", True),
        ("until(. > 3; . + 1)", True),
        ("recurse(.a)", True),
        ("recurse(.a; . != null)", True),
        ("recurse", False),
        ("[..]", False),
        ("[paths]", False),
        ('walk(if type == "number" then . + 1 else . end)', False),
        ("[.[] | combinations]", True),
        ('test("a+")', True),
        ('[match("a"; "g")]', True),
        ('capture("(?<x>a)")', True),
        ('[scan("a")]', True),
        ('sub("a"; "b")', True),
        ('gsub("a"; "b")', True),
        ('[splits(",")]', True),
        ('split(",")', False),
        ('split(","; "g")', True),
        ("ascii_downcase", False),
        ("reduce .[] as $x (0; . + $x)", False),
        ("[foreach .[] as $x (0; . + $x)]", False),
        ("[limit(2; .[])]", False),
        ('getpath(["a"])', False),
        ("{range: 1, test: 2, def: 3}", False),
        (".range", False),
        (".var.x += 1", False),
        (".a[0] = 1", False),
        ('.a["k"] |= 1', False),
        (".a[.i] = 1", True),
        ("setpath([0]; 1)", True),
        (".a + 1e9", True),
        ("if . then [.a] else 1 end", False),
    ],
)
def test_guarded_classification(rt: JqRuntime, source: str, guarded: bool) -> None:
    assert rt.compile(source).guarded is guarded


def test_guarded_results_match_fast_path(rt: JqRuntime) -> None:
    assert rt.compile("[range(3)]").first({}) == [0, 1, 2]
    assert rt.compile("range(3)").run({}) == [0, 1, 2]
    assert rt.compile("def inc: . + 1; inc").first(41) == 42
    assert rt.compile('[.[] | test("^a")]').first(["ab", "ba", "é"]) == [True, False, False]
    assert rt.compile("first(repeat(1))").first(None) == 1  # first() stops early
    data = {"s": "é\n\u0000", "n": [1.5, -2, None, True], "o": {"k": {}}}
    assert rt.compile("def id: .; id").first(data) == data


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["def f: f; f", "repeat(1)", "[range(1e12)] | length"])
def test_runaway_is_cut_off(rt: JqRuntime, source: str) -> None:
    assert rt.compile("[range(1)]").first({}) == [0]  # the worker is started
    with pytest.raises(JqError) as ei:
        rt.compile(source).run({})
    assert ei.value.code == LIMIT
    assert "0.5 s limit" in ei.value.msg
    assert "jq_timeout" in ei.value.msg
    # The engine keeps working: fast path and a fresh worker.
    assert rt.compile(".a").first({"a": 1}) == 1
    assert rt.compile("[range(2)]").first({}) == [0, 1]


def test_output_limit() -> None:
    runtime = JqRuntime(timeout=5.0, max_output=1000)
    try:
        with pytest.raises(JqError) as ei:
            runtime.compile("[range(10000)]").run({})
        assert ei.value.code == LIMIT
        assert "1000 bytes" in ei.value.msg
        assert runtime.compile("[range(3)]").first({}) == [0, 1, 2]
    finally:
        runtime.close()


def test_memory_bomb_kills_only_the_worker(rt: JqRuntime) -> None:
    prog = rt.compile(".[536870911] = 1 | length")  # aborts a jq process that runs out
    assert prog.guarded
    with pytest.raises(JqError) as ei:
        prog.run([])
    assert ei.value.code == LIMIT
    assert rt.compile("[range(2)]").first({}) == [0, 1]


# -- worker lifecycle ----------------------------------------------------------------------------


def test_close_stops_worker() -> None:
    runtime = JqRuntime(timeout=2.0)
    try:
        assert runtime.compile(".a").first({"a": 1}) == 1
        assert _worker_pids() == []  # the fast path never starts a worker
        assert runtime.compile("[range(1)]").first({}) == [0]
        assert len(_worker_pids()) == 1
        runtime.close()
        assert _worker_pids() == []
        runtime.close()  # idempotent
        assert runtime.compile("[range(1)]").first({}) == [0]  # restarts lazily
        assert len(_worker_pids()) == 1
    finally:
        runtime.close()
    assert _worker_pids() == []


def test_worker_env_is_minimal(rt: JqRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISOLDE_TEST_SECRET", "hunter2")
    assert rt.compile("[range(1)]").first({}) == [0]
    (pid,) = _worker_pids()
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0] for e in environ if e}
    assert b"ISOLDE_TEST_SECRET" not in names
    assert names <= {b"PATH", b"PYTHONPATH", b"PYTHONHOME", b"TZ", b"LC_CTYPE"}


def test_threads_share_runtime(rt: JqRuntime) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                assert rt.compile(f"[range({i})] | length + {j}").first({}) == i + j
                assert rt.compile(".x * 2").first({"x": i + j}) == 2 * (i + j)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- jq(...) templates ---------------------------------------------------------------------------


def _spans(text: str) -> list[str] | None:
    found = find_templates(text)
    if found is None:
        return None
    for start, end, inner in found:
        assert text[start:end] == "jq(" + inner + ")"
    return [inner for _, _, inner in found]


def test_find_templates() -> None:
    assert find_templates("plain text") is None
    assert find_templates("jq(.a)") == [(0, 6, ".a")]
    assert find_templates("x jq(.a) y jq(.b)") == [(2, 8, ".a"), (11, 17, ".b")]
    assert _spans('jq((.a|tostring) + ")")') == ['(.a|tostring) + ")"']
    assert _spans('a jq("(" + .x + "((") b') == ['"(" + .x + "(("']
    assert _spans('jq("\\(.a | tostring))")') == ['"\\(.a | tostring))"']
    assert _spans('jq("a\\"b)" + .c) tail "quote') == ['"a\\"b)" + .c']
    assert _spans("jq(.a # note )\n)") == [".a # note )\n"]
    assert _spans("jq()") == [""]
    assert _spans("é jq(é) ²") == ["é"]


def test_find_templates_unterminated() -> None:
    for text, offset in [
        ("jq(.a", 0),
        ("ok jq(.a | (.b)", 3),
        ('x jq(")"', 2),
        ('jq(")', 0),
        ("jq(.a) jq(", 7),
    ]:
        with pytest.raises(JqError) as ei:
            find_templates(text)
        assert ei.value.code == BAD
        assert ei.value.offset == offset
        assert "unbalanced jq(...)" in ei.value.msg


def test_uses_js() -> None:
    assert uses_js("plain") is None
    assert uses_js("jq(.a)") is None
    assert uses_js("js(1 + 1)") == 0
    assert uses_js("a jq(.b) js(x)") == 9
    assert uses_js('jq("js(")') is None


@pytest.mark.parametrize(
    "source, data",
    [
        (".", {"a": 1}),
        (".a", {"a": {"b": 2}}),
        (".a.b", {"a": {"b": 2}}),
        (".a.b", {"a": None}),
        (".missing", {}),
        (" .var.x ", {"var": {"x": 3}}),
        (".a.b", {"a": 5}),
        (".a", [1]),
        (".a", "text"),
        (".a.b", {"a": True}),
    ],
)
def test_field_paths_evaluated_in_python_match_jq(source: str, data: Any) -> None:
    """Pure paths skip the binding; their results and errors must be jq's own."""
    import jq as raw_jq

    with JqRuntime() as rt:
        try:
            expected: Any = raw_jq.compile(source).input_value(data).all()
        except ValueError as exc:
            expected = ("error", str(exc))
        try:
            got: Any = rt.compile(source).run(data)
        except JqError as exc:
            got = ("error", exc.msg)
        assert got == expected


def test_star_is_guarded_so_data_driven_repetition_is_capped() -> None:
    """'"x" * .n' with .n from untrusted input must not build gigabytes in-process."""
    with JqRuntime(timeout=2.0, max_output=1 << 20) as rt:
        for src in ('"x" * .n', ".a * 2", ".a *= 2", ". * {a: 1}"):
            assert rt.compile(src).guarded, src
        for src in (".a + 1", '"*"', "# *\n.a"):
            assert not rt.compile(src).guarded, src
        with pytest.raises(JqError) as ei:
            rt.compile('"x" * .n').first({"n": 50_000_000})
        assert ei.value.code in ("direktiv.limits.jq", "direktiv.jq.badCommand")
        assert rt.compile('"ab" * .n').first({"n": 2}) == "abab"


# -- compiling where it can be bounded (issue 12) ------------------------------------------------

_HOSTILE = (
    "id: h\nstates:\n- id: a\n  type: noop\n"
    "  transform: '{a: (\"x\" * 2000000000 | length)}'\n"  # jq folds this constant: 2 GB
)


def _limit_memory() -> None:
    """preexec_fn: 1 GiB of address space, as a daemon under a memory limit would have."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}


def test_constant_folding_bomb_is_a_located_validation_error(tmp_path: Path) -> None:
    """'"x" * 2000000000' used to be folded in-process by jq_compile: 2 GB, or SIGABRT."""
    import subprocess
    import sys

    path = tmp_path / "bomb.yaml"
    path.write_text(_HOSTILE)
    assert len(_HOSTILE) < 130
    proc = subprocess.run(
        [sys.executable, "-m", "isolde.cli", "validate", str(path)],
        capture_output=True,
        cwd=tmp_path,
        env=_child_env(),
        preexec_fn=_limit_memory,
        timeout=120,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, (proc.returncode, err)
    line = next(ln for ln in err.splitlines() if "bomb.yaml:" in ln)
    assert line.startswith(f"{path}:5:15: state 'a': invalid jq: compiling the jq program")
    assert "memory limit" in line and "jq_max_output" in line


def test_compile_time_limit_is_a_compile_error() -> None:
    """A compilation cut off by a limit is badCommand at offset 0, catchable at run time."""
    with JqRuntime(timeout=5.0, max_memory=256 << 20) as rt:
        with pytest.raises(JqError) as ei:
            rt.compile('"x" * 1000000000')
        assert (ei.value.code, ei.value.offset) == (BAD, 0)
        assert "compiling the jq program" in ei.value.msg and "256 MiB" in ei.value.msg
        # The same program text, small, compiles (in the worker) and runs.
        assert rt.compile('"x" * 3').first(None) == "xxx"
        # Syntax errors found by the worker keep their offsets.
        with pytest.raises(JqError) as ei:
            rt.compile("[range(3)] |||")
        assert (ei.value.code, ei.value.offset) == (BAD, 12)
        assert ei.value.msg == "syntax error, unexpected '|'"


def test_long_programs_compile_in_the_worker(rt: JqRuntime) -> None:
    """jq's compile time grows faster than the source: long programs are guarded."""
    from isolde.jqexpr.analysis import CHEAP_SOURCE_CHARS

    short = " + ".join([".a"] * (CHEAP_SOURCE_CHARS // 5))
    long = " + ".join([".a"] * (CHEAP_SOURCE_CHARS // 4))
    assert len(short) <= CHEAP_SOURCE_CHARS < len(long)
    assert not rt.compile(short).guarded
    prog = rt.compile(long)
    assert prog.guarded and prog.first({"a": 1}) == CHEAP_SOURCE_CHARS // 4


_ENGINE_SCRIPT = r"""
import array, fcntl, json, os, signal, sys, termios, threading
from pathlib import Path
import isolde

def workers():
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == me and b"_jqworker" in cmd and stat[0] != "Z":
                found.append(int(entry.name))
    return found

def waiting_bytes(pid):
    # Bytes sent to the worker and not read yet (its stdin pipe, opened through /proc).
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return buf[0]
    finally:
        os.close(fd)

guarded = "id: g\nstates:\n- id: a\n  type: noop\n  transform: '{n: [range(3)] | length}'\n"
with isolde.Engine(data_dir=sys.argv[1], config={"limits": {"jq_timeout": 120}}) as eng:
    out = {"warm": eng.run(guarded).output}  # one worker started, now idle
    (first,) = workers()
    os.kill(first, signal.SIGSTOP)  # it will not answer until we say so
    loader = threading.Thread(target=lambda: out.update(diags=[str(d) for d in eng.validate(sys.argv[2])]))
    loader.start()
    pause = threading.Event()
    # The hostile program goes to that worker (before the fix: compiled right here).
    while loader.is_alive() and not waiting_bytes(first):
        pause.wait(0.002)
    out["ok"] = eng.run(guarded.replace("id: g", "id: ok")).output  # served by another worker
    out["still_compiling"] = loader.is_alive()
    os.kill(first, signal.SIGCONT)
    loader.join()
print(json.dumps(out))
"""


def test_engine_answers_other_work_while_a_hostile_program_compiles(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _ENGINE_SCRIPT, str(tmp_path / "data"), _HOSTILE],
        capture_output=True,
        cwd=tmp_path,
        env=_child_env(),
        preexec_fn=_limit_memory,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode()[-2000:])
    out = json.loads(proc.stdout)
    assert out["warm"] == out["ok"] == {"n": 3}
    assert out["still_compiling"] is True
    [diag] = out["diags"]
    assert diag.startswith("<string>:5:15: state 'a': invalid jq: compiling the jq program")
    assert "1 GiB memory limit" in diag


# -- the worker pool (issue 12) ----------------------------------------------------------------


def test_slow_guarded_program_does_not_hold_up_another_thread() -> None:
    """With one worker behind one lock, a quick guarded program waited for a slow one."""
    with JqRuntime(timeout=30.0, workers=2) as runtime:
        slow = runtime.compile("def f: f; f")  # runs until its deadline
        quick = runtime.compile("[range(3)]")
        assert quick.first(None) == [0, 1, 2]
        (pid,) = _worker_pids()  # one worker (it compiled both), now idle
        _wait_for(lambda: _state(pid) == "S")  # blocked reading its next request
        failed: list[JqError] = []

        def run_slow() -> None:
            try:
                slow.run(None)
            except JqError as exc:
                failed.append(exc)

        thread = threading.Thread(target=run_slow)
        thread.start()
        _wait_for(lambda: _state(pid) == "R")  # an idle worker wakes only for a request
        assert quick.first(None) == [0, 1, 2]
        assert thread.is_alive()  # the slow one still runs: quick did not wait for it
        runtime.close()  # kills the slow program's worker
        thread.join()
        assert failed and failed[0].code == BAD and "closed" in failed[0].msg
    assert _worker_pids() == []


def _wait_for(condition: Callable[[], bool]) -> None:
    """Wait for a condition of another process (polled; no time bound)."""
    pause = threading.Event()
    while not condition():
        pause.wait(0.002)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def test_jq_workers_limit_sets_the_pool_size(tmp_path: Path) -> None:
    import isolde

    with isolde.Engine(data_dir=tmp_path / "d", config={"limits": {"jq_workers": 1}}) as eng:
        assert eng.jq.workers == 1
    with isolde.Engine(data_dir=tmp_path / "d") as eng:
        assert eng.jq.workers == 4
    with pytest.raises(ValueError):
        JqRuntime(workers=0)


@pytest.mark.parametrize("source", [
    ".var.x += 1", "{a: .b, c: 1, d}", ".a // 1", ".n + 1 | tostring", '"\\(.a)-\\(.b)"', ".b | not",
    ".a |= . + 1", "{(.k): .a} | keys", '."a" == 1 and .b < 3', ".missing // .a",
    ".a, .b", "[.a, .b] | .[]", ".a | select(. > 5)", "empty", ".[]", "if .a then 1 else 2, 3 end",
])
def test_programs_give_every_output_whether_or_not_they_are_single(rt: JqRuntime, source: str) -> None:
    """Programs known to give one output are asked for the first only (a cheaper call);
    the outputs are those of the jq binding asked for all, for single programs and others."""
    import jq

    data = {"a": 1, "b": 2, "k": "key", "n": 4}
    assert rt.compile(source).run(data) == jq.compile(source).input_value(data).all()
