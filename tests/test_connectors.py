"""Every connector against a fake that answers like its CMS: signatures accepted and rejected
over real HTTP, every event type mapped, fetch of published / unpublished / deleted, listing
through every page, and one webhook → searchable → unpublished → gone run each.
(Real Ghost and Strapi: tests/test_real_cms.py; real WordPress: tests/test_wordpress.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import pytest

from connectors.base import Gone, Page
from connectors.contentful import sign as contentful_sign
from ragsync.errors import FetchError
from tests.fakes import FakeContentful, FakeDocs, FakeGeneric, FakeGhost, FakeStrapi
from tests.support import SECRET_ENV, page_html, signed, wait_for, wp_source

GHOST_SECRET = "ghost-hook-secret"
STRAPI_TOKEN = "strapi-shared-header-token"
CONTENTFUL_SECRET = "c" * 64


def ghost_headers(body: bytes, secret: str = GHOST_SECRET, t_ms: int | None = None) -> dict[str, str]:
    t = str(int(time.time() * 1000) if t_ms is None else t_ms)
    sig = hmac.new(secret.encode(), body + t.encode(), hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-ghost-signature": f"sha256={sig}, t={t}"}


def strapi_headers(body: bytes, token: str = STRAPI_TOKEN, event: str = "entry.publish") -> dict[str, str]:
    return {"content-type": "application/json", "x-ragsync-token": token, "x-strapi-event": event}


def contentful_headers(body: bytes, topic: str = "ContentManagement.Entry.publish", secret: str = CONTENTFUL_SECRET,
                       t_ms: int | None = None, target: str = "/webhooks/cf") -> dict[str, str]:
    signed_headers = {"x-contentful-timestamp": str(int(time.time() * 1000) if t_ms is None else t_ms),
                      "x-contentful-signed-headers": "x-contentful-signed-headers,x-contentful-timestamp"}
    return {"content-type": "application/vnd.contentful.management.v1+json", "x-contentful-topic": topic,
            **signed_headers, "x-contentful-signature": contentful_sign(secret, "POST", target, signed_headers, body)}


def generic_headers(body: bytes) -> dict[str, str]:
    return signed(body)[1]


@dataclass
class Kit:
    """What one connector's tests need: its fake, its config, how its CMS signs and shapes events."""
    name: str
    fake: type[FakeDocs]
    toml: Callable[[FakeDocs], str]
    sign: Callable[..., dict[str, str]]
    body: Callable[[str, str], dict]            # (event, doc id) → webhook body
    changes: tuple[str, ...]                    # events that queue the document
    ignored: tuple[str, ...]                    # events that are acknowledged and ignored
    fields: Callable[[str], dict]               # body text → the CMS's own field(s)
    ids: Callable[[int], str]
    event_in_header: bool = False
    path: str = ""


def _ghost_body(event: str, doc_id: str) -> dict:
    kind = event.split(".")[0]
    state = {"id": doc_id, "status": "published", "title": "ignored title"}
    if event.endswith("deleted"):
        return {kind: {"current": {}, "previous": state}}
    return {kind: {"current": state, "previous": {"status": "draft"}}}


