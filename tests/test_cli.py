"""The ``isolde`` command line (SPEC §5.1).

What is checked here is the contract a shell user relies on: stdout carries
only the result (output JSON or a variable's bytes), everything else goes to
stderr, exit codes are 0 / 1 / 2, and user errors are one line, never a
traceback.  Each ``cli(...)`` call runs the command in-process (click's runner)
and opens its own Engine on the test's data directory, so state that survives
between calls survived on disk.  The few tests at the end run the real program
(``python -m isolde.cli``, the console script) where only a process proves it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import CORPUS, EXAMPLES, Cli, CliResult, RealCli

COUNTER = str(EXAMPLES / "counter.yaml")

LOGGING = """\
id: logging
states:
- id: first
  type: noop
  log: '"starting up"'
  transform: '{greeting: "hi"}'
  transition: second
- id: second
  type: noop
  log: '.greeting'
"""

ECHO = """\
id: echo
states:
- id: a
  type: noop
"""


def assert_one_line_error(res: CliResult, code: int = 2) -> str:
    """A user error: the given exit code, nothing on stdout, one stderr line, no traceback."""
    assert res.code == code, res
    assert res.stdout == ""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- run ---------------------------------------------------------------------------


def test_counter_three_runs_then_vars_get(cli: Cli) -> None:
    outputs = [cli("run", COUNTER) for _ in range(3)]
    for n, res in enumerate(outputs, start=1):
        assert res.code == 0, res.stderr
        assert res.json == {"var": {"x": n}}
    got = cli("vars", "get", "x", "-w", "counter")
    assert got.code == 0
    assert got.stdout.strip() == "3"


def test_stdout_is_only_the_output_json_and_the_log_goes_to_stderr(cli: Cli, tmp_path: Path) -> None:
    wf = write(tmp_path / "logging.yaml", LOGGING)
    res = cli("run", wf)
    assert res.code == 0
    assert res.stdout.count("\n") == 1  # one line of JSON, nothing else
    assert res.json == {"greeting": "hi"}
    assert "[first] \"starting up\"" in res.stderr  # log lines are JSON text, as in Direktiv
    assert "[second] \"hi\"" in res.stderr

    quiet = cli("run", "-q", wf)
    assert quiet.json == {"greeting": "hi"}
    assert "starting up" not in quiet.stderr


def test_exit_code_1_names_code_message_and_state(cli: Cli, corpus: Path) -> None:
    res = cli("run", str(corpus / "v06-v10-knative" / "error.yaml"))
    assert res.code == 1
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert "testcode: this is a test error" in res.stderr
    assert "state 'a'" in res.stderr


def test_exit_code_2_for_invalid_workflow_missing_file_and_usage(cli: Cli, tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "id: bad\nstates:\n- id: a\n  type: nope\n")
    line = assert_one_line_error(cli("run", bad))
    assert line.startswith(f"{bad}:4:9: state 'a': unknown state type 'nope'")

    line = assert_one_line_error(cli("run", str(tmp_path / "missing.yaml")))
    assert "missing.yaml" in line and "no such file" in line

    both = cli("run", COUNTER, "--input", "1", "--input-file", bad)
    assert both.code == 2 and both.stdout == ""
    assert "not both" in both.stderr

    assert cli("run").code == 2  # click usage error: FILE missing
    assert cli("frobnicate").code == 2


# -- input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('{"x": 5}', {"x": 5}),
        ("[1, 2, 3]", {"input": [1, 2, 3]}),
        ('"s"', {"input": "s"}),
    ],
)
def test_input_option_wraps_like_direktiv(cli: Cli, tmp_path: Path, given: str, expected: Any) -> None:
    res = cli("run", write(tmp_path / "echo.yaml", ECHO), "--input", given)
    assert res.code == 0, res.stderr
    assert res.json == expected


def test_raw_input_is_explicit(cli: Cli, tmp_path: Path) -> None:
    """Text that is not JSON is refused (a typo, mostly); --raw-input sends the bytes as Direktiv's API did."""
    wf = write(tmp_path / "echo.yaml", ECHO)
    refused = cli("run", wf, "--input", "Hello, world!")
    assert refused.code == 2 and "--input is not JSON" in refused.stderr and "--raw-input" in refused.stderr
    res = cli("run", wf, "--input", "Hello, world!", "--raw-input")
    assert res.code == 0, res.stderr
    assert res.json == {"input": "SGVsbG8sIHdvcmxkIQ=="}


