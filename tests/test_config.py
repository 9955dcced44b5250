"""Config errors are one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess

import pytest

from ragsync import config as config_mod
from ragsync.errors import ConfigError
from tests.support import run_cli


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("text, message", [
    ('data_dir = "var"\nbogus = 1\n', "unknown key 'bogus'"),
    ('[server]\nprot = 8787\n', "[server]: unknown key 'prot'"),
    ('[[sources]]\nname = "b"\ntype = "joomla"\n', "unknown source type 'joomla'"),
    ('[[sources]]\nname = "b"\ntype = "wordpress"\npath = "x"\n', "source 'b': unknown key 'path'"),
    ('[[sources]]\ntype = "wordpress"\n', "'name' is required"),
    ('[[sources]]\nname = "a b"\ntype = "wordpress"\n', "must be letters"),
    ('[server]\nport = "eighty"\n', "port: expected int"),
    ('this is not toml', "invalid TOML"),
    ('[[sources]]\nname = "b"\ntype = "files"\nallow_ips = ["10.0.0.0/33"]\n', "'allow_ips'"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        config_mod.load(path)
    assert message in str(err.value)
    line = one_line_error(run_cli(path, "status"))
    assert message in line


def test_missing_config_file_and_no_config(tmp_path):
    assert "config file not found" in one_line_error(run_cli(tmp_path / "nope.toml", "status"))
    proc = run_cli(None, "status", env={"RAGSYNC_CONFIG": None})
    assert "pass --config PATH or set RAGSYNC_CONFIG" in one_line_error(proc)


def test_missing_secret_env_var_is_named_at_serve(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 18787\n[[sources]]\nname = "blog"\ntype = "wordpress"\n'
                    'base_url = "http://127.0.0.1:9"\nwebhook_secret_env = "RAGSYNC_UNSET_SECRET"\n')
    line = one_line_error(run_cli(path, "serve", env={"RAGSYNC_UNSET_SECRET": None}))
    assert "RAGSYNC_UNSET_SECRET is not set" in line


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('data_dir = "../data"\n[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\n')
    cfg = config_mod.load(path)
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.sources["docs"].base_dir == (tmp_path / "sub").resolve()


def test_unknown_source_on_the_command_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[sources]]\nname = "docs"\ntype = "files"\n')
    assert "unknown source 'blog'" in one_line_error(run_cli(path, "search", "x", "--source", "blog"))
