"""Workflow tests with mocked functions (``isolde test``, and from pytest).

From pytest::

    from isolde.testing import run_file

    def test_greeter_workflow():
        failures = [o.report() for o in run_file("tests/greeter.test.yaml") if not o.ok]
        assert not failures, "\\n".join(failures)
"""

from __future__ import annotations

from pathlib import Path

from .cases import Case, Reply, load_cases
from .runner import Outcome, collect, find_test_files, run_case


def run_file(path: str | Path) -> list[Outcome]:
    """Run every test of one file; the outcomes say what differed, located in the file."""
    return [run_case(case) for case in collect(Path(path))]


__all__ = ["Case", "Outcome", "Reply", "collect", "find_test_files", "load_cases", "run_case", "run_file"]
