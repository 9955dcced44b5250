"""The deletion budget, one for every path: a CMS that (wrongly or not) confirms the deletion of
many pages cannot empty a source, one webhook at a time or in one audit. Past a net loss of
max(delete_floor, max_delete_share × peak) pages within the window (and no plan all of them),
deletions wait, visible in /metrics and status; an operator's `ragsync reconcile --force`
applies them. Below it a small site retires pages with no operator at all."""

from __future__ import annotations

import pytest

from ragsync import reconcile
from ragsync.guard import DeletionGuard, Held
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


def live_pages(daemon) -> int:
    return daemon.engine.snapshot().as_dict()["sources"]["blog"]["pages_live"]


def test_a_small_site_unpublishes_a_handful_of_pages_through_the_audit(daemon_factory, wp):
    """16 posts, 3 new: 2 drafted and 2 deleted (4 of 19, past 20 %) go without an operator."""
    for i in range(1, 20):
        wp.publish(i, f"Page {i}", page_html([words(i, 30)]))
    daemon = daemon_factory(wp_source(wp), "[reconcile]\npoll_interval_s = 0.2\naudit_interval_s = 0.5")
    wait_for(lambda: live_pages(daemon) == 19, 60, "19 pages indexed")
    wp.edit(1, status="draft")
    wp.edit(2, status="draft")
    wp.delete(3)
    wp.delete(4)
    wait_for(lambda: live_pages(daemon) == 15, 30, "the audit to retire 4 of 19 pages")
    assert not {h["doc_id"] for h in daemon.search("page", limit=50)} & {"1", "2", "3", "4"}
    assert daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"] == 0


def test_an_audit_past_the_budget_holds_its_deletions_where_an_operator_looks(daemon_factory, wp, caplog):
    for i in range(1, 21):
        wp.publish(i, f"Page {i}", page_html([words(i, 30)]))
    daemon = daemon_factory(wp_source(wp), "[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0.5")
    wait_for(lambda: live_pages(daemon) == 20, 60, "20 pages indexed")
    for i in range(1, 16):                                 # 15 of 20: past max(10, 4)
        wp.delete(i)
    held = lambda: daemon.engine.snapshot().as_dict()["sources"]["blog"]["deletions_held"]  # noqa: E731
    wait_for(lambda: held() == 15, 30, "the audit to hold 15 deletions")
    assert live_pages(daemon) == 20
    assert 'ragsync_deletions_held{source="blog"} 15.0' in daemon.http.get("/metrics").text
    assert "reconcile --force --source blog" in daemon.engine.notes.get("audit")["blog"]["error"]
    assert any("reconcile --force --source blog" in r.getMessage() for r in caplog.records)
    (report,) = reconcile.run(daemon.engine, ["blog"], force=True)
    assert len(report.tombstoned) == 15
    daemon.idle()
    assert live_pages(daemon) == 5 and held() == 0


def test_webhooks_and_reconcile_share_one_budget(daemon_factory, wp):
    daemon = published(daemon_factory, wp, 20, "max_delete_share = 0.2\ndelete_floor = 6")
    for i in range(1, 5):                                  # 4 by webhook: within max(6, 4)
        wp.delete(i)
        daemon.wp_event(i, "post.deleted")
    daemon.idle()
    assert live_pages(daemon) == 16
    for i in range(5, 8):                                  # 3 more found by reconcile: 7 > 6 in the window
        wp.delete(i)
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert report.tombstoned == [] and "has 2 left" in report.errors[0]
    assert live_pages(daemon) == 16


def test_no_plan_empties_a_source_but_a_webhook_may_retire_a_last_page(daemon_factory, wp):
    daemon = published(daemon_factory, wp, 3, "max_delete_share = 0.2")
    assert [daemon.engine.guard.budget(n) for n in (1, 10, 49, 100)] == [10, 10, 10, 20]
    for i in (1, 2, 3):
        wp.delete(i)
    (report,) = reconcile.run(daemon.engine, ["blog"])            # an empty listing: held, all of it
    assert report.tombstoned == [] and "has 10 left" in report.errors[0] and live_pages(daemon) == 3
    for i in (1, 2, 3):                                            # one page at a time, each the CMS's verdict
        daemon.wp_event(i, "post.deleted")
    daemon.idle()
    assert live_pages(daemon) == 0


def test_an_operators_word_on_a_page_ends_when_it_turns_out_live():
    guard = DeletionGuard(max_share=0.0, window_s=3600, floor=0)
    guard.allow([("s", "7")])
    guard.release("s", "7")                                 # republished before the pass ran
    with pytest.raises(Held):
        guard.admit("s", "7", lambda: 5)