KITS = {
    "ghost": Kit(
        "ghost", FakeGhost,
        lambda f: (f'[[sources]]\nname = "ghost"\ntype = "ghost"\nbase_url = "{f.url}"\n'
                   f'webhook_secret_env = "T_GHOST_SECRET"\ncontent_key_env = "T_GHOST_KEY"\n'),
        ghost_headers, _ghost_body,
        changes=("post.published", "post.published.edited", "post.unpublished", "post.deleted", "page.published",
                 "page.published.edited", "page.unpublished", "page.deleted"),
        ignored=("member.added", "tag.added", "site.changed"),
        fields=lambda text: {"html": f"<p>{text}</p>"}, ids=lambda i: f"6682b8a8e10cc0430628{i:04x}",
        path="?event={event}"),
    "strapi": Kit(
        "strapi", FakeStrapi,
        lambda f: (f'[[sources]]\nname = "strapi"\ntype = "strapi"\nbase_url = "{f.url}"\n'
                   f'webhook_secret_env = "T_STRAPI_TOKEN"\napi_token_env = "T_STRAPI_API"\n'
                   f'collections = ["posts"]\n'),
        strapi_headers,
        lambda event, doc_id: {"event": event, "createdAt": "2026-01-01T00:00:00.000Z", "model": "post",
                               "uid": "api::post.post", "entry": {"id": 3, "documentId": doc_id}},
        changes=("entry.create", "entry.update", "entry.publish", "entry.unpublish", "entry.delete",
                 "entry.draft-discard"),
        ignored=("media.create", "media.delete", "releases.publish"),
        fields=lambda text: {"body": f"## Notes\n\n{text}"}, ids=lambda i: f"znrlzntu9ei5onjvwfa{i:05d}",
        event_in_header=True),
    "cf": Kit(
        "cf", FakeContentful,
        lambda f: (f'[[sources]]\nname = "cf"\ntype = "contentful"\nbase_url = "{f.url}"\n'
                   f'webhook_secret_env = "T_CF_SECRET"\ndelivery_token_env = "T_CF_TOKEN"\n'
                   f'space_id = "{f.space}"\n'),
        contentful_headers,
        lambda event, doc_id: {"sys": {"type": "DeletedEntry" if event.endswith(("delete", "unpublish")) else "Entry",
                                       "id": doc_id, "contentType": {"sys": {"id": "posts"}}}},
        changes=tuple(f"ContentManagement.Entry.{a}" for a in ("publish", "unpublish", "archive", "unarchive", "delete")),
        ignored=("ContentManagement.Entry.save", "ContentManagement.Entry.auto_save",
                 "ContentManagement.Entry.create", "ContentManagement.Asset.publish"),
        fields=lambda text: {"body": {"nodeType": "document", "data": {}, "content": [
            {"nodeType": "paragraph", "data": {}, "content": [
                {"nodeType": "text", "value": text, "marks": [], "data": {}}]}]}},
        ids=lambda i: f"5KsDBWseXY6QegucYAoacS{i}", event_in_header=True),
    "generic": Kit(
        "generic", FakeGeneric,
        lambda f: (f'[[sources]]\nname = "generic"\ntype = "generic"\nbase_url = "{f.url}"\n'
                   f'webhook_secret_env = "{SECRET_ENV}"\napi_token_env = "T_GENERIC_TOKEN"\n'),
        lambda body, **kw: generic_headers(body),
        lambda event, doc_id: {"type": event, "id": doc_id},
        changes=("document.published", "document.updated", "document.unpublished", "document.deleted"),
        ignored=("comment.added", "user.created"),
        fields=lambda text: {"markdown": f"# Notes\n\n{text}"}, ids=lambda i: f"kb/article {i}"),
}


@pytest.fixture(params=sorted(KITS))
def kit(request, monkeypatch) -> Kit:
    for var, value in {"T_GHOST_SECRET": GHOST_SECRET, "T_GHOST_KEY": FakeGhost.key, "T_STRAPI_TOKEN": STRAPI_TOKEN,
                       "T_STRAPI_API": FakeStrapi.token, "T_CF_SECRET": CONTENTFUL_SECRET,
                       "T_CF_TOKEN": FakeContentful.token, "T_GENERIC_TOKEN": FakeGeneric.token}.items():
        monkeypatch.setenv(var, value)
    return KITS[request.param]


@pytest.fixture
def fake(kit: Kit):
    server = kit.fake()
    yield server
    server.close()


