"""The webhook path's mass-deletion guard: a CMS that (wrongly or not) confirms the deletion of
many pages cannot empty a source one webhook at a time. Past max_delete_share of the live pages
(at least 5) within the window, deletions wait as pending keys, visible in /metrics and status;
an operator's `ragsync reconcile --force` applies them."""

from __future__ import annotations

from ragsync import reconcile
from tests.conftest import page_html, wait_for, wp_source, words


def test_webhook_deletions_past_the_share_are_held_until_an_operator_forces_them(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), "[reconcile]\nmax_delete_share = 0.2\ndelete_window_s = 3600")
    for i in range(1, 21):
        wp.publish(i, f"Page {i}", page_html([words(i, 30)]))
        daemon.wp_event(i, "post.published")
    daemon.idle()
    assert daemon.engine.status()["sources"]["blog"]["pages_live"] == 20

    for i in range(1, 13):                                # the CMS "deletes" 12 of 20 pages
        wp.delete(i)
        daemon.wp_event(i, "post.deleted")
    held = lambda: daemon.engine.status()["sources"]["blog"]["deletions_held"]
    wait_for(lambda: held() == 7, 60, "7 deletions to be held")   # budget: max(5, 0.2 × 20) = 5
    status = daemon.engine.status()
    assert status["sources"]["blog"]["pages_live"] == 15
    assert status["pending"] == 7 and status["dead"] == 0         # waiting, not lost, not parked
    assert 'ragsync_deletions_held{source="blog"} 7.0' in daemon.http.get("/metrics").text
    assert len(daemon.search("page", limit=50)) >= 15

    (report,) = reconcile.run(daemon.engine, ["blog"], force=True)   # the operator's word
    assert sorted(report.tombstoned, key=int) == [str(i) for i in range(6, 13)]
    daemon.idle()
    status = daemon.engine.status()
    assert status["sources"]["blog"]["pages_live"] == 8 and status["sources"]["blog"]["deletions_held"] == 0
    assert {h["doc_id"] for h in daemon.search("page", limit=50)} <= {str(i) for i in range(13, 21)}


def test_a_republished_page_is_no_longer_held(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), "[reconcile]\nmax_delete_share = 0.0")
    for i in range(1, 8):
        wp.publish(i, f"Page {i}", page_html([words(i, 30)]))
        daemon.wp_event(i, "post.published")
    daemon.idle()
    for i in range(1, 6):                                 # the budget's floor: 5 deletions
        wp.delete(i)
        daemon.wp_event(i, "post.deleted")
    daemon.idle()
    for i in (6, 7):
        wp.edit(i, status="draft")
        daemon.wp_event(i, "post.unpublished")
    wait_for(lambda: daemon.engine.status()["sources"]["blog"]["deletions_held"] == 2, 60, "2 held")
    wp.edit(6, status="publish")
    daemon.wp_event(6, "post.published")
    wait_for(lambda: daemon.engine.status()["sources"]["blog"]["deletions_held"] == 1, 60, "1 held")