def test_input_file_and_stdin(cli: Cli, tmp_path: Path) -> None:
    wf = write(tmp_path / "echo.yaml", ECHO)
    assert cli("run", wf).json == {}

    (tmp_path / "in.json").write_bytes(b'{"from": "file"}')
    assert cli("run", wf, "--input-file", str(tmp_path / "in.json")).json == {"from": "file"}

    (tmp_path / "in.bin").write_bytes(b"\xff\x00binary")
    assert cli("run", wf, "--input-file", str(tmp_path / "in.bin")).json == {"input": "/wBiaW5hcnk="}

    assert cli("run", wf, "--input-file", "-", input=b'{"from": "stdin"}').json == {"from": "stdin"}
    assert cli("run", wf, "--input-file", "-", input=b"plain text").json == {"input": "cGxhaW4gdGV4dA=="}
    assert cli("run", wf, "--input-file", "-", input=b"").json == {}


# -- vars ----------------------------------------------------------------------------


def raw_stdout(cli: Cli, *args: str, input: bytes | None = None) -> tuple[int, bytes]:
    """Like ``cli`` but keeps stdout as bytes (variables need not be text)."""
    res = cli(*args, input=input)
    return res.code, res.stdout_bytes


def listing(res: CliResult) -> dict[str, tuple[int, str]]:
    """``vars list`` rows as {key: (size, mime)}; each row is KEY TAB SIZE TAB MIME TAB UPDATED."""
    assert res.code == 0, res.stderr
    rows = {}
    for line in res.stdout.splitlines():
        key, size, mime, updated = line.split("\t")
        assert len(updated) == len("2024-01-01T00:00:00")
        rows[key] = (int(size), mime)
    return rows


def test_vars_set_get_list_delete_by_scope(cli: Cli) -> None:
    assert cli("vars", "set", "color", "blue").code == 0
    assert cli("vars", "set", "num", "42").code == 0
    assert cli("vars", "set", "wf", '{"a": 1}', "-w", "flow").code == 0
    assert cli("vars", "set", "other", "x", "-n", "elsewhere").code == 0

    assert listing(cli("vars", "list")) == {"color": (4, "text/plain"), "num": (2, "application/json")}
    assert listing(cli("vars", "list", "-w", "flow")) == {"wf": (8, "application/json")}
    assert listing(cli("vars", "list", "-n", "elsewhere")) == {"other": (1, "text/plain")}

    assert cli("vars", "get", "color").stdout == "blue"  # raw bytes, no newline added off a tty
    assert cli("vars", "get", "wf", "-w", "flow").stdout == '{"a": 1}'
    missing = cli("vars", "get", "wf")  # namespace scope has no 'wf'
    assert missing.code == 1 and missing.stdout == ""
    assert "not found" in missing.stderr

    assert cli("vars", "delete", "color").code == 0
    assert listing(cli("vars", "list")) == {"num": (2, "application/json")}
    assert cli("vars", "get", "color").code == 1


def test_vars_set_from_file_stdin_and_mime(cli: Cli, tmp_path: Path) -> None:
    blob = bytes(range(256))
    (tmp_path / "blob.bin").write_bytes(blob)
    assert cli("vars", "set", "blob", "-f", str(tmp_path / "blob.bin")).code == 0
    assert raw_stdout(cli, "vars", "get", "blob") == (0, blob)

    assert cli("vars", "set", "piped", "-f", "-", input=b"from stdin\n").code == 0
    assert raw_stdout(cli, "vars", "get", "piped") == (0, b"from stdin\n")

    assert cli("vars", "set", "doc", "<b>hi</b>", "--mime", "text/html").code == 0
    rows = listing(cli("vars", "list"))
    assert rows["blob"] == (256, "application/octet-stream")
    assert rows["piped"] == (11, "text/plain")
    assert rows["doc"] == (9, "text/html")

    neither = cli("vars", "set", "k")
    assert neither.code == 2 and "exactly one" in neither.stderr
    both = cli("vars", "set", "k", "v", "-f", str(tmp_path / "blob.bin"))
    assert both.code == 2


def test_vars_instance_scope_and_conflicting_scopes(cli: Cli) -> None:
    assert cli("vars", "set", "k", "1", "--instance", "abc").code == 0
    assert cli("vars", "get", "k", "--instance", "abc").stdout == "1"
    assert cli("vars", "get", "k").code == 1
    res = cli("vars", "list", "-w", "x", "--instance", "abc")
    assert res.code == 2 and "not both" in res.stderr


