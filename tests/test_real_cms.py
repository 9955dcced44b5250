"""Real Ghost and real Strapi 5, end to end (opt-in: RAGSYNC_REAL_CMS=1; the first run installs
them from the npm registry, ~5 and ~2 minutes, cached under var/cms/). Each CMS's own native
webhooks reach a real `ragsync serve`; every change is made through the CMS's own API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_TOKEN, ServeProcess, free_port, reconcile_cli, write_config

ROOT = Path(__file__).resolve().parent.parent
HOOK_SECRET = "real-cms-hook-secret"


def _start(script: str, d: Path, env: dict[str, str]) -> None:
    if os.environ.get("RAGSYNC_REAL_CMS") != "1":
        pytest.skip(f"real {script} test is opt-in: set RAGSYNC_REAL_CMS=1 (installs it from npm on first run)")
    if shutil.which("npm") is None:
        pytest.skip(f"real {script} test skipped: needs node and npm")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "start"], env={**os.environ, "D": str(d), **env},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _stop(d: Path, pgid_file: str) -> None:
    subprocess.run(["bash", "-c", f"kill -- -$(cat {d / pgid_file}) 2>/dev/null"], check=False)


def _serve(tmp_path: Path, port: int, source: str, monkeypatch, env: dict[str, str]) -> ServeProcess:
    for var, value in {"RAGSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "T_HOOK_SECRET": HOOK_SECRET, **env}.items():
        monkeypatch.setenv(var, value)
    cfg = write_config(tmp_path, source, "reconcile_on_start = false", port=port)
    return ServeProcess(cfg, tmp_path / "serve.log")


def _timed(daemon: ServeProcess, check, what: str) -> float:
    started = time.monotonic()
    daemon.eventually(check, what, timeout=30)
    return time.monotonic() - started


def test_real_ghost_end_to_end(tmp_path: Path, monkeypatch):
    d, cms_port, rs_port = tmp_path / "ghost", free_port(), free_port()
    _start("ghost", d, {"PORT": str(cms_port), "RAGSYNC_URL": f"http://127.0.0.1:{rs_port}/webhooks/ghost",
                        "RAGSYNC_SECRET": HOOK_SECRET})
    try:
        keys = json.loads((d / "keys.json").read_text())
        daemon = _serve(tmp_path, rs_port, f'[[sources]]\nname = "ghost"\ntype = "ghost"\n'
                        f'base_url = "http://127.0.0.1:{cms_port}"\nwebhook_secret_env = "T_HOOK_SECRET"\n'
                        f'content_key_env = "T_GHOST_KEY"\n', monkeypatch, {"T_GHOST_KEY": keys["content"]})
        site = f"http://127.0.0.1:{cms_port}"
        admin = httpx.Client(base_url=f"{site}/ghost/api/admin", timeout=30, headers={"Origin": site})
        admin.post("/session/", json={"username": "admin@example.com", "password": "Admin-pass-123456"}).raise_for_status()
        try:
            _ghost_story(daemon, admin, tmp_path)
        finally:
            admin.close()
            daemon.stop()
    finally:
        _stop(d, "ghost.pgid")


def _ghost_story(daemon: ServeProcess, admin: httpx.Client, tmp_path: Path) -> None:
    def create(kind: str, title: str, html: str) -> dict:
        resp = admin.post(f"/{kind}/?source=html", json={kind: [{"title": title, "html": html, "status": "published"}]})
        assert resp.status_code == 201, resp.text
        return resp.json()[kind][0]

    def update(kind: str, item: dict, **changes) -> dict:
        current = admin.get(f"/{kind}/{item['id']}/").json()[kind][0]
        resp = admin.put(f"/{kind}/{item['id']}/?source=html", json={kind: [{"updated_at": current["updated_at"], **changes}]})
        assert resp.status_code == 200, resp.text
        return resp.json()[kind][0]

    reconcile_cli(daemon.config.path)                     # Ghost's own sample content
    post = create("posts", "Meet Ferris", "<p>Ferris the crab teaches ownership and borrowing.</p>")
    pid = post["id"]
    took = _timed(daemon, lambda t: "Ferris the crab" in t.get(pid, ""), "the published post")
    print(f"\nGhost publish → indexed in {took:.2f}s")
    hit = daemon.http.get("/search", params={"q": "who teaches ownership", "limit": 1}).json()["results"][0]
    assert (hit["doc_id"], hit["title"]) == (pid, "Meet Ferris")
    update("posts", post, html="<p>Ferris now explains lifetimes instead.</p>")
    daemon.eventually(lambda t: "lifetimes" in t.get(pid, "") and "borrowing" not in t.get(pid, ""), "the edit")
    update("posts", post, status="draft")
    daemon.eventually(lambda t: pid not in t, "unpublish → gone")
    update("posts", post, status="published")
    daemon.eventually(lambda t: pid in t, "republish → back")
    assert admin.delete(f"/posts/{pid}/").status_code == 204
    daemon.eventually(lambda t: pid not in t, "delete → gone")
    page = create("pages", "About", "<p>This site documents crabs of every kind.</p>")
    daemon.eventually(lambda t: "documents crabs" in t.get(page["id"], ""), "a page")
    update("pages", page, status="draft")
    daemon.eventually(lambda t: page["id"] not in t, "a page unpublished")
    report = reconcile_cli(daemon.config.path)
    assert (report["added"], report["updated"], report["repaired"], report["tombstoned"]) == ([], [], [], [])
    print(f"Ghost reconcile after the story: {report['listed']} listed, all unchanged")


def test_real_strapi_end_to_end(tmp_path: Path, monkeypatch):
    d, cms_port, rs_port = tmp_path / "strapi", free_port(), free_port()
    _start("strapi", d, {"PORT": str(cms_port), "RAGSYNC_URL": f"http://127.0.0.1:{rs_port}/webhooks/strapi",
                         "RAGSYNC_TOKEN": HOOK_SECRET})
    try:
        daemon = _serve(tmp_path, rs_port, f'[[sources]]\nname = "strapi"\ntype = "strapi"\n'
                        f'base_url = "http://127.0.0.1:{cms_port}"\nwebhook_secret_env = "T_HOOK_SECRET"\n'
                        f'api_token_env = "T_STRAPI_API"\ncollections = ["articles"]\n', monkeypatch,
                        {"T_STRAPI_API": (d / "api-token-ro.txt").read_text().strip()})
        site = f"http://127.0.0.1:{cms_port}"
        api = httpx.Client(base_url=f"{site}/api", timeout=30,
                           headers={"Authorization": f"Bearer {(d / 'api-token-full.txt').read_text().strip()}"})
        manager = httpx.Client(base_url=f"{site}/content-manager/collection-types/api::article.article", timeout=30,
                               headers={"Authorization": f"Bearer {(d / 'admin-jwt.txt').read_text().strip()}"})
        try:
            _strapi_story(daemon, api, manager)
        finally:
            api.close()
            manager.close()
            daemon.stop()
    finally:
        _stop(d, "strapi.pgid")


def _strapi_story(daemon: ServeProcess, api: httpx.Client, manager: httpx.Client) -> None:
    reconcile_cli(daemon.config.path)
    blocks = [{"type": "heading", "level": 2, "children": [{"type": "text", "text": "Channels"}]},
              {"type": "paragraph", "children": [{"type": "text", "text": "Threads talk through channels."}]}]
    resp = api.post("/articles", json={"data": {"title": "Concurrency", "body": "Ferris the crab **shares** memory.",
                                                "content": blocks}})
    assert resp.status_code == 201, resp.text
    doc = resp.json()["data"]["documentId"]
    took = _timed(daemon, lambda t: "Ferris the crab shares memory" in t.get(doc, "")
                  and "Threads talk through channels" in t.get(doc, ""), "the published article (Markdown + blocks)")
    print(f"\nStrapi publish → indexed in {took:.2f}s")
    assert api.put(f"/articles/{doc}", json={"data": {"body": "Ferris now prefers message passing."}}).status_code == 200
    daemon.eventually(lambda t: "message passing" in t.get(doc, "") and "shares" not in t.get(doc, ""), "the edit")
    assert manager.post(f"/{doc}/actions/unpublish", json={}).status_code == 200
    daemon.eventually(lambda t: doc not in t, "unpublish → gone")
    assert manager.post(f"/{doc}/actions/publish", json={}).status_code == 200
    daemon.eventually(lambda t: doc in t, "publish again → back")
    assert api.delete(f"/articles/{doc}").status_code == 204
    daemon.eventually(lambda t: doc not in t, "delete → gone")
    for i in range(3):
        api.post("/articles", json={"data": {"title": f"Bulk {i}", "body": f"Bulk article {i} about crabs."}})
    daemon.eventually(lambda t: sum("Bulk article" in v for v in t.values()) == 3, "3 articles")
    report = reconcile_cli(daemon.config.path)
    assert (report["added"], report["updated"], report["repaired"], report["tombstoned"]) == ([], [], [], [])
    print(f"Strapi reconcile after the story: {report['listed']} listed, all unchanged")