def deliver(daemon, kit: Kit, event: str, doc_id: str, body: bytes | None = None, **sign_kw):
    raw = body if body is not None else json.dumps(kit.body(event, doc_id)).encode()
    path = f"/webhooks/{kit.name}" + (kit.path.format(event=event) if kit.path else "")
    kw = dict(sign_kw)
    if kit.event_in_header:
        kw["topic" if kit.name == "cf" else "event"] = event
    if kit.name == "cf":
        kw["target"] = path
    return daemon.http.post(path, content=raw, headers=kit.sign(raw, **kw))


def test_a_valid_delivery_is_accepted_and_a_forged_or_unsigned_one_is_401(kit, fake, daemon_factory):
    daemon = daemon_factory(kit.toml(fake), consume=False)
    doc_id, event = kit.ids(1), kit.changes[0]
    good = deliver(daemon, kit, event, doc_id)
    assert good.status_code == 202, good.text
    assert good.json()["accepted"] == [doc_id]

    raw = json.dumps(kit.body(event, kit.ids(2))).encode()
    path = f"/webhooks/{kit.name}" + (kit.path.format(event=event) if kit.path else "")
    forged = {
        "ghost": lambda: ghost_headers(raw, secret="wrong"),
        "strapi": lambda: strapi_headers(raw, token="wrong"),
        "cf": lambda: contentful_headers(raw, topic=event, secret="d" * 64, target=path),
        "generic": lambda: signed(raw, secret="whsec_" + base64.b64encode(b"another-secret-000000").decode())[1],
    }[kit.name]()
    tampered = {**kit.sign(raw, **({"topic": event, "target": path} if kit.name == "cf" else {}))}
    attempts = [forged, {"content-type": "application/json"}]
    if kit.name != "strapi":                           # Strapi signs nothing: a static token only
        attempts.append(tampered)
    for headers in attempts:
        body = raw + b" " if headers is tampered else raw
        resp = daemon.http.post(path, content=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert set(resp.json()) == {"error"}
    if kit.name in ("ghost", "cf"):                   # signed millisecond timestamps: a stale one fails
        stale = int((time.time() - 3600) * 1000)
        resp = daemon.http.post(path, content=raw, headers=(ghost_headers(raw, t_ms=stale) if kit.name == "ghost"
                                                            else contentful_headers(raw, topic=event, t_ms=stale,
                                                                                    target=path)))
        assert resp.status_code == 401 and "tolerance" in resp.json()["error"]
    assert daemon.engine.queue.pending_keys() == {(kit.name, doc_id)}


def test_every_event_type_is_mapped(kit, fake, daemon_factory):
    daemon = daemon_factory(kit.toml(fake), consume=False)
    for i, event in enumerate(kit.changes):
        resp = deliver(daemon, kit, event, kit.ids(i))
        assert resp.status_code == 202 and resp.json()["accepted"] == [kit.ids(i)], (event, resp.text)
    for event in kit.ignored:
        resp = deliver(daemon, kit, event, kit.ids(99))
        assert resp.status_code == 202 and resp.json() == {"accepted": [], "queued": 0, "ignored": True}, event
    assert len(daemon.engine.queue.pending_keys()) == len(kit.changes)


def test_fetch_published_unpublished_deleted_and_a_refused_key(kit, fake, daemon_factory, monkeypatch):
    connector = daemon_factory(kit.toml(fake), consume=False).engine.connectors[kit.name]
    fake.put(kit.ids(1), "Release notes", **kit.fields("Cargo now resolves features per target."))
    page = connector.fetch(kit.ids(1))
    assert isinstance(page, Page) and page.title == "Release notes"
    assert "Cargo now resolves features per target." in page.html
    assert page.modified == "2026-01-01T00:00:01Z"
    fake.unpublish(kit.ids(1))
    assert isinstance(connector.fetch(kit.ids(1)), Gone)
    fake.delete(kit.ids(1))
    assert isinstance(connector.fetch(kit.ids(1)), Gone)
    assert isinstance(connector.fetch(kit.ids(2)), Gone)            # never existed
    fake.put(kit.ids(3), "Still here", **kit.fields("text"))
    monkeypatch.setattr(fake, "token" if kit.name != "ghost" else "key", "rotated")
    with pytest.raises(FetchError, match="HTTP 40[13]") as err:         # a bad key is never "gone"
        connector.fetch(kit.ids(3))
    assert not err.value.transient


def test_listing_walks_every_page(kit, fake, daemon_factory):
    connector = daemon_factory(kit.toml(fake), consume=False).engine.connectors[kit.name]
    for i in range(230):
        fake.put(kit.ids(i), f"Doc {i}", **kit.fields(f"text {i}"))
    fake.unpublish(kit.ids(7))
    listed = list(connector.list())
    assert sorted(x.doc_id for x in listed) == sorted(kit.ids(i) for i in range(230) if i != 7)
    assert {x.modified for x in listed} >= {"2026-01-01T00:00:01Z", "2026-01-01T00:03:50Z"}
    assert fake.list_calls >= 3                                         # 100 per page at most


def test_listing_since_asks_the_cms_only_for_what_changed(kit, fake, daemon_factory):
    """The poll's query: the CMS's own modified-since filter, so 230 pages cost 3 rows."""
    connector = daemon_factory(kit.toml(fake), consume=False).engine.connectors[kit.name]
    for i in range(230):
        fake.put(kit.ids(i), f"Doc {i}", **kit.fields(f"text {i}"))
    cursor = "2026-01-01T00:03:47Z"                                   # doc 226's modified time
    rows = fake.listed_rows
    listed = list(connector.list(since=cursor))
    assert [x.doc_id for x in listed] == [kit.ids(i) for i in (227, 228, 229)]   # after it, oldest first
    assert fake.listed_rows - rows == 3


def test_wordpress_and_files_list_since_too(wp, daemon_factory, tmp_path):
    for i in range(1, 151):
        wp.publish(i, f"Post {i}", page_html([f"text {i}"]))
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "old.html").write_text("<h1>Old</h1>")
    os.utime(tmp_path / "pages" / "old.html", (1_700_000_000, 1_700_000_000))
    (tmp_path / "pages" / "new.html").write_text("<h1>New</h1>")
    daemon = daemon_factory(wp_source(wp) + f'[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\n'
                            f'webhook_secret_env = "{SECRET_ENV}"\n', consume=False)
    rows = wp.listed_rows
    assert [x.doc_id for x in daemon.engine.connectors["blog"].list(since="2026-01-01T00:02:28Z")] == ["149", "150"]
    assert wp.listed_rows - rows == 2
    assert [x.doc_id for x in daemon.engine.connectors["docs"].list(since="2024-01-01T00:00:00Z")] == ["new"]


