"""Polling inside the daemon, with no webhook at all: the poll finds created and edited pages
by asking the CMS only for what changed since its cursor; the audit finds unpublished,
trashed and deleted ones. A failed or truncated listing deletes nothing; equal timestamps and
a CMS clock that steps back lose nothing; with Redis, one process polls at a time."""

from __future__ import annotations

from datetime import timedelta

from ragsync import poller
from tests.support import Harness, page_html, wait_for, words, wp_source, write_config

POLL_ONLY = "[reconcile]\npoll_interval_s = 0.2\naudit_interval_s = 0"


def publish(wp, ids, prefix: str = "Page") -> None:
    for i in ids:
        wp.publish(i, f"{prefix} {i}", page_html([f"{prefix} {i} says {words(i, 30)}"]))


def live(daemon) -> set[str]:
    return {p.doc_id for p in daemon.engine.store.iter_pages("blog") if p.state == "live"}


def indexed_text(daemon, doc_id: int) -> str:
    return " ".join(daemon.doc_texts("blog", str(doc_id)))


def test_without_webhooks_the_poll_finds_creates_and_edits_at_o_changes(wp, daemon_factory):
    publish(wp, range(1, 41))
    daemon = daemon_factory(wp_source(wp), POLL_ONLY)
    wait_for(lambda: live(daemon) == {str(i) for i in range(1, 41)}, 60, "the first poll (an audit) to index all")
    daemon.idle()
    wp.clock += timedelta(hours=1)                               # time passes: the seeded pages are old news
    wp.publish(41, "Created silently", page_html(["A page nobody announced, about ferrous crabs."]))
    wait_for(lambda: "41" in live(daemon), 30, "the poll to find a created page")
    daemon.idle()
    fetched = dict(wp.fetches)
    wp.edit(7, html=page_html(["Page 7 was rewritten without a webhook: now about lifetimes."]))
    wp.publish(42, "Also silent", page_html(["Another unannounced page, about borrowed crabs."]))
    wait_for(lambda: "42" in live(daemon) and "lifetimes" in indexed_text(daemon, 7), 30, "the poll to catch both")
    daemon.idle()
    assert daemon.engine.notes.get("poll")["blog"]["listed"] <= 3     # the recent changes, never all 42 pages
    assert {k: v - fetched.get(k, 0) for k, v in wp.fetches.items() if v != fetched.get(k, 0)} == {7: 1, 42: 1}
    metrics = daemon.http.get("/metrics").text
    assert 'ragsync_poll_caught_total{clock="poll",source="blog"} 3.0' in metrics
    assert 'ragsync_poll_age_seconds{clock="poll",source="blog"}' in metrics
    status = daemon.http.get("/admin/status", headers={"authorization": "Bearer test-admin-token-0123456789"}).json()
    assert status["polling"]["blog"]["poll"]["cursor"] == "2026-01-01T01:00:43Z"


def test_the_audit_finds_unpublished_trashed_and_deleted_pages(wp, daemon_factory):
    publish(wp, range(1, 21))
    daemon = daemon_factory(wp_source(wp), "[reconcile]\npoll_interval_s = 0.2\naudit_interval_s = 1")
    wait_for(lambda: len(live(daemon)) == 20, 60, "20 pages indexed")
    wp.edit(3, status="draft")
    wp.edit(4, status="trash")
    wp.delete(5)
    wait_for(lambda: live(daemon) == {str(i) for i in range(1, 21)} - {"3", "4", "5"}, 30, "the audit to remove 3")
    # 20 seeded by the first audit (no cursor yet), then the 3 removals
    assert 'ragsync_poll_caught_total{clock="audit",source="blog"} 23.0' in daemon.http.get("/metrics").text


def test_a_failed_or_truncated_listing_deletes_nothing(wp, daemon_factory):
    publish(wp, range(1, 21))
    daemon = daemon_factory(wp_source(wp), "[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0.5")
    wait_for(lambda: len(live(daemon)) == 20, 60, "20 pages indexed")
    audits = lambda: daemon.engine.notes.get("audit")["blog"]    # noqa: E731
    wp.fail_next(3, 503)
    wait_for(lambda: "503" in (audits().get("error") or ""), 30, "an audit against a failing CMS")
    wp.unlisted = set(range(1, 16))                               # the listing lacks 15 of 20: truncated
    wait_for(lambda: "mass-deletion guard" in (audits().get("error") or ""), 30, "an audit of a truncated listing")
    daemon.idle()
    assert len(live(daemon)) == 20 and not daemon.engine.queue.dead()


