"""The typed configuration: one definition per table (isolde.settings), checked when read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import isolde
from isolde.daemon.settings import DaemonSettings
from isolde.isolates.settings import ActionSettings
from isolde.settings import TABLES
from isolde.sidecar.settings import SidecarSettings


@pytest.mark.parametrize(("table", "reader"), [("daemon", DaemonSettings), ("sidecar", SidecarSettings),
                                               ("actions", ActionSettings)])
def test_each_tables_reader_knows_exactly_the_defined_keys(table: str, reader: type) -> None:
    assert {f.name for f in dataclasses.fields(reader)} == set(TABLES[table].keys)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"store": {"blob_treshold": 5}}, "unknown setting [store] 'blob_treshold' (did you mean 'blob_threshold'?)"),
        ({"sidecar": {"prot": 1}}, "unknown setting [sidecar] 'prot' (did you mean 'port'?)"),
        ({"daemon": {"max_runing": 2}}, "unknown setting [daemon] 'max_runing' (did you mean 'max_running'?)"),
        ({"actions": {"timout": 5}}, "unknown setting [actions] 'timout' (did you mean 'timeout'?)"),
        ({"limits": {"max_step": 5}}, "unknown setting [limits] 'max_step' (did you mean 'max_steps'?)"),
        ({"limitz": {}}, "unknown setting 'limitz' (did you mean 'limits'?)"),
        ({"sidecar": {"port": "8889"}}, "[sidecar] port must be an integer from 0 to 65535, got '8889'"),
        ({"sidecar": {"host": "0.0.0.0"}}, "[sidecar] host must be a loopback address"),
        ({"store": {"durability": "sometimes"}}, '[store] durability must be "full" or "fast"'),
        ({"actions": {"timeout": "soon"}}, "ISO-8601 duration"),
        ({"daemon": {"delete_vars_with_files": "yes"}}, "[daemon] delete_vars_with_files must be true or false"),
        ({"secrets": {"db": ["a"]}}, "[secrets] db must be a string"),
        ({"plugins": {"disable": "checksum"}}, "[plugins] disable must be a list of plugin names"),
    ],
)
def test_every_mistake_is_one_clear_line_at_start(tmp_path: Path, config: dict, message: str) -> None:
    with pytest.raises(isolde.ConfigError) as err:
        isolde.Engine(data_dir=tmp_path, config=config)
    text = str(err.value)
    assert message in text and "\n" not in text, text


def test_a_config_file_is_named_in_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "isolde.toml"
    path.write_text("[sidecar]\nprot = 1\n")
    with pytest.raises(isolde.ConfigError, match=rf"^{tmp_path}/isolde.toml: unknown setting \[sidecar\] 'prot'"):
        isolde.load_config(path)