def test_webhook_to_search_to_unpublish(kit, fake, daemon_factory):
    daemon = daemon_factory(kit.toml(fake))
    doc_id = kit.ids(5)
    fake.put(doc_id, "Borrow checker notes", **kit.fields(
        "The borrow checker rejects two mutable references to one value at the same time."))
    assert deliver(daemon, kit, kit.changes[0], doc_id).status_code == 202
    daemon.idle()
    hits = daemon.search("two mutable references", source=kit.name)
    assert hits and hits[0]["doc_id"] == doc_id and hits[0]["title"] == "Borrow checker notes"
    fake.unpublish(doc_id)
    unpublish = next(e for e in kit.changes if "unpublish" in e)
    assert deliver(daemon, kit, unpublish, doc_id).status_code == 202
    wait_for(lambda: not daemon.engine.store.doc_chunks(kit.name, doc_id), 60, "the page's points to go")
    assert daemon.search("two mutable references", source=kit.name) == []


def test_rich_text_becomes_the_same_blocks_as_html():
    from connectors.richtext import contentful_html, markdown_html, strapi_blocks_html
    from ragsync.extract import extract

    html = ("<h2>Install</h2><p>Run <code>cargo add serde</code> &lt;now&gt;.</p>"
            "<ul><li>fast</li><li>safe</li></ul><pre>fn main() {}</pre><blockquote><p>Quoted</p></blockquote>")
    strapi = [
        {"type": "heading", "level": 2, "children": [{"type": "text", "text": "Install"}]},
        {"type": "paragraph", "children": [{"type": "text", "text": "Run "},
                                           {"type": "text", "text": "cargo add serde", "code": True},
                                           {"type": "text", "text": " <now>."}]},
        {"type": "list", "format": "unordered", "children": [
            {"type": "list-item", "children": [{"type": "text", "text": "fast"}]},
            {"type": "list-item", "children": [{"type": "text", "text": "safe"}]}]},
        {"type": "code", "children": [{"type": "text", "text": "fn main() {}"}]},
        {"type": "quote", "children": [{"type": "text", "text": "Quoted"}]},
    ]
    text = lambda value: {"nodeType": "text", "value": value, "marks": [], "data": {}}
    node = lambda kind, *content: {"nodeType": kind, "data": {}, "content": list(content)}
    contentful = node("document", node("heading-2", text("Install")),
                      node("paragraph", text("Run "), {**text("cargo add serde"), "marks": [{"type": "code"}]},
                           text(" <now>.")),
                      node("unordered-list", node("list-item", node("paragraph", text("fast"))),
                           node("list-item", node("paragraph", text("safe")))),
                      node("blockquote", node("paragraph", text("Quoted"))),
                      node("embedded-entry-block"))
    markdown = "## Install\n\nRun `cargo add serde` <now>.\n\n- fast\n- safe\n\n```\nfn main() {}\n```\n\n> Quoted\n"
    expected = extract(html)
    assert extract(strapi_blocks_html(strapi)) == expected
    assert extract(markdown_html(markdown)) == expected
    assert extract(contentful_html(contentful)) == [b for b in expected if b.kind != "code"]   # no code blocks there


