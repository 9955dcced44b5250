"""The webhook path's mass-deletion guard: a CMS that (wrongly or not) confirms the deletion of
many pages cannot empty a source one webhook at a time. Past a net loss of max_delete_share of
the live pages (at least 10) within the window, deletions wait as pending keys, visible in
/metrics and status; an operator's `ragsync reconcile --force` applies them."""

from __future__ import annotations

from ragsync import reconcile
from tests.support import page_html, wait_for, wp_source, words


def published(daemon_factory, wp, pages: int, reconcile_settings: str):
    """A daemon that has indexed `pages` pages through webhooks."""
    daemon = daemon_factory(wp_source(wp), f"[reconcile]\n{reconcile_settings}")
    for i in range(1, pages + 1):
        wp.publish(i, f"Page {i}", page_html([words(i, 30)]))
        daemon.wp_event(i, "post.published")
    daemon.idle()
    return daemon


def test_webhook_deletions_past_the_share_are_held_until_an_operator_forces_them(daemon_factory, wp):
    daemon = published(daemon_factory, wp, 20, "max_delete_share = 0.2\ndelete_window_s = 3600")
    assert daemon.engine.snapshot().as_dict()["sources"]["blog"]["pages_live"] == 20

    for i in range(1, 15):                                # the CMS "deletes" 14 of 20 pages
        wp.delete(i)
        daemon.wp_event(i, "post.deleted")
    held = lambda: daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"]
    wait_for(lambda: held() == 4, 60, "4 deletions to be held")   # budget: max(10, 0.2 × 20) = 10
    status = daemon.engine.snapshot().as_dict()
    assert status["sources"]["blog"]["pages_live"] == 10
    assert status["pending"] == 4 and status["dead"] == 0         # waiting, not lost, not parked
    assert 'ragsync_deletions_held{source="blog"} 4.0' in daemon.http.get("/metrics").text
    assert len({h["doc_id"] for h in daemon.search("page", limit=50)}) == 10

    held_ids = set(daemon.engine.guard.held["blog"])
    (report,) = reconcile.run(daemon.engine, ["blog"], force=True)   # the operator's word
    assert set(report.tombstoned) == held_ids and len(held_ids) == 4
    daemon.idle()
    status = daemon.engine.snapshot().as_dict()
    assert status["sources"]["blog"]["pages_live"] == 6 and status["sources"]["blog"]["deletions_held"] == 0
    assert {h["doc_id"] for h in daemon.search("page", limit=50)} <= {str(i) for i in range(15, 21)}


def test_a_republished_page_is_no_longer_held(daemon_factory, wp):
    daemon = published(daemon_factory, wp, 12, "max_delete_share = 0.0")
    for i in range(1, 11):                                # the budget's floor: 10 deletions
        wp.delete(i)
        daemon.wp_event(i, "post.deleted")
    daemon.idle()
    for i in (11, 12):
        wp.edit(i, status="draft")
        daemon.wp_event(i, "post.unpublished")
    wait_for(lambda: daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"] == 2, 60, "2 held")
    wp.edit(11, status="publish")
    daemon.wp_event(11, "post.published")
    wait_for(lambda: daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"] == 1, 60, "1 held")


def test_churn_costs_nothing(daemon_factory, wp):
    """Unpublish and republish cycles are not a loss: only the net drop counts."""
    daemon = published(daemon_factory, wp, 3, "max_delete_share = 0.0")
    for _ in range(15):                                    # 15 deletions of one page, each undone
        wp.edit(1, status="draft")
        daemon.wp_event(1, "post.unpublished")
        daemon.idle()
        wp.edit(1, status="publish")
        daemon.wp_event(1, "post.published")
        daemon.idle()
    assert daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"] == 0
    assert daemon.doc_texts("blog", "1")
