"""Shared fixtures: a fresh data directory per test, an Engine on it, and the CLI.

``cli`` runs the ``isolde`` command in this process with click's ``CliRunner``
(same stdout, stderr and exit code as the program; no interpreter start-up per
call). ``real_cli`` runs ``python -m isolde.cli`` in a subprocess: only for the
few tests where the real process is the point (signals, kill -9, pipes, start-up).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _find_corpus() -> Path:
    """The Direktiv corpus: $ISOLDE_CORPUS, else shared/corpus beside the checkout
    (../shared/corpus) or beside the folder of worktrees (../../shared/corpus)."""
    if "ISOLDE_CORPUS" in os.environ:
        return Path(os.environ["ISOLDE_CORPUS"])
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "corpus").is_dir():
            return base / "shared" / "corpus"
    return REPO.parent / "shared" / "corpus"


CORPUS = _find_corpus()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Any]:
    import isolde

    with isolde.Engine(data_dir=data_dir, config={}) as eng:
        yield eng


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"Direktiv corpus not found at {CORPUS} (set ISOLDE_CORPUS)")
    return CORPUS


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


# One in-process invocation at a time: the runner swaps the process's stdio,
# environment and working directory while the command runs.
_IN_PROCESS = threading.Lock()


class RealCli:
    """Runs the real ``isolde`` command (``python -m isolde.cli``) in a subprocess."""

    def __init__(self, data_dir: Path, cwd: Path) -> None:
        self.data_dir = data_dir
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ISOLDE_")}
        self.env["ISOLDE_DATA_DIR"] = str(data_dir)

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "isolde.cli", *args],
            input=input,
            capture_output=True,
            cwd=self.cwd,
            env=self.env,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), proc.stdout)


class Cli(RealCli):
    """Runs the ``isolde`` command in-process (click's ``CliRunner``) with this
    object's ``env`` as the whole environment and ``cwd`` as the working directory.

    A command opens and closes its own Engine, so state that survives between
    calls survived in the data directory.  Exit codes are the process's: a
    ``sys.exit(n)`` gives ``n``, an uncaught exception gives 1 with its traceback
    on stderr.  ``timeout`` applies to real processes only.  An ``env`` whose
    PYTHONPATH differs from this process's (plugins installed for the test) can
    only take effect in a new interpreter, so such calls run as a real process.
    """

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = 60) -> CliResult:
        if self.env.get("PYTHONPATH") != os.environ.get("PYTHONPATH"):
            return super().__call__(*args, input=input, timeout=timeout)
        from click.testing import CliRunner

        from isolde.cli import main

        env: dict[str, str | None] = {k: None for k in os.environ if k not in self.env}
        env.update(self.env)
        logger = logging.getLogger("isolde")  # `serve` points it at the runner's stderr
        saved = (logger.handlers[:], logger.level, logger.propagate)
        with _IN_PROCESS, contextlib.chdir(self.cwd):
            try:
                res = CliRunner().invoke(main, list(args), input=input, env=env, prog_name="isolde")
            finally:
                logger.handlers[:], logger.level, logger.propagate = saved
        out, err, exc = res.stdout_bytes, res.stderr, res.exception
        if isinstance(exc, SystemExit) and exc.code is not None and not isinstance(exc.code, int):
            # sys.exit("message"): the runner puts the message on stdout, Python on stderr
            text = f"{exc.code}\n"
            out = out.removesuffix(text.encode())
            err += text
        elif exc is not None and not isinstance(exc, SystemExit):
            # what the interpreter prints for an uncaught exception (exit code 1, as given)
            err += "".join(traceback.format_exception(exc))
        return CliResult(res.exit_code, out.decode(errors="replace"), err, out)


@pytest.fixture
def cli(data_dir: Path, tmp_path: Path) -> Cli:
    return Cli(data_dir, tmp_path)


@pytest.fixture
def real_cli(data_dir: Path, tmp_path: Path) -> RealCli:
    return RealCli(data_dir, tmp_path)


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Engine per test module for tests that only validate or read the registry:
    validation stores nothing, so a fresh engine per test would prove nothing more."""
    import isolde

    with isolde.Engine(data_dir=tmp_path_factory.mktemp("validator"), config={}) as eng:
        yield eng