def test_wordpress_with_the_wp_webhooks_plugin_format(wp, daemon_factory, monkeypatch):
    secret = "wp-webhooks-secret"
    monkeypatch.setenv("T_WPW_SECRET", secret)
    daemon = daemon_factory(f'[[sources]]\nname = "blog"\ntype = "wordpress"\nbase_url = "{wp.url}"\n'
                            f'webhook_secret_env = "T_WPW_SECRET"\nsignature = "wp-webhooks"\n', consume=False)

    def post(trigger: str, body: dict, key: str = secret, tamper: bool = False):
        raw = json.dumps(body).encode()
        sig = base64.b64encode(hmac.new(key.encode(), raw, hashlib.sha256).digest()).decode()
        return daemon.http.post("/webhooks/blog", content=raw + (b" " if tamper else b""), headers={
            "content-type": "application/json; charset=UTF-8", "x-wp-webhook-name": trigger,
            "x-wp-webhook-signature": sig, "x-wp-webhook-source": "http://example.test/"})

    for i, trigger in enumerate(("post_create", "post_update", "post_trash", "post_delete"), 1):
        resp = post(trigger, {"post_id": i, "post": {"ID": i, "post_status": "publish"}})
        assert resp.status_code == 202 and resp.json()["accepted"] == [str(i)], resp.text
    assert post("user_login", {"user_id": 1}).json()["ignored"] is True
    assert post("post_update", {"post_id": 9}, key="wrong").status_code == 401
    assert post("post_update", {"post_id": 9}, tamper=True).status_code == 401
    replay = post("post_create", {"post_id": 1, "post": {"ID": 1, "post_status": "publish"}})
    assert replay.json().get("duplicate") is True              # the same signed delivery twice
    assert daemon.engine.queue.pending_keys() == {("blog", str(i)) for i in range(1, 5)}