@pytest.mark.parametrize("args", [
    (), ("-w", "flow"), ("--workflow=flow",), ("-n", "elsewhere"), ("--namespace", "nowhere"), ("--instance", "abc"),
    ("-n", "default", "--data-dir", "{data}"), ("--config", "{toml}"),
    # not the fast path's: click parses and reports them, as ever
    ("-w", "x", "--instance", "abc"), ("-w", ""), ("-n", "bad/name"), ("--bogus",), ("-n", "a", "-n", "b"),
    ("--data-dir", "{toml}"), ("--config", "{missing}"), ("-nelsewhere",),
])
def test_vars_list_console_script_is_the_command(cli: Cli, real_cli: RealCli, tmp_path: Path, args: tuple[str, ...]) -> None:
    """``isolde vars list`` as a process (the console script's own fast path for plain
    arguments) prints, exits and fails exactly as the command run in-process."""
    assert cli("vars", "set", "color", "blue").code == 0
    assert cli("vars", "set", "wf", '{"a": 1}', "-w", "flow").code == 0
    assert cli("vars", "set", "other", "x", "-n", "elsewhere").code == 0
    assert cli("vars", "set", "k", "1", "--instance", "abc").code == 0
    (tmp_path / "isolde.toml").write_text("")
    given = [a.format(data=cli.data_dir, toml=tmp_path / "isolde.toml", missing=tmp_path / "nope.toml") for a in args]
    inside, outside = cli("vars", "list", *given), real_cli("vars", "list", *given)
    named = [text.replace("python -m isolde.cli", "isolde") for text in (outside.stdout, outside.stderr)]
    assert (outside.code, *named) == (inside.code, inside.stdout, inside.stderr)


@pytest.mark.parametrize("key", ["bad key", "x" * 256])
def test_vars_bad_key_is_one_line_exit_2(cli: Cli, key: str) -> None:
    line = assert_one_line_error(cli("vars", "get", key))
    assert "invalid variable key" in line


def test_vars_set_bad_key_stores_nothing(cli: Cli) -> None:
    line = assert_one_line_error(cli("vars", "set", "no way", "1"))
    assert "invalid variable key" in line
    assert cli("vars", "list").stdout == ""


# -- workflows, namespaces, plugins ---------------------------------------------------------


def test_workflows_list_and_delete(cli: Cli) -> None:
    cli("run", COUNTER)
    cli("vars", "set", "y", "1", "-w", "counter2")
    cli("vars", "set", "z", "1", "-w", "counter", "-n", "other")
    assert cli("workflows", "list").stdout.split() == ["counter", "counter2"]
    assert cli("workflows", "list", "-n", "other").stdout.split() == ["counter"]

    res = cli("workflows", "delete", "counter")
    assert res.code == 0 and res.stdout == ""
    assert "1 variable" in res.stderr
    assert cli("workflows", "list").stdout.split() == ["counter2"]
    assert cli("vars", "get", "z", "-w", "counter", "-n", "other").stdout == "1"


def test_namespaces_list_and_delete(cli: Cli) -> None:
    cli("vars", "set", "a", "1", "-n", "foo")
    cli("vars", "set", "b", "2", "-n", "foobar")
    cli("run", COUNTER, "-n", "foo")
    assert cli("namespaces", "list").stdout.split() == ["foo", "foobar"]
    res = cli("namespaces", "delete", "foo")
    assert res.code == 0 and "2 variable" in res.stderr
    assert cli("namespaces", "list").stdout.split() == ["foobar"]


def test_plugins_lists_builtin_state_types(cli: Cli) -> None:
    res = cli("plugins")
    assert res.code == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in res.stdout.splitlines()}
    for name in ("getter", "setter", "noop", "switch", "error"):
        assert name in rows
        assert rows[name][2] == "builtin"
        assert f"state {name}" in rows[name][3]


def test_plugins_disabled_by_config(cli: Cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "no-switch.toml", '[plugins]\ndisable = ["switch"]\n')
    res = cli("plugins", "--config", cfg)
    assert res.code == 0
    names = {line.split("\t")[0]: line for line in res.stdout.splitlines()}
    assert "disabled" in names["switch"]
    loop = str(CORPUS / "v06-v10-knative" / "simple-loop.yaml")
    if Path(loop).is_file():
        bad = cli("validate", "--config", cfg, loop)
        assert bad.code == 2 and "unknown state type 'switch'" in bad.stderr


