"""The HTTP door against a hostile or confused client: guessed logins are limited, sessions
expire and are bound to their forms, no character or date a client sends is a 500, junk
X-Forwarded-For values cost nothing, addresses are compared as addresses, a rebound DNS name
is refused, and no empty field acts on everything."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from werkzeug.test import Client

from ragsync import config as config_mod
from ragsync.daemon import Daemon, Role
from ragsync.door import MAX_BUCKETS, RateLimiter, client_key
from ragsync.errors import ConfigError
from ragsync.front import behind_front
from ragsync.source import within
from ragsync.web import create_app
from tests.support import ADMIN_TOKEN, page_html, wp_source, write_config


def login(http: httpx.Client, token: str = ADMIN_TOKEN, **headers) -> httpx.Response:
    return http.post("/status/login", data={"token": token}, headers=headers)


def test_guessed_logins_are_limited_and_short_tokens_refused(daemon, tmp_path, monkeypatch):
    codes = [login(daemon.http, "wrong-token-wrong-token-wrong").status_code for _ in range(7)]
    assert codes[:5] == [403] * 5 and codes[5:] == [429, 429]
    monkeypatch.setenv("RAGSYNC_ADMIN_TOKEN", "short-token")
    cfg = config_mod.load(write_config(tmp_path / "short", wp_source_placeholder()))
    with pytest.raises(ConfigError, match="at least 24"):
        cfg.admin_token()


def wp_source_placeholder() -> str:
    return '[[sources]]\nname = "blog"\ntype = "wordpress"\nbase_url = "http://127.0.0.1:9"\nwebhook_secret_env = "X"\n'


def test_sessions_differ_expire_and_bind_their_forms(daemon):
    first, second = httpx.Client(base_url=daemon.url), httpx.Client(base_url=daemon.url)
    one = login(first).headers["set-cookie"]
    two = login(second).headers["set-cookie"]
    assert one.split(";")[0] != two.split(";")[0]
    assert "Max-Age=43200" in one and "HttpOnly" in one and "Secure" not in one
    assert first.post("/status/logout").status_code == 403                # no CSRF token: refused
    assert 'action="/status/logout"' in first.get("/").text


def test_secure_cookie_behind_an_https_proxy(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), 'trusted_proxies = ["127.0.0.1/32"]')
    cookie = login(daemon.http, **{"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" in cookie


def test_no_character_or_date_a_client_sends_is_a_500(daemon):
    odd = httpx.Client(base_url=daemon.url, headers={"cookie": "ragsync_session=\u00e9t\u00e9.1.x".encode()})
    assert odd.get("/").status_code == 200
    assert odd.post("/status/dlq/drop", data={"csrf": "\u00e9", "key": "blog/1"}).status_code == 403
    assert odd.post("/status/login", data={"token": "\u00e9" * 30}).status_code == 403
    for name, value in (("modified_after", "0001-01-01T00:00:00+01:00"),
                        ("modified_before", "9999-12-31T23:59:59-01:00")):
        resp = daemon.http.get("/search", params={"q": "x", name: value})
        assert resp.status_code == 400, resp.text


def test_an_empty_dlq_key_acts_on_nothing(daemon):
    http = httpx.Client(base_url=daemon.url)
    login(http)
    page = http.get("/").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    assert http.post("/status/dlq/drop", data={"csrf": csrf, "key": ""}).status_code == 400
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    assert daemon.http.post("/admin/dlq/drop", json={"keys": []}, headers=admin).status_code == 400


def test_the_status_page_search_box_pays_the_search_rate_limit(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), "search_rate_limit_per_s = 1")
    wp.publish(1, "Crabs", page_html(["Ferrous crabs."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    pages = [daemon.http.get("/", params={"q": "crabs"}).text for _ in range(4)]
    assert "rate limit" in pages[-1]
    assert daemon.http.get("/search", params={"q": "crabs"}).status_code == 429


def test_junk_forwarded_addresses_cost_nothing_and_ipv6_is_keyed_by_its_64(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), 'trusted_proxies = ["127.0.0.1/32"]\nsearch_rate_limit_per_s = 1000')
    limiter = daemon.app.extensions["ragsync.limiter"]
    for i in range(300):
        daemon.http.get("/search", params={"q": "x"}, headers={"X-Forwarded-For": f"junk-{i}, <script>{i}"})
    assert len([k for k in limiter.buckets if k.startswith("search ")]) == 1
    # the front vouches for the address it saw, and no client can claim one through it
    daemon.http.get("/search", params={"q": "x"}, headers={"X-Ragsync-Client": "203.0.113.7",
                                                             "X-Ragsync-Front": "guess"})
    assert [k for k in limiter.buckets if k.startswith("search ")] == ["search 127.0.0.1"]
    front = Client(behind_front(daemon.app, daemon.front.secret))
    for secret in ("guess", daemon.front.secret):
        front.get("/search?q=x", headers={"X-Ragsync-Client": "203.0.113.7", "X-Ragsync-Front": secret},
                  environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert [k for k in limiter.buckets if k.startswith("search ")] == ["search 127.0.0.1", "search 203.0.113.7"]
    app = create_app(daemon.engine)
    with app.test_request_context(environ_base={"REMOTE_ADDR": "2001:db8:1:2:aaaa::1"}):
        assert client_key(daemon.engine.config) == "2001:db8:1:2::/64"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"},
                                  headers={"X-Forwarded-For": "203.0.113.9, not-an-address"}):
        assert client_key(daemon.engine.config) == "203.0.113.9"
    limiter = RateLimiter()
    for i in range(MAX_BUCKETS + 500):
        limiter.wait_s(f"k{i}", 1.0, 5)
    assert len(limiter.buckets) == MAX_BUCKETS


def test_ipv4_peers_of_a_dual_stack_socket_match_ipv4_lists():
    assert within("::ffff:10.1.2.3", (ip_network("10.0.0.0/8"),))
    assert not within("::ffff:192.0.2.1", (ip_network("10.0.0.0/8"),))


def test_a_rebound_dns_name_is_refused_but_webhooks_and_configured_names_pass(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), 'allowed_hosts = ["search.example.com"]')
    evil = {"host": "attacker.example"}
    for path in ("/", "/search?q=x", "/metrics", "/admin/status"):
        assert daemon.http.get(path, headers=evil).status_code == 421, path
    assert daemon.http.get("/search?q=x", headers={"host": "search.example.com"}).status_code == 200
    assert daemon.http.get("/search?q=x", headers={"host": "localhost:1"}).status_code == 200
    wp.publish(1, "Crabs", page_html(["Ferrous crabs."]))
    assert daemon.wp_event(1, "post.published").status_code == 202


def test_the_worker_health_port_is_loopback_unless_configured(tmp_path):
    cfg = config_mod.load(write_config(tmp_path, wp_source_placeholder(),
                                       'host = "0.0.0.0"\n[queue]\nredis_url = "redis://127.0.0.1:9/0"'))
    assert Daemon(cfg, Role.WORKER).host == "127.0.0.1" and Daemon(cfg, Role.SERVE).host == "0.0.0.0"


def test_the_status_page_and_metrics_count_in_the_store_and_reuse_a_fresh_snapshot(daemon, monkeypatch):
    record = daemon.engine.queue._record
    for i in range(300):
        record.add(("blog", str(i)))
        record.fail(("blog", f"dead-{i}"), "boom", False, 1) if record.add(("blog", f"dead-{i}")) else None

    def whole(*args, **kwargs):
        raise AssertionError("the whole pending set or DLQ was loaded")
    monkeypatch.setattr(record, "rows", whole)
    counts, store = [], daemon.engine.store
    real_count, real_dead = store.count_chunks, record.dead
    monkeypatch.setattr(store, "count_chunks", lambda *a, **k: counts.append(1) or real_count(*a, **k))
    monkeypatch.setattr(record, "dead", lambda limit=None: whole() if limit is None else real_dead(limit))
    page = daemon.http.get("/")
    assert page.status_code == 200 and 'id="pending">300<' in page.text and 'id="dead">300<' in page.text
    assert page.text.count("/status/dlq/") == 0 and page.text.count("<td>blog/dead-") == 50
    for _ in range(5):
        assert "ragsync_pending_keys 300.0" in daemon.http.get("/metrics").text
    assert daemon.http.get("/readyz").status_code == 200
    assert len(counts) <= 2 * 2 + 1               # a snapshot (2 counts) a second at most, plus /readyz


def test_a_page_url_that_is_not_http_is_never_indexed_as_a_link(daemon, wp):
    wp.publish(1, "Crabs", page_html(["Ferrous crabs scuttle sideways."])).link = "javascript:alert(document.cookie)"
    daemon.wp_event(1, "post.published")
    daemon.idle()
    (hit,) = daemon.search("crabs", group="page")
    assert hit["url"] == "" and "javascript:" not in daemon.http.get("/", params={"q": "crabs"}).text