def test_ghost_accepts_the_old_secret_from_the_previous_variable_during_a_rotation(monkeypatch, daemon_factory):
    """`<variable>_PREVIOUS` holds the old secret while the CMS moves to the new one."""
    fake = FakeGhost()
    try:
        monkeypatch.setenv("T_GHOST_SECRET", GHOST_SECRET)
        monkeypatch.setenv("T_GHOST_SECRET_PREVIOUS", "old-ghost-secret")
        monkeypatch.setenv("T_GHOST_KEY", FakeGhost.key)
        daemon = daemon_factory(KITS["ghost"].toml(fake), consume=False)
        for i, secret in enumerate(("old-ghost-secret", GHOST_SECRET, "third-secret")):
            raw = json.dumps(_ghost_body("post.published", KITS["ghost"].ids(i))).encode()
            resp = daemon.http.post("/webhooks/ghost?event=post.published", content=raw,
                                    headers=ghost_headers(raw, secret=secret))
            assert resp.status_code == (401 if secret == "third-secret" else 202), (secret, resp.text)
    finally:
        fake.close()


# Answers a WAF, CDN, proxy or broken CMS gives for a page that is public: none is the CMS's
# own "not published" verdict, so each must retry and delete nothing.
NOT_A_VERDICT = {
    "waf page": (403, "<html><title>Attention Required! | Cloudflare</title></html>"),
    "proxy 404": (404, "<html><body><h1>404 Not Found</h1><hr>nginx</body></html>"),
    "non-JSON 200": (200, "<html><body>Checking your browser before accessing…</body></html>"),
    "html 410": (410, "<html>Gone</html>"),
    "json 410": (410, {"message": "gone"}),
    "empty 204": (204, ""),
}
EXTRA_NOT_A_VERDICT = {
    "cf": {"wrong environment": (404, {"sys": {"type": "Error", "id": "NotFound"},
                                       "message": "The resource could not be found.",
                                       "details": {"type": "Environment", "id": "staging"}})},
    "ghost": {"404 without NotFoundError": (404, {"errors": [{"type": "InternalServerError"}]})},
    "strapi": {"404 without NotFoundError": (404, {"data": None, "error": {"status": 404, "name": "Forbidden"}})},
    "generic": {"gateway 404": (404, {"message": "Not Found"}), "json 404 for another id": (404, {"id": "other"})},
}


def hostile_answers(kit: Kit) -> dict[str, tuple[int, object]]:
    return {**NOT_A_VERDICT, **EXTRA_NOT_A_VERDICT[kit.name]}


def test_an_answer_that_is_not_the_cms_verdict_retries_and_deletes_nothing(kit, fake, daemon_factory):
    daemon = daemon_factory(kit.toml(fake), "[queue]\nmax_attempts = 20\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05")
    connector = daemon.engine.connectors[kit.name]
    doc_id = kit.ids(4)
    fake.put(doc_id, "Ownership", **kit.fields("Every value in Rust has a single owner at a time."))
    for what, (status, body) in hostile_answers(kit).items():
        fake.fail_next(1, status, body=body)
        with pytest.raises(FetchError) as err:
            connector.fetch(doc_id)
        assert err.value.transient, what

    assert deliver(daemon, kit, kit.changes[0], doc_id).status_code == 202
    daemon.idle()
    assert daemon.search("single owner", source=kit.name)[0]["doc_id"] == doc_id
    fake.put(doc_id, "Ownership", **kit.fields("Moving a value transfers ownership to the new binding."))
    answers = hostile_answers(kit)
    for status, body in answers.values():            # the CMS misbehaves through the next passes
        fake.fail_next(1, status, body=body)
    assert deliver(daemon, kit, kit.changes[1], doc_id).status_code == 202
    daemon.idle()
    assert not fake.failures                          # every hostile answer was seen by a pass
    hits = daemon.search("transfers ownership to the new binding", source=kit.name)
    assert hits and hits[0]["doc_id"] == doc_id       # the edit landed once the CMS was sane
    assert daemon.engine.queue.dead() == []
    assert 'outcome="tombstoned"' not in daemon.http.get("/metrics").text


