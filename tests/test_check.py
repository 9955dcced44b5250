"""From a clone to production without guessing: `ragsync check` on a healthy config and on each
usual mistake (one line naming the source and what to do, and the exit code), the same fatal
mistakes refused at start, the `dlq drop` guard, `status` on a folder with no index, a failed
reconcile shown as failed, and `trusted_proxies` behind a reverse proxy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support import SECRET_ENV, free_port, page_html, run_cli, signed, wp_source, write_config


def check(cfg, *args: str, **env) -> tuple[int, str]:
    proc = run_cli(cfg, "check", *args, env=env or None, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("PROBLEM")]


def test_a_healthy_config_checks_out_and_says_what_to_give_the_cms(wp, tmp_path):
    wp.publish(7, "Hello", page_html(["Hello from WordPress."]))
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    code, out = check(cfg)
    assert code == 0 and out.rstrip().endswith("all is well"), out
    assert "listing and fetch work: 7 'Hello'" in out
    assert "/webhooks/blog" in out and "Settings → ragsync → Secret: the value of $" + SECRET_ENV in out
    report = json.loads(run_cli(cfg, "check", "--json").stdout)
    assert report["ok"] is True and report["setup"]["blog"]
    assert not (tmp_path / "var").exists()                       # a check writes nothing


@pytest.mark.parametrize("mistake, env, message", [
    ("closed port", {}, "listing failed: blog: cannot reach"),
    ("bad secret", {SECRET_ENV: "not-a-whsec-secret"}, "must look like whsec_<base64>"),
    ("missing variable", {SECRET_ENV: None}, f"environment variable {SECRET_ENV} is not set"),
    ("waf", {}, "listing failed: blog: listing posts answered HTTP 403"),
])
def test_each_mistake_is_one_line_naming_the_source_and_exit_1(mistake, env, message, wp, tmp_path):
    wp.publish(7, "Hello", page_html(["Hello."]))
    source = wp_source(wp)
    if mistake == "closed port":
        source = source.replace(wp.url, f"http://127.0.0.1:{free_port()}")
    if mistake == "waf":
        wp.fail_next(1, 403, body="<html><h1>Access denied</h1>Request blocked by the firewall.</html>")
    code, out = check(write_config(tmp_path, source, port=free_port()), **env)
    (line,) = problems(out)
    assert code == 1 and message in line and "blog" in line, out
    if mistake == "waf":
        assert "firewall, CDN or proxy" in line


@pytest.mark.parametrize("source, message", [
    ('[[sources]]\nname = "blog"\ntype = "wordpress"\nwebhook_secret_env = "{env}"\n', "base_url is not set"),
    ('[[sources]]\nname = "blog"\ntype = "wordpress"\nbase_url = "http://127.0.0.1:9"\nwebhook_secret_env = "T_PLAIN"\n',
     "must look like whsec_<base64>"),
])
def test_serve_refuses_what_check_finds_fatal(source, message, tmp_path):
    cfg = write_config(tmp_path, source.format(env=SECRET_ENV), port=free_port())
    proc = run_cli(cfg, "serve", env={"T_PLAIN": "a-plain-secret"}, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


def test_dlq_drop_names_its_keys_or_says_all(wp, tmp_path):
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    refused = run_cli(cfg, "dlq", "drop")
    assert refused.returncode == 2 and "--all" in refused.stderr and refused.stderr.count("\n") == 1
    assert run_cli(cfg, "dlq", "drop", "--all", check=True).stdout.startswith("drop: 0 key(s)")


def test_status_on_a_folder_without_an_index_says_so_and_creates_nothing(wp, tmp_path):
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    proc = run_cli(cfg, "status")
    assert proc.returncode == 1 and "no index in" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "var").exists()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux's script for a terminal")
def test_a_failed_reconcile_shows_as_failed_in_the_status_table(wp, tmp_path):
    dead = wp_source(wp).replace(wp.url, f"http://127.0.0.1:{free_port()}")
    cfg = write_config(tmp_path, dead, port=free_port())
    assert run_cli(cfg, "reconcile").returncode == 1                   # the CMS cannot be reached
    table = subprocess.run(["script", "-qec", f"{sys.executable} -m ragsync --config {cfg} status", "/dev/null"],
                           capture_output=True, text=True, timeout=120).stdout
    assert "FAILED" in table and "cannot reach" in table, table


def test_behind_a_trusted_proxy_allow_ips_sees_the_cms_not_the_proxy(wp, daemon_factory):
    daemon = daemon_factory(wp_source(wp) + 'allow_ips = ["203.0.113.7"]\n', 'trusted_proxies = ["127.0.0.1"]',
                            consume=False)
    raw, headers = signed({"type": "post.updated", "id": 1, "post_type": "post"})

    def deliver(forwarded: str | None) -> int:
        extra = {"x-forwarded-for": forwarded} if forwarded else {}
        return daemon.http.post("/webhooks/blog", content=raw, headers={**headers, **extra}).status_code
    assert deliver("203.0.113.7") == 202                              # the CMS, as the proxy saw it
    assert deliver("203.0.113.7, 198.51.100.1") == 403                # a client wrote the allowed address itself
    assert deliver(None) == 403                                       # the proxy's own address is not the CMS's


def test_check_writes_nothing_in_an_existing_data_dir_and_quotes_what_a_cms_sends(wp, tmp_path):
    wp.publish(7, "Hello", page_html(["Hello from WordPress."]))
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    (tmp_path / "var").mkdir()
    code, out = check(cfg)
    assert code == 0, out
    assert list((tmp_path / "var").iterdir()) == []                 # no daemon.lock either
    from ragsync.check import _shown
    assert _shown("7") == "7" and _shown("\x1b[2Jx") == "'\\x1b[2Jx'"


def test_a_data_dir_under_a_file_is_a_problem_for_check_and_one_line_for_serve(wp, tmp_path):
    """What `check` calls well, `serve` starts on: here neither may (a file is where a folder must go)."""
    (tmp_path / "taken").write_text("a file, not a folder")
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    cfg.write_text(cfg.read_text().replace('data_dir = "var"', f'data_dir = "{tmp_path / "taken" / "var"}"'))
    code, out = check(cfg)
    assert code == 1 and f"PROBLEM  store            data_dir {tmp_path / 'taken' / 'var'} cannot be created: " \
        f"{tmp_path / 'taken'} is a file, not a folder" in out, out
    served = run_cli(cfg, "serve", timeout=120)
    assert served.returncode == 1 and "Traceback" not in served.stderr
    assert served.stderr.strip().splitlines() == [f"ragsync: error: data_dir {tmp_path / 'taken' / 'var'} cannot be "
                                                   "created: Not a directory"]


def _problem_text(output: str) -> list[str]:
    """The PROBLEM lines' words, without the finding's column."""
    return [line.split(None, 2)[2] for line in problems(output)]


def test_an_index_built_another_way_is_the_same_line_for_check_and_serve(daemon_factory, wp):
    """What `check` calls well, `serve` starts on; what it calls a problem, `serve` refuses with
    the same words (read from the collection while no daemon runs, nothing written)."""
    wp.publish(1, "Page", page_html(["Hello from WordPress."]))
    daemon = daemon_factory(wp_source(wp))
    daemon.wp_event(1)
    daemon.idle()
    cfg = daemon.config.path
    code, out = check(cfg)                                          # held by the running daemon: read beside it
    assert code == 0 and "was built with these settings" in out, out
    daemon.close()
    cfg.write_text(cfg.read_text().replace("[reconcile]\n", "[chunking]\nmax_tokens = 120\n[reconcile]\n"))
    before = sorted((p.relative_to(cfg.parent), p.stat().st_mtime_ns) for p in (cfg.parent / "var").rglob("*"))
    code, out = check(cfg)
    (problem,) = _problem_text(out)
    assert code == 1 and "max_tokens 200 → 120" in problem and "ragsync reindex" in problem, out
    assert sorted((p.relative_to(cfg.parent), p.stat().st_mtime_ns) for p in (cfg.parent / "var").rglob("*")) == before
    served = run_cli(cfg, "serve", timeout=120)
    assert served.returncode == 1 and served.stderr.strip().splitlines() == [f"ragsync: error: {problem}"]


def test_a_collection_ragsync_did_not_write_is_refused_by_check_and_serve_alike(qdrant_server, wp, embedder, tmp_path):
    from qdrant_client import models

    from ragsync import check as check_mod
    from ragsync import config as config_mod
    from ragsync.daemon import Daemon
    from ragsync.errors import RagsyncError
    qdrant_server.create_collection("ragsync", vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE))
    qdrant_server.upsert("ragsync", [models.PointStruct(id=1, vector=[0.5] * 8, payload={"page_content": "theirs"})])
    config = config_mod.load(write_config(tmp_path, wp_source(wp), '[qdrant]\nurl = "http://qdrant.test:6333"'))
    found = [f for f in check_mod.run(config).findings if f.what == "store" and not f.ok]
    assert [f.text for f in found] == ["the collection 'ragsync' (ragsync) holds vectors ragsync did not write (no page "
                                       "records beside it): set another [qdrant] collection, or move that one away"]
    daemon = Daemon(config, embedder=embedder, port=0)
    with pytest.raises(RagsyncError) as refused:
        daemon.start()
    assert str(refused.value) == found[0].text
    assert not qdrant_server.collection_exists("ragsync_pages") and qdrant_server.count("ragsync").count == 1
