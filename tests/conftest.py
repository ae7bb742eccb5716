"""Shared fixtures: a fresh data directory per test, an Engine on it, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# The Direktiv corpus lives beside the checkout (../shared/corpus); ISOLDE_CORPUS overrides.
CORPUS = Path(os.environ.get("ISOLDE_CORPUS", REPO.parent / "shared" / "corpus"))


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

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


class Cli:
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
        return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def cli(data_dir: Path, tmp_path: Path) -> Cli:
    return Cli(data_dir, tmp_path)