def test_wordpress_deletes_only_on_its_own_verdict(wp, daemon_factory):
    """rest_forbidden and rest_post_invalid_id are WordPress's word; a WAF's 401/403, a closed
    REST API (`rest_not_logged_in`), a proxy's HTML 404 on both routes are not."""
    daemon = daemon_factory(wp_source(wp), "[queue]\nmax_attempts = 20\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05")
    connector = daemon.engine.connectors["blog"]
    wp.publish(7, "Traits", "<p>A trait defines shared behaviour that types can implement.</p>")
    hostile = {**NOT_A_VERDICT,
               "closed REST API": (401, {"code": "rest_not_logged_in", "message": "You are not currently logged in.",
                                         "data": {"status": 401}}),
               "wordfence 403": (403, {"code": "wordfence_blocked", "message": "Blocked"}),
               "ip block 401": (401, "<html>Access denied</html>"),
               "a cache's other post": (200, {"id": 8, "status": "draft", "modified_gmt": "2026-01-01T00:00:00"})}
    for what, (status, body) in hostile.items():
        wp.fail_next(2 if status == 404 and isinstance(body, str) else 1, status, body=body)   # both routes
        with pytest.raises(FetchError) as err:
            connector.fetch("7")
        assert err.value.transient, what
        wp.failures.clear()
    daemon.wp_event(7, "post.published")
    daemon.idle()
    wp.edit(7, html="<p>Trait objects allow dynamic dispatch through a vtable.</p>")
    for status, body in hostile.values():
        wp.fail_next(1, status, body=body)
    daemon.wp_event(7)
    daemon.idle()
    assert daemon.doc_texts("blog", "7") == ["Trait objects allow dynamic dispatch through a vtable."]
    assert daemon.engine.queue.dead() == []
    wp.edit(7, status="draft")                        # WordPress's own verdict: rest_forbidden
    daemon.wp_event(7, "post.unpublished")
    daemon.idle()
    assert daemon.doc_texts("blog", "7") == []


def test_a_token_with_spaces_is_one_secret(monkeypatch, daemon_factory):
    """A Strapi token `correct horse battery staple` is accepted whole, never word by word."""
    fake = FakeStrapi()
    try:
        monkeypatch.setenv("T_STRAPI_TOKEN", "correct horse battery staple")
        monkeypatch.setenv("T_STRAPI_API", FakeStrapi.token)
        daemon = daemon_factory(KITS["strapi"].toml(fake), consume=False)
        raw = json.dumps(KITS["strapi"].body("entry.publish", KITS["strapi"].ids(1))).encode()
        for token, status in (("horse", 401), ("correct", 401), ("correct horse battery staple", 202)):
            resp = daemon.http.post("/webhooks/strapi", content=raw, headers=strapi_headers(raw, token=token))
            assert resp.status_code == status, (token, resp.text)
    finally:
        fake.close()


