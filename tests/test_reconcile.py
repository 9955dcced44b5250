"""`ragsync reconcile` (the level-triggered safety net): converges exactly to the CMS's published state,
audits what Qdrant actually holds, re-embeds nothing that is right, refuses mass deletions."""

from __future__ import annotations

import logging
import threading

from flask import request

from ragsync import reconcile
from tests.support import page_html, published, wait_for, words, wp_source


def published_state(daemon, wp) -> dict[str, list[str]]:
    """What the index must hold: each published, unprotected post's chunk texts."""
    return published(wp, daemon.engine.chunker)


def index_state(daemon) -> dict[str, list[str]]:
    state: dict[str, list[str]] = {}
    for _, payload in daemon.engine.store.iter_chunks({"metadata.source": "blog"}):
        state.setdefault(payload["metadata"]["doc_id"], []).append(payload["page_content"])
    return {k: sorted(v) for k, v in state.items()}


def seed(daemon, wp, n: int = 10) -> None:
    for i in range(1, n + 1):
        wp.publish(i, f"Page {i}", page_html([words(i, 40), words(i + 100, 40)]))
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert len(report.added) == n and not report.errors
    assert index_state(daemon) == published_state(daemon, wp)


def test_what_reconcile_catches_adds_up_across_runs(daemon, wp):
    seed(daemon, wp, 3)                                       # caught 3 (the webhooks sent nothing)
    wp.edit(1, html=page_html(["Edited while the webhook was lost."]))
    wp.publish(4, "Also missed", page_html([words(4, 40)]))
    reconcile.run(daemon.engine, ["blog"])                    # caught 2 more
    last = daemon.engine.snapshot().reconcile["blog"]
    assert (last["listed"], last["added"], last["updated"], last["caught_total"]) == (4, 1, 1, 5)


def test_lost_webhooks_for_creates_edits_and_deletes_converge_in_one_run(daemon, wp):
    seed(daemon, wp)
    wp.publish(11, "Created silently", page_html([words(11, 50)]))
    wp.edit(3, html=page_html([words(3, 40), "An edit nobody was told about."]))
    wp.edit(4, status="draft")
    wp.edit(5, password="hunter2")
    wp.delete(6)
    (report,) = reconcile.run(daemon.engine, ["blog"], force=True)
    assert report.added == ["11"] and report.updated == ["3", "5"]
    assert sorted(report.tombstoned) == ["4", "6"]
    assert index_state(daemon) == published_state(daemon, wp)
    assert {r.doc_id for r in daemon.engine.store.iter_pages("blog") if r.state == "live"} == \
        set(published_state(daemon, wp))


def test_points_deleted_behind_ragsyncs_back_are_restored(daemon, wp):
    seed(daemon, wp)
    store = daemon.engine.store
    lost = list(store.doc_chunks("blog", "2"))[:1] + list(store.doc_chunks("blog", "7"))
    store.delete_chunks(lost)                  # the page records still say "indexed"
    embedded = daemon.engine.embedder.embedded
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert sorted(report.repaired) == ["2", "7"]
    assert daemon.engine.embedder.embedded - embedded == len(lost)
    assert index_state(daemon) == published_state(daemon, wp)


def test_orphaned_points_are_removed(daemon, wp):
    seed(daemon, wp)
    store = daemon.engine.store
    vector = [0.1] * daemon.engine.embedder.dim
    store.upsert_chunks([("00000000-0000-0000-0000-00000000beef", vector,
                          {"page_content": "orphan", "metadata": {"source": "blog", "doc_id": "2"}}),
                         ("00000000-0000-0000-0000-00000000cafe", vector,
                          {"page_content": "leak", "metadata": {"source": "blog", "doc_id": "99"}})])
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert report.repaired == ["2"] and report.tombstoned == ["99"]
    assert index_state(daemon) == published_state(daemon, wp)


def test_empty_listing_trips_the_guard_and_deletes_nothing(daemon, wp):
    seed(daemon, wp)
    before = index_state(daemon)
    wp.posts.clear()                           # the CMS API answers with an empty list
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert report.tombstoned == [] and "mass-deletion guard" in report.errors[0]
    assert index_state(daemon) == before
    (forced,) = reconcile.run(daemon.engine, ["blog"], force=True)
    assert len(forced.tombstoned) == 10 and index_state(daemon) == {}


def test_a_failed_listing_is_never_read_as_everything_deleted(daemon, wp):
    seed(daemon, wp, 4)
    before = index_state(daemon)
    wp.fail_next(1, 500)
    (report,) = reconcile.run(daemon.engine, ["blog"], force=True)
    assert "listing failed" in report.errors[0] and report.tombstoned == []
    assert index_state(daemon) == before


def test_dry_run_changes_nothing(daemon, wp):
    seed(daemon, wp, 5)
    wp.edit(1, html=page_html(["Changed."]))
    wp.delete(2)
    writes, before = daemon.engine.store.writes, index_state(daemon)
    (report,) = reconcile.run(daemon.engine, ["blog"], dry_run=True, force=True)
    assert report.updated == ["1"] and report.tombstoned == ["2"]
    assert daemon.engine.store.writes == writes and index_state(daemon) == before
    assert daemon.engine.queue.pending() == []


def test_a_second_reconcile_fetches_no_bodies_and_embeds_nothing(daemon, wp):
    seed(daemon, wp)
    fetches, embedded, writes = sum(wp.fetches.values()), daemon.engine.embedder.embedded, daemon.engine.store.writes
    (report,) = reconcile.run(daemon.engine, ["blog"])
    assert report.unchanged == 10 and not report.keys
    assert sum(wp.fetches.values()) == fetches
    assert daemon.engine.embedder.embedded == embedded and daemon.engine.store.writes == writes


def test_listing_pages_through_more_than_one_page_of_results(daemon, wp):
    for i in range(1, 131):
        wp.publish(i, f"P{i}", f"<p>Short page number {i}.</p>")
    listed = [entry.doc_id for entry in daemon.engine.connectors["blog"].list()]
    assert listed == [str(i) for i in range(1, 131)]


def test_a_stop_during_the_startup_reconcile_is_no_failure(daemon_factory, wp, caplog):
    """Listing a large CMS takes minutes and a stop does not wait for it: the engine closes under
    the startup reconcile, which logs that it stopped (the next start reconciles again), not an
    error an operator would chase on every restart."""
    listing, release = threading.Event(), threading.Event()

    @wp.app.before_request
    def hold_the_listing():
        if "per_page" in request.args:
            listing.set()
            release.wait(30)

    wp.publish(1, "Page 1", page_html([words(1, 40)]))
    caplog.set_level(logging.INFO, logger="ragsync.daemon")
    daemon = daemon_factory(wp_source(wp), "reconcile_on_start = true\n")
    wait_for(listing.is_set, 30, "the startup reconcile to list the CMS")
    daemon.close()
    release.set()
    wait_for(lambda: "startup reconcile" in caplog.text, 30, "the startup reconcile to end")
    assert "stopped with the daemon" in caplog.text and "startup reconcile failed" not in caplog.text
