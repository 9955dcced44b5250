"""Config errors are one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragsync import config as config_mod
from ragsync.errors import ConfigError

RAGSYNC = [sys.executable, "-m", "ragsync"]


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*RAGSYNC, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


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
    line = one_line_error(run("status", "--config", str(path)))
    assert message in line


def test_missing_config_file_and_no_config(tmp_path):
    assert "config file not found" in one_line_error(run("status", "--config", str(tmp_path / "nope.toml")))
    env = {k: v for k, v in os.environ.items() if k != "RAGSYNC_CONFIG"}
    proc = subprocess.run([*RAGSYNC, "status"], capture_output=True, text=True, env=env, timeout=60)
    assert "pass --config PATH or set RAGSYNC_CONFIG" in one_line_error(proc)


def test_missing_secret_env_var_is_named_at_serve(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 18787\n[[sources]]\nname = "blog"\ntype = "wordpress"\n'
                    'base_url = "http://127.0.0.1:9"\nwebhook_secret_env = "RAGSYNC_UNSET_SECRET"\n')
    env = {k: v for k, v in os.environ.items() if k != "RAGSYNC_UNSET_SECRET"}
    proc = subprocess.run([*RAGSYNC, "--config", str(path), "serve"], capture_output=True, text=True,
                          env=env, timeout=60)
    line = one_line_error(proc)
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
    assert "unknown source 'blog'" in one_line_error(run("search", "x", "--source", "blog", "--config", str(path)))