def test_hostile_signed_bodies_and_timestamps_are_4xx_never_500(monkeypatch, daemon_factory):
    """After a valid signature, type confusion and absurd ids are a 400 or an ignored event;
    a 400-digit millisecond timestamp is a 401."""
    monkeypatch.setenv("T_GHOST_SECRET", GHOST_SECRET)
    monkeypatch.setenv("T_GHOST_KEY", FakeGhost.key)
    monkeypatch.setenv("T_CF_SECRET", CONTENTFUL_SECRET)
    monkeypatch.setenv("T_CF_TOKEN", FakeContentful.token)
    monkeypatch.setenv("T_GENERIC_TOKEN", FakeGeneric.token)
    fakes = [FakeGhost(), FakeContentful(), FakeGeneric()]
    try:
        daemon = daemon_factory("".join(KITS[k].toml(f) for k, f in zip(("ghost", "cf", "generic"), fakes)),
                                consume=False)
        ghost_id, cf_id = KITS["ghost"].ids(1), KITS["cf"].ids(1)
        cases = [
            (KITS["ghost"], "post.published", {"post": {"current": {"id": ghost_id}}, "event": ["post.published"]},
             202),
            (KITS["ghost"], "post.published", {"post": {"current": {"id": "²" * 24}}}, 400),
            (KITS["cf"], "ContentManagement.Entry.publish", {"sys": {"id": cf_id, "contentType": "posts"}}, 202),
            (KITS["cf"], "ContentManagement.Entry.publish", {"sys": {"id": ".."}}, 400),
            (KITS["cf"], "ContentManagement.Entry.publish", {"sys": {"id": "."}}, 400),
            (KITS["cf"], "ContentManagement.Entry.publish", {"sys": ["id"]}, 400),
            (KITS["generic"], "document.published", {"type": "document.published", "id": ".."}, 400),
            (KITS["generic"], "document.published", {"type": "document.published", "id": "a\x00b"}, 400),
            (KITS["generic"], "document.published", {"type": ["document.published"], "id": "x"}, 202),
        ]
        for kit, event, body, status in cases:
            resp = deliver(daemon, kit, event, "", body=json.dumps(body).encode())
            assert resp.status_code == status, (kit.name, body, resp.text)
        raw = json.dumps(_ghost_body("post.published", ghost_id)).encode()
        resp = daemon.http.post("/webhooks/ghost?event=post.published", content=raw,
                                headers=ghost_headers(raw, t_ms=int("9" * 400)))
        assert resp.status_code == 401
        raw = json.dumps(KITS["cf"].body("ContentManagement.Entry.publish", cf_id)).encode()
        headers = contentful_headers(raw, t_ms=int("9" * 400))
        assert daemon.http.post("/webhooks/cf", content=raw, headers=headers).status_code == 401
    finally:
        for fake in fakes:
            fake.close()


def test_files_ids_have_one_form(tmp_path, daemon_factory):
    """`sub/../index`, `./index`, a NUL: never a second id for one file (reconcile could not remove it)."""
    (tmp_path / "pages" / "sub").mkdir(parents=True)
    (tmp_path / "pages" / "sub" / "index.html").write_text("<h1>Index</h1><p>Nested page.</p>")
    daemon = daemon_factory(f'[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\n'
                            f'webhook_secret_env = "{SECRET_ENV}"\n', consume=False)
    connector = daemon.engine.connectors["docs"]
    assert [x.doc_id for x in connector.list()] == ["sub/index"]
    assert isinstance(connector.fetch("sub/index"), Page)
    for bad in ("sub/../sub/index", "./sub/index", "sub//index", "sub/index\x00", "/etc/passwd", ".."):
        assert isinstance(connector.fetch(bad), Gone), bad
        assert daemon.webhook("docs", {"id": bad}).status_code == 400, bad


def test_ghost_legacy_signature_replayed_with_a_fresh_t_is_a_duplicate(monkeypatch, daemon_factory):
    """Legacy (body-only) signatures leave `t` unsigned, so the dedup key is the signature alone."""
    monkeypatch.setenv("T_GHOST_SECRET", GHOST_SECRET)
    monkeypatch.setenv("T_GHOST_KEY", FakeGhost.key)
    fake = FakeGhost()
    try:
        daemon = daemon_factory(KITS["ghost"].toml(fake) + "legacy_signature = true\n", consume=False)
        raw = json.dumps(_ghost_body("post.published", KITS["ghost"].ids(1))).encode()
        sig = hmac.new(GHOST_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        answers = []
        for shift in (0, 1000, 2000):                 # the captured delivery, then replays with a new t
            t = int(time.time() * 1000) + shift
            answers.append(daemon.http.post("/webhooks/ghost?event=post.published", content=raw, headers={
                "content-type": "application/json", "x-ghost-signature": f"sha256={sig}, t={t}"}).json())
        assert answers[0]["accepted"] == [KITS["ghost"].ids(1)]
        assert answers[1].get("duplicate") is True and answers[2].get("duplicate") is True
    finally:
        fake.close()
