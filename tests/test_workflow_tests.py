"""``isolde test``: workflow tests with mocked functions, failures located with a diff."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from isolde.cli import main
from isolde.testing import run_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

WF = """
functions:
- id: pay
  type: http
  url: http://127.0.0.1:9/
states:
- id: charge
  type: action
  action:
    function: pay
    input: 'jq({amount: .amount})'
    retries:
      max_attempts: 2
      delay: PT0S
      codes: ['pay.busy']
  transform: 'jq({receipt: .return.id})'
  transition: save
- id: save
  type: setter
  variables:
  - {key: last, scope: workflow, value: 'jq(.receipt)'}
"""


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["test", *args])
    return result.exit_code, result.output


def _files(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "pay.yaml").write_text(WF)
    path = tmp_path / "pay.test.yaml"
    path.write_text("workflow: pay.yaml\ntests:\n" + tests)
    return path


def test_the_examples_pass() -> None:
    code, out = _invoke(str(EXAMPLES), "-v")
    assert code == 0, out
    assert "4 passed, 0 failed" in out


def test_a_sequence_of_replies_drives_retries_and_variables_are_checked(tmp_path: Path) -> None:
    path = _files(tmp_path, """
- name: retried once
  input: {amount: 5}
  mocks:
    pay:
    - {error: {code: pay.busy, message: later}}
    - {return: {id: r-1}}
  expect:
    output: {receipt: r-1}
    states: [charge, save]
    calls: {pay: [{amount: 5}, {amount: 5}]}
    variables: {workflow: {last: r-1}}
""")
    code, out = _invoke(str(path))
    assert code == 0, out
    assert "1 passed, 0 failed" in out


def test_a_failure_is_located_in_the_test_file_with_a_diff(tmp_path: Path) -> None:
    path = _files(tmp_path, """
- name: wrong receipt
  input: {amount: 5}
  mocks:
    pay: {return: {id: r-2}}
  expect:
    output: {receipt: r-1}
""")
    code, out = _invoke(str(path))
    assert code == 1
    assert f"FAILED {path}:4:3: test 'wrong receipt'" in out
    assert f"{path}:9:13: output differs:" in out
    assert '-  "receipt": "r-1"' in out and '+  "receipt": "r-2"' in out
    assert "0 passed, 1 failed" in out


def test_an_expected_error_and_exhausted_retries(tmp_path: Path) -> None:
    path = _files(tmp_path, """
- name: always busy
  mocks:
    pay: {error: {code: pay.busy, message: later}}
  expect:
    error: {code: direktiv.retries.exceeded}
    states: [charge]
""")
    assert _invoke(str(path))[0] == 0


def test_malformed_files_and_no_tests_use_pytests_exit_codes(tmp_path: Path) -> None:
    path = _files(tmp_path, """
- name: typo
  expct: {output: {}}
""")
    code, out = _invoke(str(path))
    assert code == 4 and f"ERROR {path}:5:3: unknown key 'expct'" in out
    empty = tmp_path / "none"
    empty.mkdir()
    assert _invoke(str(empty))[0] == 5


def test_a_mock_for_an_undeclared_function_is_reported(tmp_path: Path) -> None:
    path = _files(tmp_path, """
- name: wrong mock
  mocks:
    charge: {return: 1}
  expect:
    output: {}
""")
    code, out = _invoke(str(path))
    assert code == 1 and "mocks name functions the workflow does not declare: charge (declared: pay)" in out


def test_usable_from_pytest() -> None:
    outcomes = run_file(EXAMPLES / "greeter.test.yaml")
    assert [o.ok for o in outcomes] == [True, True], [o.report() for o in outcomes]
