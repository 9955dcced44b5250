"""The end-to-end loop: signed WordPress webhook → ID-only fetch → chunk → embed → Qdrant,
and everything that must make a page disappear again (unpublished means unsearchable)."""

from __future__ import annotations

import json

import pytest

from tests.support import page_html, words

RUST = ("Ownership is a set of rules that govern how a Rust program manages memory. "
        "Each value has an owner, and when the owner goes out of scope the value is dropped.")


def test_signed_publish_makes_the_page_searchable(daemon, wp):
    wp.publish(5, "Understanding Ownership", page_html([RUST, words(1, 60)], "Understanding Ownership"))
    resp = daemon.wp_event(5, "post.published")
    assert resp.json()["accepted"] == ["5"]
    daemon.idle()

    results = daemon.search("what happens when the owner of a value goes out of scope")
    assert results, "no results"
    top = results[0]
    assert top["doc_id"] == "5" and top["source"] == "blog"
    assert top["title"] == "Understanding Ownership"
    assert "goes out of scope" in top["text"]
    assert top["modified"] == "2026-01-01T00:00:01Z"


def test_payload_is_langchain_layout(daemon, wp):
    wp.publish(7, "Vectors", page_html(["Vectors store values of the same type next to each other."]))
    daemon.wp_event(7, "post.published")
    daemon.idle()
    (pid, payload), = daemon.engine.store.doc_chunks("blog", "7").items()
    assert set(payload) == {"page_content", "metadata"}
    meta = payload["metadata"]
    for key in ("source", "doc_id", "url", "title", "modified", "chunk_index", "content_hash"):
        assert key in meta, key
    assert meta["doc_id"] == "7" and isinstance(meta["doc_id"], str)
    assert meta["heading_path"] == ["Guide", "Part one"]


@pytest.mark.parametrize("change, event", [
    (lambda wp: wp.delete(9), "post.deleted"),
    (lambda wp: wp.edit(9, status="trash"), "post.trashed"),
    (lambda wp: wp.edit(9, status="draft"), "post.unpublished"),
    (lambda wp: wp.edit(9, status="private"), "post.unpublished"),
    (lambda wp: wp.edit(9, status="pending"), "post.unpublished"),
    (lambda wp: wp.edit(9, password="secret"), "post.updated"),
])
def test_gone_content_leaves_no_points(daemon, wp, change, event):
    wp.publish(9, "Threads", page_html([words(2, 80), words(3, 80)]))
    daemon.wp_event(9, "post.published")
    daemon.idle()
    assert daemon.engine.store.doc_chunks("blog", "9")

    change(wp)
    daemon.wp_event(9, event)
    daemon.idle()
    assert daemon.engine.store.doc_chunks("blog", "9") == {}
    assert not [r for r in daemon.search("threads channel mutex", 50) if r["doc_id"] == "9"]
    record = daemon.engine.store.page("blog", "9")
    assert record.state == "gone" and record.live_ids == []      # the tombstone record stays


def test_pages_are_fetched_from_the_pages_route(daemon, wp):
    wp.publish(11, "About us", page_html(["We write documentation about Rust crates."]), type="page")
    daemon.wp_event(11, "post.published", post_type="page")
    daemon.idle()
    assert daemon.doc_texts("blog", "11") == ["We write documentation about Rust crates."]


def test_plain_permalinks_fall_back_to_rest_route(daemon, wp):
    wp.pretty_permalinks = False
    wp.publish(12, "Plain", page_html(["Sites without pretty permalinks still answer rest_route."]))
    daemon.wp_event(12, "post.published")
    daemon.idle()
    assert daemon.doc_texts("blog", "12") == ["Sites without pretty permalinks still answer rest_route."]


