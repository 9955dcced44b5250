"""docs/production.md followed as far as a test machine allows: the secrets template filled
with the commands it gives, the example config copied with an absolute data_dir, `ragsync
check` all well against a CMS; the systemd units verified by systemd itself; every Prometheus
alert naming a metric the daemon really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port, page_html

ROOT = Path(__file__).resolve().parent.parent


def fill_secrets(template: str) -> dict[str, str]:
    """Each `NAME=` line gets the value of the command in the comment line above it."""
    values, command = {}, None
    for line in template.splitlines():
        if line.startswith("# python3 -c"):
            command = line.removeprefix("# ").split("  ")[0].strip()
        elif re.fullmatch(r"[A-Z_]+=", line) and command:
            values[line[:-1]] = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                               check=True).stdout.strip()
    return values


def test_the_production_steps_in_a_clean_folder(wp, tmp_path):
    wp.publish(3, "Release notes", page_html(["What changed in this release."]))
    secrets = fill_secrets((ROOT / "config" / "secrets.env.example").read_text())
    assert set(secrets) == {"RAGSYNC_ADMIN_TOKEN", "RAGSYNC_SEARCH_TOKEN", "RAGSYNC_BLOG_SECRET"}
    assert secrets["RAGSYNC_BLOG_SECRET"].startswith("whsec_") and len(secrets["RAGSYNC_ADMIN_TOKEN"]) >= 40
    etc = tmp_path / "etc"
    etc.mkdir()
    config = (ROOT / "config" / "ragsync.toml").read_text()
    assert 'data_dir = "/var/lib/ragsync"' in config                  # absolute in the example
    config = (config.replace('data_dir = "/var/lib/ragsync"', f'data_dir = "{tmp_path / "state"}"')
              .replace('base_url = "http://127.0.0.1:8080"', f'base_url = "{wp.url}"')
              .replace("port = 8787", f"port = {free_port()}"))
    (etc / "ragsync.toml").write_text(config)
    template = (ROOT / "config" / "secrets.env.example").read_text()
    (etc / "secrets.env").write_text("".join(f"{line}{secrets[line[:-1]]}\n" if line[:-1] in secrets else f"{line}\n"
                                             for line in template.splitlines()))
    proc = subprocess.run(["bash", "-c", pasted(documented_check(), etc)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("all is well"), proc.stdout + proc.stderr
    assert "Settings → ragsync → Webhook URL" in proc.stdout
    cron = next(line for line in (ROOT / "config" / "reconcile.cron").read_text().splitlines() if line[:1].isdigit())
    log = tmp_path / "reconcile.log"
    job = pasted(cron.split(" ", 5)[5], etc).replace("/var/log/ragsync-reconcile.log", str(log))
    assert subprocess.run(["sh", "-c", job], timeout=300).returncode == 0, log.read_text()
    assert "added 1" in log.read_text() or '"added"' in log.read_text(), log.read_text()


def documented_check() -> str:
    """The `ragsync check` block of docs/production.md §3, as an operator pastes it."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "production.md").read_text(), re.S)
    return next(b for b in blocks if "secrets.env" in b and b.rstrip().endswith("check'"))


def pasted(command: str, etc: Path) -> str:
    """A documented command with this machine's paths: the test's /etc/ragsync and this checkout's
    .venv; no `sudo` or `runuser -u ragsync` (no such user here). The way it loads the secrets
    file, which is what broke before, is untouched."""
    return (command.replace("sudo sh -c", "sh -c").replace("runuser -u ragsync -- ", "")
            .replace("/etc/ragsync", str(etc)).replace("/opt/ragsync/.venv", str(ROOT / ".venv")))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_systemd_units_verify(tmp_path):
    venv = ROOT / ".venv"
    for unit in (ROOT / "config" / "systemd").iterdir():
        name = unit.name.replace("@.service", "@8788.service")       # an instance of the template
        (tmp_path / name).write_text(unit.read_text().replace("/opt/ragsync/.venv", str(venv)))
    units = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(["systemd-analyze", "verify", *units], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert {"ragsync.service", "ragsync-web.service", "ragsync-worker@8788.service"} <= set(units)


def _expressions(path: Path) -> list[str]:
    if path.suffix == ".json":                                          # a Grafana dashboard
        return [t["expr"] for panel in json.loads(path.read_text())["panels"] for t in panel["targets"]]
    return re.findall(r"expr: (.*)", path.read_text())                  # Prometheus rules


@pytest.mark.parametrize("path", ["config/prometheus/alerts.yml", "config/grafana/ragsync.json"])
def test_every_expression_names_a_metric_the_daemon_exports(path, daemon, wp):
    wp.publish(1, "Page", page_html(["Some text to index."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    text = daemon.http.get("/metrics").text
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exported = series | families | {f + suffix for f in families for suffix in ("_total", "_bucket", "_count", "_sum")}
    used = {name for expr in _expressions(ROOT / path) for name in re.findall(r"\b(ragsync_[a-z_]+)", expr)}
    assert len(used) >= 8 and used <= exported, sorted(used - exported)