def test_equal_timestamps_and_a_clock_that_steps_back_lose_nothing(wp, daemon_factory):
    publish(wp, range(1, 6))
    daemon = daemon_factory(wp_source(wp), "[reconcile]\npoll_interval_s = 0.2\naudit_interval_s = 2")
    wait_for(lambda: len(live(daemon)) == 5, 60, "5 pages indexed")
    wp.clock += timedelta(hours=1)
    publish(wp, [6])
    wait_for(lambda: "6" in live(daemon), 30, "page 6, an hour later, to be polled")
    daemon.idle()
    cursor = wp.posts[6].modified
    wp.edit(2, html=page_html(["Saved in the very second of the cursor."]), touch=False)
    wp.posts[2].modified = cursor                                # same timestamp as the newest seen
    wait_for(lambda: "very second" in indexed_text(daemon, 2), 30, "an edit at the cursor's own second")
    wp.clock = cursor - timedelta(seconds=120)                   # the CMS's clock steps back two minutes
    wp.edit(3, html=page_html(["Written by a server whose clock runs behind."]))
    wait_for(lambda: "runs behind" in indexed_text(daemon, 3), 30, "an edit older than the cursor (the overlap)")
    wp.clock = cursor - timedelta(minutes=30)                    # beyond the overlap: only the audit sees it
    wp.edit(4, html=page_html(["Written thirty minutes in the past, as far as the CMS knows."]))
    wait_for(lambda: "thirty minutes" in indexed_text(daemon, 4), 30, "the audit to catch what the poll cannot")


def test_with_redis_one_process_polls_at_a_time(wp, embedder, redis_url, tmp_path, monkeypatch):
    monkeypatch.setattr(poller, "LEASE_S", 2.0)
    url = redis_url.rsplit("/", 1)[0] + "/3"                     # a database of its own
    publish(wp, range(1, 4))
    daemons = [Harness(write_config(tmp_path / name, wp_source(wp), f'reconcile_on_start = false\n[queue]\n'
                                    f'redis_url = "{url}"\n{POLL_ONLY}'), embedder) for name in ("a", "b")]
    try:
        wait_for(lambda: daemons[0].engine.notes.get("poll").get("blog", {}).get("by"), 60, "a first poll")
        first = daemons[0].engine.notes.get("poll")["blog"]["by"]
        seen = set()
        for _ in range(5):                                       # several polls later, still the same process
            at = daemons[0].engine.notes.get("poll")["blog"]["at"]
            wait_for(lambda: daemons[0].engine.notes.get("poll")["blog"]["at"] > at, 30, "the next poll")
            seen.add(daemons[0].engine.notes.get("poll")["blog"]["by"])
        assert seen == {first}
        holder = next(d for d in daemons if d.poller.holder == first)
        other = next(d for d in daemons if d is not holder)
        for d in daemons:
            d.idle()
        holder.close()                                           # the poller dies: the other takes over
        wait_for(lambda: other.engine.notes.get("poll")["blog"]["by"] == other.poller.holder, 30, "a takeover")
    finally:
        for d in daemons:
            d.close()


def test_a_webhook_whose_fetch_failed_is_not_counted_lost(wp, daemon_factory):
    """The webhook came; the CMS refused the fetch (parked) or failed it (retrying). When the
    poll then finds the page, it catches up on it, but no webhook was lost."""
    publish(wp, range(1, 3))
    daemon = daemon_factory(wp_source(wp), "[queue]\nbackoff_base_s = 30\nbackoff_max_s = 60\n" + POLL_ONLY)
    wait_for(lambda: live(daemon) == {"1", "2"}, 60, "the first poll (an audit) to index both")
    daemon.idle()
    wp.clock += timedelta(hours=1)
    wp.edit(1, html=page_html(["Page 1 now talks about slices."]))
    wp.fail_next(1, 400)                                   # refused: parked at once
    daemon.wp_event(1)
    wait_for(lambda: [p.doc_id for p in daemon.engine.queue.dead()] == ["1"], 30, "the refused fetch to park")
    wait_for(lambda: "slices" in indexed_text(daemon, 1), 30, "the poll to catch up on page 1")
    wp.edit(2, html=page_html(["Page 2 now talks about arrays."]))
    wp.fail_next(1, 503)                                   # failed: retrying, 30 s or more away
    daemon.wp_event(2)
    wait_for(lambda: "arrays" in indexed_text(daemon, 2), 30, "the poll to catch up on page 2")
    metrics = daemon.http.get("/metrics").text
    assert 'ragsync_poll_caught_total{clock="poll",source="blog"}' not in metrics or \
        'ragsync_poll_caught_total{clock="poll",source="blog"} 0.0' in metrics
    assert daemon.engine.queue.dead() == []                # and the poll's pass cleared page 1's entry
