"""The assembled Direktiv corpus (tests/direktiv/corpus, see its MANIFEST.tsv) validated.

Every document Direktiv accepted must validate as ``isolde validate`` does; every known-bad one
must be refused with located diagnostics.  Documents isolde wrongly refuses today are listed in
GAPS.tsv (written by tests/direktiv/tools/gaps.py) and are strict xfails naming the cause, so the
suite stays green and each gap shows; once a fix lands the xfail turns into a failure and the row
is removed.  ``test_counts_per_era`` prints the counts per era for reports.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

import isolde
from isolde.cli import main as cli_main

CORPUS = Path(__file__).resolve().parent / "direktiv" / "corpus"


def _tsv(name: str) -> list[dict[str, str]]:
    text = (CORPUS / name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = _tsv("MANIFEST.tsv")
GAPS = {r["file"]: r["reason"] for r in _tsv("GAPS.tsv")}
# Rows of GAPS.tsv that isolde refuses on purpose (docs/differences.md): tested as refusals.
DELIBERATE = {f: reason for f, reason in GAPS.items() if reason.startswith("deliberate")}
LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (state '(?P<state>[^']+)': )?(?P<msg>.+)$")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[isolde.Engine]:
    with isolde.Engine(data_dir=tmp_path_factory.mktemp("dcorpus"), config={}) as eng:
        yield eng


def _params(valid: bool) -> list[Any]:
    out = []
    for r in ROWS:
        if (r["status"] == "valid") != valid or r["file"] in DELIBERATE:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=GAPS[r["file"]])] if r["file"] in GAPS else []
        out.append(pytest.param(r["file"], id=r["file"], marks=marks))
    return out


def test_manifest_matches_the_files() -> None:
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.yaml")}
    assert on_disk == {r["file"] for r in ROWS}
    assert len(ROWS) >= 400
    assert set(GAPS) <= {r["file"] for r in ROWS if r["status"] == "valid"}
    for r in ROWS:
        assert r["repository"].startswith("direktiv/") and re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r
        assert r["status"] == "valid" or r["status"].startswith("bad: "), r
        assert r["file"].startswith("invalid/") == (r["status"] != "valid"), r


@pytest.mark.parametrize("name", _params(valid=True))
def test_accepted_by_direktiv_validates(engine: isolde.Engine, name: str) -> None:
    assert [str(d) for d in engine.validate(CORPUS / name)] == []


@pytest.mark.parametrize("name", _params(valid=False))
def test_known_bad_is_refused_with_a_location(engine: isolde.Engine, name: str) -> None:
    diagnostics = engine.validate(CORPUS / name)
    assert diagnostics
    for d in diagnostics:
        assert LOCATED.match(str(d)), str(d)
        assert d.line >= 1


@pytest.mark.parametrize("name", sorted(DELIBERATE))
def test_deliberately_refused_with_a_location(engine: isolde.Engine, name: str) -> None:
    """js(...) is refused on purpose (SPEC §2.1): located, and saying what to write instead."""
    diagnostics = engine.validate(CORPUS / name)
    assert diagnostics
    for d in diagnostics:
        assert LOCATED.match(str(d)) and d.line >= 1, str(d)
        assert "js(...)" in d.message and "jq(...)" in d.message, str(d)


def test_the_cli_agrees_in_process() -> None:
    """``isolde validate`` over the whole corpus: exactly the known-bad and the gap files are flagged."""
    files = [str(CORPUS / r["file"]) for r in ROWS]
    res = CliRunner().invoke(cli_main, ["validate", *files])
    assert res.exit_code == 2, res.output
    text = res.stderr if hasattr(res, "stderr") else res.output
    assert "Traceback" not in text
    lines = [m for line in text.splitlines() if (m := LOCATED.match(line))]
    flagged = {m.group("file") for m in lines if not m.group("msg").startswith("warning: ")}
    # image: / service: functions with no [images] mapping are warned about, located, not refused
    assert any(m.group("msg").startswith("warning: ") and "[images." in m.group("msg") for m in lines)
    expected = {str(CORPUS / r["file"]) for r in ROWS if r["status"] != "valid" or r["file"] in GAPS}
    assert flagged == expected


def test_counts_per_era(capsys: pytest.CaptureFixture[str]) -> None:
    total: Counter[str] = Counter()
    gaps: Counter[str] = Counter()
    deliberate: Counter[str] = Counter()
    for r in ROWS:
        folder = r["file"].split("/", 1)[0]
        total[folder] += 1
        gaps[folder] += r["file"] in GAPS and r["file"] not in DELIBERATE
        deliberate[folder] += r["file"] in DELIBERATE
    with capsys.disabled():
        print("\nDirektiv corpus: era folder, documents, isolde agrees with Direktiv / refuses on purpose "
              "(docs/differences.md) / refuses a valid one (gap)")
        for folder in sorted(total):
            ok = total[folder] - gaps[folder] - deliberate[folder]
            agree = "refused as Direktiv did" if folder == "invalid" else "validate"
            print(f"  {folder:22} {total[folder]:4}  {ok:4} {agree} / {deliberate[folder]:3} deliberate / {gaps[folder]:3} gap")
    assert sum(total.values()) == len(ROWS)