# -- data directory and configuration resolution ----------------------------------------------


def _env_cli(cli: Cli, cwd: Path, **env: str | None) -> Cli:
    """A Cli on ``cwd`` whose environment has ISOLDE_* set (or removed) as given."""
    other = Cli(cli.data_dir, cwd)
    other.env = {k: v for k, v in cli.env.items() if not k.startswith("ISOLDE_")}
    other.env.update({k: v for k, v in env.items() if v is not None})
    return other


def _where_written(*dirs: Path) -> list[str]:
    return [d.name for d in dirs if d.is_dir() and any(d.iterdir())]


def test_data_dir_resolution_order(cli: Cli, tmp_path: Path) -> None:
    flag, env, conf = tmp_path / "flag-dir", tmp_path / "env-dir", tmp_path / "cfg"
    (tmp_path / "isolde.toml").write_text('data_dir = "cfg"\n')

    c = _env_cli(cli, tmp_path, ISOLDE_DATA_DIR=str(env))
    assert c("vars", "set", "k", "1", "--data-dir", str(flag)).code == 0
    assert _where_written(flag, env, conf) == ["flag-dir"]

    assert c("vars", "set", "k", "2").code == 0
    assert _where_written(env, conf) == ["env-dir"]

    c = _env_cli(cli, tmp_path)
    assert c("vars", "set", "k", "3").code == 0
    assert _where_written(conf) == ["cfg"]  # relative to the config file
    assert c("vars", "get", "k").stdout == "3"


def test_config_resolution_order(cli: Cli, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "flag.toml").write_text('data_dir = "from-flag"\n')
    (tmp_path / "env.toml").write_text('data_dir = "from-env"\n')
    (work / "isolde.toml").write_text('data_dir = "from-isolde-toml"\n')
    (work / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.isolde]\ndata_dir = "from-pyproject"\n')
    dirs = [tmp_path / "from-flag", tmp_path / "from-env", work / "from-isolde-toml", work / "from-pyproject"]

    c = _env_cli(cli, work, ISOLDE_CONFIG=str(tmp_path / "env.toml"))
    assert c("vars", "set", "k", "1", "--config", str(tmp_path / "flag.toml")).code == 0
    assert _where_written(*dirs) == ["from-flag"]
    assert c("vars", "set", "k", "1").code == 0
    assert _where_written(*dirs) == ["from-flag", "from-env"]
    c = _env_cli(cli, work)
    assert c("vars", "set", "k", "1").code == 0
    assert _where_written(*dirs) == ["from-flag", "from-env", "from-isolde-toml"]
    (work / "isolde.toml").unlink()
    assert c("vars", "set", "k", "1").code == 0
    assert _where_written(*dirs) == ["from-flag", "from-env", "from-isolde-toml", "from-pyproject"]


def test_config_limits_apply(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "isolde.toml").write_text("[limits]\nmax_steps = 3\n")
    wf = write(tmp_path / "chain.yaml", "id: chain\nstates:\n" + "".join(
        f"- id: s{i}\n  type: noop\n  transition: s{i + 1}\n" for i in range(4)
    ) + "- id: s4\n  type: noop\n")
    res = cli("run", wf)
    assert res.code == 1
    assert "direktiv.limits.steps" in res.stderr and "max_steps" in res.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bogus = 1\n", "unknown setting 'bogus'"),
        ("[limits]\nmax_step = 3\n", "unknown setting [limits] 'max_step' (did you mean 'max_steps'?)"),
        ("[limits]\njq_timeout = -1\n", "must be a positive, finite number"),
        ('[store]\ndurability = "sometimes"\n', "durability"),
        ("data_dir = [\n", "isolde.toml"),
        ('[plugins]\ndisable = ["getterr"]\n', "did you mean 'getter'"),
    ],
)
def test_bad_config_is_one_clear_line(cli: Cli, tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "isolde.toml").write_text(text)
    # a copy beside the config: examples/ has its own isolde.toml, nearer than the cwd's
    line = assert_one_line_error(cli("run", write(tmp_path / "counter.yaml", Path(COUNTER).read_text())))
    assert needle in line
    assert "isolde.toml" in line or "[plugins]" in line


