"""The status page (`GET /`): figures an operator can read at a glance, no request to any other
origin (headless Chromium, network log), read-only without the admin token, and actions that
only a logged-in admin's own page can trigger (a forged POST is refused)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import ADMIN_TOKEN, ServeProcess, free_port, page_html, reconcile_cli, wait_for, wp_source, write_config

ACTION_FORMS = re.compile(r'<form method="post" action="/status/(dlq|reconcile)')


def _park_one(wp, post: int, deliver) -> None:
    """A page whose only fetch is refused (HTTP 400: this page, not an outage): parked at once."""
    wp.publish(post, "Broken page", page_html(["It will not be fetched."]))
    wp.fail_next(1, 400)
    deliver(post)


def test_read_only_without_the_token_and_actions_only_from_the_admins_own_page(wp, daemon_factory):
    daemon = daemon_factory(wp_source(wp), "[queue]\nmax_attempts = 1")
    wp.publish(1, "Ownership", page_html(["Ownership moves a value to a new owner."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    _park_one(wp, 2, lambda post: daemon.wp_event(post, "post.published"))
    daemon.idle()

    anonymous = httpx.Client(base_url=daemon.url, timeout=30)
    page = anonymous.get("/")
    csp = page.headers["content-security-policy"]
    assert page.status_code == 200 and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert 'id="dead">1<' in page.text and "blog/2" in page.text and not ACTION_FORMS.search(page.text)
    reflected = anonymous.get("/", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>" not in reflected and "&lt;script&gt;alert(1)&lt;/script&gt;" in reflected   # escaped
    assert not re.findall(r'(?:src|href|action)="(?:https?:)?//', page.text)                        # nothing external
    forged = anonymous.post("/status/dlq/replay", data={"key": "blog/2", "csrf": "guess"})
    assert forged.status_code == 403 and daemon.engine.queue.dead()
    assert anonymous.post("/status/login", data={"token": "wrong"}).status_code == 403

    admin = httpx.Client(base_url=daemon.url, timeout=30)
    assert admin.post("/status/login", data={"token": ADMIN_TOKEN}).status_code == 303
    cookie = admin.cookies.jar
    assert any(c.name == "ragsync_session" and c.value != ADMIN_TOKEN and c.has_nonstandard_attr("HttpOnly")
               for c in cookie)
    page = admin.get("/").text
    assert ACTION_FORMS.search(page)
    no_csrf = admin.post("/status/dlq/replay", data={"key": "blog/2"})
    assert no_csrf.status_code == 403 and daemon.engine.queue.dead()             # the session alone is not enough
    form = re.search(r'<form method="post" action="/status/dlq/replay">(.*?)</form>', page).group(1)
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    assert admin.post("/status/dlq/replay", data=fields).status_code == 303      # the page's own form
    daemon.idle()
    assert not daemon.engine.queue.dead() and 'id="dlq-empty"' in admin.get("/").text
    assert "2" in {p.doc_id for p in daemon.engine.store.iter_pages("blog") if p.state == "live"}


def test_the_search_box_shows_each_page_once(wp, daemon):
    for post, text in ((1, "Ownership moves a value."), (2, "Threads run closures at once.")):
        wp.publish(post, f"Page {post}", page_html([text, "Ownership rules apply to every value."]))
        daemon.wp_event(post, "post.published")
    daemon.idle()
    page = httpx.get(f"{daemon.url}/", params={"q": "ownership of a value"}).text
    results = re.search(r'<ol id="results">(.*?)</ol>', page).group(1)
    titles = re.findall(r'>(Page \d)</a>', results)
    assert sorted(titles) == ["Page 1", "Page 2"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed "
                    "(scripts/test installs the Debian package where apt-get can)")
def test_headless_chromium_renders_the_figures_and_asks_no_other_origin(wp, tmp_path: Path):
    port = free_port()
    cfg = write_config(tmp_path, wp_source(wp), "reconcile_on_start = false\n[queue]\nmax_attempts = 1", port=port)
    for post in range(1, 4):
        wp.publish(post, f"Guide {post}", page_html([f"Chapter {post} explains borrowing and lifetimes."]))
    daemon = ServeProcess(cfg, tmp_path / "serve.log")
    try:
        report = reconcile_cli(cfg)                                              # a reconcile done
        assert len(report["added"]) == 3
        _park_one(wp, 9, lambda post: daemon.webhook("blog", {"type": "post.published", "id": post}))
        wait_for(lambda: daemon.admin("/admin/status")["dead"] == 1, 60, "a parked key")
        url = f"http://127.0.0.1:{port}/"
        netlog, shot = tmp_path / "net.json", tmp_path / "status.png"
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400"]
        dom = subprocess.run(["chromium", *flags, f"--log-net-log={netlog}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
        subprocess.run(["chromium", *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120)
        assert 'id="points">' in dom and 'id="source-blog"' in dom and "blog/9" in dom, dom[:500]
        assert re.search(r'<tr id="source-blog"><td>blog</td><td>3</td>', dom)  # 3 live pages
        assert "listed 3" in dom and not ACTION_FORMS.search(dom)            # the reconcile; read-only
        assert shot.exists() and shot.stat().st_size > 10_000
        origin = f"http://127.0.0.1:{port}"
        requests = [e["params"] for e in json.loads(netlog.read_text())["events"]
                    if isinstance(e.get("params"), dict) and "url" in e["params"]]
        assert any(r["url"] == url for r in requests)                            # the page itself was loaded
        by_page = {r["url"] for r in requests if r.get("initiator") == origin}   # what the page asked for
        assert all(u.startswith(origin + "/") for u in by_page), by_page      # (the browser's own chatter aside)
        body = httpx.get(url).content
        print(f"\nstatus page: {len(body)} bytes, rendered in "
              f"{httpx.get(url).headers['server-timing'].split('dur=')[1]} ms")
    finally:
        daemon.stop()