def test_a_second_identical_webhook_changes_nothing(daemon, wp):
    wp.publish(13, "Iterators", page_html([words(4, 120), words(5, 120)]))
    daemon.wp_event(13, "post.published")
    daemon.idle()
    writes, embedded = daemon.engine.store.writes, daemon.engine.embedder.embedded
    before = daemon.engine.store.doc_chunks("blog", "13")

    daemon.wp_event(13, "post.published")
    daemon.idle()
    assert daemon.engine.store.writes == writes
    assert daemon.engine.embedder.embedded == embedded
    assert daemon.engine.store.doc_chunks("blog", "13") == before
    assert wp.fetches[13] == 2                       # it did fetch: the webhook is a hint, not data


def test_the_body_is_never_trusted_beyond_the_id(daemon, wp):
    """A webhook carrying content or a URL cannot inject either: only the id is used."""
    wp.publish(14, "Real title", page_html(["The real text from the CMS."]))
    resp = daemon.webhook("blog", {"type": "post.published", "id": 14, "post_type": "post",
                                   "title": "Injected", "content": "Injected text",
                                   "rest_url": "http://169.254.169.254/latest/meta-data/"})
    assert resp.status_code == 202
    daemon.idle()
    assert daemon.doc_texts("blog", "14") == ["The real text from the CMS."]


def test_unknown_event_types_are_acknowledged_and_ignored(daemon, wp):
    resp = daemon.webhook("blog", {"type": "comment.created", "id": 3})
    assert resp.status_code == 202 and resp.json()["ignored"] is True
    assert daemon.engine.queue.pending() == []


def test_a_published_page_without_text_is_recorded_with_no_points(daemon, wp):
    wp.publish(15, "Empty", "<div><script>var x = 1;</script></div>")
    daemon.wp_event(15, "post.published")
    daemon.idle()
    assert daemon.engine.queue.dead() == []
    record = daemon.engine.store.page("blog", "15")
    assert record.state == "live" and record.live_ids == [] and daemon.doc_texts("blog", "15") == []


def test_hostile_html_is_indexed_safely(daemon, wp):
    wp.publish(1, "Neighbour", page_html(["A page that must not be harmed."]))
    daemon.wp_event(1, "post.published")
    hostile = ("<div>" * 20000 + "<p>Deeply nested text survives.</p>" + "<b><i><u>unclosed tags"
               + "<script>alert('x')</script><style>p{}</style>\x00<p " + "a" * 100_000 + ">"
               + "<table><tr><td>cell" * 500 + "<!-- comment --><![CDATA[ data ]]>")
    wp.publish(16, "Hostile &amp; &#8217;title&#8217;", hostile)
    daemon.wp_event(16, "post.published")
    daemon.idle()
    assert daemon.engine.queue.dead() == []
    texts = " ".join(daemon.doc_texts("blog", "16"))
    assert "Deeply nested text survives." in texts and "alert" not in texts and "p{}" not in texts
    assert daemon.engine.store.page("blog", "16").title == "Hostile & ’title’"
    assert daemon.doc_texts("blog", "1") == ["A page that must not be harmed."]


def test_a_pass_says_where_its_time_went(daemon, wp, caplog):
    """Webhook → searchable, step by step: the pass's log line (and its JSON `ms` field) gives
    the milliseconds of fetch, read, extract, embed, write and switch."""
    import logging

    from ragsync.logs import JsonFormatter
    wp.publish(1, "Steps", page_html(["Each step of a pass is timed."]))
    with caplog.at_level(logging.INFO, logger="ragsync.engine"):
        daemon.wp_event(1)
        daemon.idle()
    (record,) = [r for r in caplog.records if r.getMessage().startswith("pass indexed: 1 ")]
    assert list(record.ms) == ["fetch", "read", "extract", "embed", "write", "switch"]
    assert all(ms >= 0 for ms in record.ms.values()) and record.ms["embed"] > 0
    assert " in " in record.getMessage() and "embed " in record.getMessage()
    assert json.loads(JsonFormatter().format(record))["ms"] == record.ms