def test_missing_config_file_is_one_line(cli: Cli, tmp_path: Path) -> None:
    line = assert_one_line_error(cli("vars", "list", "--config", str(tmp_path / "nope.toml")))
    assert "nope.toml" in line


def test_version_and_help(cli: Cli) -> None:
    import isolde

    res = cli("--version")
    assert res.code == 0 and isolde.__version__ in res.stdout
    assert cli("--help").code == 0
    assert "run" in cli("-h").stdout


def test_isolde_entry_point_matches_module(cli: Cli) -> None:
    """The console script installed by pip is the same program as ``python -m isolde.cli``."""
    exe = Path(sys.executable).with_name("isolde")
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run([str(exe), "run", COUNTER], capture_output=True, env=cli.env, cwd=cli.cwd, timeout=60)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"var": {"x": 1}}
    assert os.path.isdir(cli.data_dir)


# -- the real program: what only a process shows ------------------------------------------------


def test_python_m_isolde_cli_runs_and_keeps_state_on_disk(real_cli: RealCli) -> None:
    """``python -m isolde.cli`` is the program: cold start, output on stdout, variables on disk."""
    for n in (1, 2):
        res = real_cli("run", COUNTER)
        assert res.code == 0, res.stderr
        assert res.json == {"var": {"x": n}}
    got = real_cli("vars", "get", "x", "-w", "counter")
    assert (got.code, got.stdout_bytes) == (0, b"2")  # raw bytes: no newline off a tty
    line = assert_one_line_error(real_cli("vars", "get", "bad key"))
    assert "invalid variable key" in line


def test_a_reader_that_goes_away_ends_the_command_quietly(real_cli: RealCli) -> None:
    """``isolde plugins | head -1``: stdout closed early gives exit 1 and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "isolde.cli", "plugins"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=real_cli.cwd, env=real_cli.env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert code == 1


def test_the_in_process_runner_gives_what_the_program_gives(cli: Cli, real_cli: RealCli, tmp_path: Path) -> None:
    """The ``cli`` fixture stands in for the process: same stdout, stderr and exit code."""
    logging_wf = write(tmp_path / "logging.yaml", LOGGING)
    bad_wf = write(tmp_path / "bad.yaml", "id: bad\nstates:\n- id: a\n  type: nope\n")
    for args in (("run", logging_wf), ("vars", "get", "missing"), ("vars", "get", "bad key"), ("run", bad_wf)):
        assert cli(*args) == real_cli(*args), args


# -- CLI manners (issue 13) ----------------------------------------------------

def test_vars_set_dash_reads_standard_input_as_bytes(cli: Cli) -> None:
    blob = bytes(range(256)) + b"\r\n\x00"
    assert cli("vars", "set", "blob", "-", input=blob).code == 0
    code, out = raw_stdout(cli, "vars", "get", "blob")
    assert code == 0 and out == blob
    assert listing(cli("vars", "list"))["blob"] == (len(blob), "application/octet-stream")
    assert cli("vars", "set", "j", "-", "-w", "flow", input=b'{"a": 1}').code == 0
    assert cli("vars", "get", "j", "-w", "flow").stdout == '{"a": 1}'


def test_vars_get_miss_names_the_scopes_where_the_key_exists(cli: Cli) -> None:
    assert cli("vars", "set", "x", "1", "-w", "counter").code == 0
    res = cli("vars", "get", "x")
    assert res.code == 1 and res.stdout == ""
    assert res.stderr == ("isolde: variable 'x' not found in namespace scope; "
                          "it exists in workflow scope of 'counter' (use -w counter)\n")
    assert cli("vars", "set", "x", "2").code == 0
    res = cli("vars", "get", "x", "-w", "other")
    assert res.code == 1
    assert "not found in workflow scope of 'other'; it exists in namespace scope" in res.stderr
    assert "workflow scope of 'counter' (use -w counter)" in res.stderr
    nowhere = cli("vars", "get", "nowhere")
    assert nowhere.code == 1 and nowhere.stderr == "isolde: variable 'nowhere' not found in namespace scope\n"


def test_deleting_a_missing_variable_exits_1_with_a_message(cli: Cli) -> None:
    res = cli("vars", "delete", "ghost")
    assert res.code == 1
    assert res.stderr == "isolde: variable 'ghost' not found in namespace scope; nothing deleted\n"
    assert cli("vars", "set", "ghost", "1", "-w", "flow").code == 0
    res = cli("vars", "delete", "ghost")
    assert res.code == 1 and "(use -w flow)" in res.stderr
    assert cli("vars", "delete", "ghost", "-w", "flow").code == 0
    assert cli("vars", "delete", "ghost", "-w", "flow").code == 1


def test_every_command_and_option_has_help() -> None:
    import click

    from isolde.cli import main

    missing: list[str] = []

    def walk(cmd: click.Command, path: str) -> None:
        if not (cmd.help or cmd.short_help):
            missing.append(f"command '{path}'")
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"option {'/'.join(param.opts)} of '{path}'")
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")

    walk(main, "isolde")
    assert missing == []


def test_ctrl_c_during_run_exits_130_naming_the_instance_and_its_state(real_cli: RealCli, tmp_path: Path) -> None:
    import signal

    flow = write(tmp_path / "waits.yaml", """\
