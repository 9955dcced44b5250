"""The `ragsync` command against a real `ragsync serve` process (over the admin API) and
against the store directly when no daemon runs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import SECRET_ENV, ServeProcess, free_port, run_cli, wait_for

DEMO_PAGES = Path(__file__).resolve().parent.parent / "config" / "demo" / "pages"


@pytest.fixture
def files_config(tmp_path: Path) -> Path:
    pages = tmp_path / "pages"
    pages.mkdir()
    for name in ("ch04-01-what-is-ownership", "guide-dependencies", "ch16-01-threads"):
        shutil.copy(DEMO_PAGES / f"{name}.html", pages / f"{name}.html")
    cfg = tmp_path / "ragsync.toml"
    cfg.write_text(f'data_dir = "var"\n[server]\nport = {free_port()}\n'
                   f'[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\nwebhook_secret_env = "{SECRET_ENV}"\n')
    return cfg


def test_commands_with_and_without_a_running_daemon(files_config: Path, tmp_path: Path):
    daemon = ServeProcess(files_config, tmp_path / "serve.log")
    url = daemon.url
    try:
        wait_for(lambda: daemon.admin("/admin/status")["sources"]["docs"]["pages_live"] == 3, 180,
                 "the startup reconcile to index the pages")
        daemon.idle()

        # over HTTP while the daemon holds the store
        out = run_cli(files_config, "search", "how do I add a dependency to Cargo.toml", "--json", check=True).stdout
        results = json.loads(out)["results"]
        assert results and results[0]["doc_id"] == "guide-dependencies"
        status = json.loads(run_cli(files_config, "status", "--json", check=True).stdout)
        assert status["daemon"] == url and status["points"] > 0
        lines = run_cli(files_config, "export", check=True).stdout.splitlines()
        assert len(lines) == status["points"]
        assert all({"page_content", "metadata"} <= set(json.loads(line)) for line in lines)
        report = json.loads(run_cli(files_config, "reconcile", "--json", check=True).stdout)["reports"][0]
        assert report["unchanged"] == 3 and not report["errors"]

        # a webhook for a new file, then for its deletion
        page = tmp_path / "pages" / "extra.html"
        page.write_text("<title>Extra</title><h1>Extra</h1><p>Zebras graze on the savanna at dawn.</p>")
        assert daemon.webhook("docs", {"id": "extra"}).status_code == 202
        wait_for(lambda: "extra" in run_cli(files_config, "search", "zebras savanna", "--json", check=True).stdout, 60,
                 "the new page to become searchable")
        page.unlink()
        assert daemon.webhook("docs", {"id": "extra"}).status_code == 202
        wait_for(lambda: '"extra"' not in run_cli(files_config, "export", check=True).stdout, 60, "the page to be removed")
    finally:
        code = daemon.stop()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]

    # no daemon: the same commands open the store themselves
    results = json.loads(run_cli(files_config, "search", "ownership rules", "--json", check=True).stdout)["results"]
    assert results and results[0]["source"] == "docs"
    status = json.loads(run_cli(files_config, "status", "--json", check=True).stdout)
    assert status["daemon"] is None and status["sources"]["docs"]["pages_live"] == 3
    text = run_cli(files_config, "search", "threads", check=True).stdout
    assert "Using Threads" in text
    for page in (tmp_path / "pages").iterdir():
        page.unlink()
    guarded = run_cli(files_config, "reconcile", check=False)        # never all of a source without --force
    assert guarded.returncode == 1 and "mass-deletion guard" in guarded.stdout
    assert "ch16-01-threads" in run_cli(files_config, "export", check=True).stdout
    report = json.loads(run_cli(files_config, "reconcile", "--force", "--json", check=True).stdout)["reports"][0]
    assert report["tombstoned"] == ["ch04-01-what-is-ownership", "ch16-01-threads", "guide-dependencies"]
    assert "ch16-01-threads" not in run_cli(files_config, "export", check=True).stdout


def test_admin_commands_against_a_daemon_need_the_token(files_config: Path, tmp_path: Path, monkeypatch):
    """With the daemon up and no token in the environment, status says what to set."""
    daemon = ServeProcess(files_config, tmp_path / "serve.log")
    try:
        monkeypatch.delenv("RAGSYNC_ADMIN_TOKEN")
        res = run_cli(files_config, "status", check=False)
        assert res.returncode == 1 and "set RAGSYNC_ADMIN_TOKEN" in res.stderr and "Traceback" not in res.stderr
    finally:
        daemon.stop()


def test_scripts_up_takes_a_port_and_prints_commands_that_work(tmp_path: Path):
    """`scripts/up --port N --config FILE` as a newcomer runs it: the banner names what it started,
    its search command answers, and a second one on a busy port says so instead of hanging."""
    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "demo.toml"
    config.write_text((root / "config" / "demo.toml").read_text()
                      .replace('data_dir = "../var/demo"', f'data_dir = "{tmp_path / "var"}"')
                      .replace('path = "demo/pages"', f'path = "{DEMO_PAGES}"'))
    port = free_port()
    log = open(tmp_path / "up.log", "w+")
    up = subprocess.Popen([str(root / "scripts" / "up"), "--port", str(port), "--config", str(config)], cwd=root,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "ragsync is up" in (tmp_path / "up.log").read_text(), 300, "scripts/up's banner")
        banner = (tmp_path / "up.log").read_text()
        assert f"ragsync is up on http://127.0.0.1:{port}" in banner
        search = next(line.strip() for line in banner.splitlines() if " search " in line and "ragsync" in line)
        assert f"--config {config} search" in search
        found = subprocess.run(search, shell=True, cwd=root, capture_output=True, text=True, timeout=120)
        assert found.returncode == 0 and "cargo-add" in found.stdout, found.stderr
        busy = subprocess.run([str(root / "scripts" / "up"), "--port", str(port), "--config", str(config)], cwd=root,
                              capture_output=True, text=True, timeout=120)
        assert busy.returncode == 1 and f"something already answers on port {port}" in busy.stderr
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(60)
        log.close()