states:
- id: first
  type: noop
  transition: wait
- id: wait
  type: delay
  duration: PT1H
  log: waiting
  transition: after
- id: after
  type: noop
""")
    # faulthandler: if the process ever fails to exit, SIGABRT makes it print every thread's stack.
    # SIGINT back to its default in the child: a test run started in the background of a script
    # inherits SIGINT ignored (POSIX shells do that), and Python then keeps ignoring it
    proc = subprocess.Popen([sys.executable, "-m", "isolde.cli", "run", flow], cwd=real_cli.cwd,
                            env={**real_cli.env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        seen = []
        for raw in proc.stderr:  # synchronise on the log line, not on time
            seen.append(raw.decode())
            if raw.startswith(b'[wait] "waiting"'):
                break
        else:
            pytest.fail(f"the instance never logged that it waits: {seen}")
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"the interrupted run did not exit; its threads:\n{err.decode(errors='replace')[-8000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # reap it and close its pipes, so a failure here leaks nothing into later tests
    assert proc.returncode == 130, err
    assert out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1 and "Aborted" not in err.decode() and "Traceback" not in err.decode(), err
    import re

    assert re.fullmatch(r"isolde: interrupted: instance (\S+) stopped in state 'wait' \(exit 130\)", lines[0]), lines
    # the engine closed on the way out: the data directory opens again at once
    assert real_cli("vars", "set", "after", "1").code == 0


def test_isolde_toml_is_found_next_to_the_workflow_then_cwd_then_user_config(cli: Cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "flows" / "deep").mkdir(parents=True)
    flow = write(project / "flows" / "deep" / "noop.yaml", "states:\n- id: a\n  type: noop\n")
    (project / "isolde.toml").write_text("bogus_near = 1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = tmp_path / "xdg"
    (home / "isolde").mkdir(parents=True)
    (home / "isolde" / "isolde.toml").write_text("bogus_user = 1\n")
    runner = _env_cli(cli, elsewhere, XDG_CONFIG_HOME=str(home), ISOLDE_DATA_DIR=str(cli.data_dir))
    for args in (("run", flow), ("validate", flow), ("graph", flow)):
        res = runner(*args)
        assert res.code == 2 and "bogus_near" in res.stderr, (args, res.stderr)
    (project / "isolde.toml").unlink()
    assert "bogus_user" in runner("run", flow).stderr  # no config near it nor in cwd: the user's
    (elsewhere / "isolde.toml").write_text("bogus_cwd = 1\n")
    assert "bogus_cwd" in runner("run", flow).stderr
    good = write(tmp_path / "good.toml", "")
    assert runner("run", flow, "--config", good).code == 0
    assert _env_cli(cli, elsewhere, XDG_CONFIG_HOME=str(home), ISOLDE_DATA_DIR=str(cli.data_dir), ISOLDE_CONFIG=good)("run", flow).code == 0


class _CtrlC(io.BytesIO):
    """Standard input on which the user presses Ctrl-C while a command reads it."""

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:
            return b""
        raise KeyboardInterrupt


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(data_dir: Path) -> None:
    from click.testing import CliRunner

    from isolde.cli import main

    env = {"ISOLDE_DATA_DIR": str(data_dir)}
    got = CliRunner().invoke(main, ["vars", "set", "k", "-"], input=_CtrlC(), env=env, prog_name="isolde")
    assert got.exit_code == 130, got.output
    assert got.stderr.strip() == "isolde: interrupted: vars stopped (exit 130)"
    assert "Aborted" not in got.output
