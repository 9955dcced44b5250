"""Incremental passes (embed only what changed; search never sees half a page): content-addressed chunks, no re-embedding
of what is already right, no half-updated page, revision fencing and coalescing."""

from __future__ import annotations

import threading

from ragsync.errors import StoreError
from tests.support import page_html, wait_for, words, wp_source


def long_page(n: int = 24, seed: int = 0) -> list[str]:
    """About 2,000 words in n paragraphs."""
    return [words(seed + i, 85) for i in range(n)]


def _index(daemon, wp, post_id: int, paragraphs: list[str], title: str = "Guide"):
    wp.publish(post_id, title, page_html(paragraphs))
    daemon.wp_event(post_id, "post.published")
    daemon.idle()


def _counters(daemon) -> tuple[int, int]:
    return daemon.engine.embedder.embedded, daemon.engine.store.writes


def test_unchanged_republish_embeds_nothing_and_writes_nothing(daemon, wp):
    _index(daemon, wp, 1, long_page())
    embedded, writes = _counters(daemon)
    fetched = wp.fetches[1]
    wp.edit(1, touch=False)                                   # "Update" with nothing changed
    daemon.wp_event(1, "post.updated")
    daemon.idle()
    assert wp.fetches[1] == fetched + 1                       # the pass ran: it fetched the page...
    wait_for(lambda: 'ragsync_passes_total{outcome="unchanged",source="blog"} 1.0' in daemon.http.get("/metrics").text,
             10, "the pass's outcome to be counted")
    assert _counters(daemon) == (embedded, writes)            # ...and found nothing to embed or write


def test_one_paragraph_edit_embeds_at_most_two_chunks(daemon, wp):
    paragraphs = long_page()
    _index(daemon, wp, 2, paragraphs)
    total = len(daemon.engine.store.doc_chunks("blog", "2"))
    embedded, _ = _counters(daemon)

    paragraphs[12] = paragraphs[12].replace("cargo", "CARGO-EDITED", 1) + " One more sentence."
    wp.edit(2, html=page_html(paragraphs))
    daemon.wp_event(2)
    daemon.idle()
    assert 1 <= daemon.engine.embedder.embedded - embedded <= 2 < total
    assert any("CARGO-EDITED" in t for t in daemon.doc_texts("blog", "2"))
    assert len(daemon.engine.store.doc_chunks("blog", "2")) in (total - 1, total, total + 1)


def test_an_edit_gives_the_kept_points_their_new_revision_in_one_write(daemon, wp):
    """Every kept point of an edited page takes the new `modified`: one write for all of them
    (at 1M points, one write each was most of a pass's write step)."""
    paragraphs = long_page(seed=50)
    _index(daemon, wp, 4, paragraphs)
    total = len(daemon.engine.store.doc_chunks("blog", "4"))
    _, writes = _counters(daemon)
    paragraphs[12] = paragraphs[12].replace("cargo", "crate", 1)       # same length: the same chunk bounds
    wp.edit(4, html=page_html(paragraphs))
    daemon.wp_event(4)
    daemon.idle()
    points = daemon.engine.store.doc_chunks("blog", "4").values()
    assert {p["metadata"]["modified"] for p in points} == {daemon.engine.store.page("blog", "4").modified}
    # the new point, the kept points' metadata, the page record, the new point made live, the old one deleted
    assert daemon.engine.store.writes - writes == 5 < total + 3


def test_paragraph_inserted_at_the_top_embeds_only_the_new_chunk(daemon, wp):
    paragraphs = long_page(seed=100)
    _index(daemon, wp, 3, paragraphs)
    before = set(daemon.doc_texts("blog", "3"))
    embedded, _ = _counters(daemon)

    new = "A brand new introduction paragraph about release notes, placed before everything else."
    wp.edit(3, html=page_html([new] + paragraphs))
    daemon.wp_event(3)
    daemon.idle()
    after = daemon.doc_texts("blog", "3")
    changed = [t for t in after if t not in before]
    assert daemon.engine.embedder.embedded - embedded == len(changed)
    assert len(changed) == 1 and new in changed[0]
    assert len(before - set(after)) <= 1                       # at most the chunk it joined was replaced


def test_metadata_only_change_updates_payload_without_embedding(daemon, wp):
    _index(daemon, wp, 4, long_page(6, seed=7), title="Old title")
    embedded, _ = _counters(daemon)
    wp.edit(4, title="New title")
    daemon.wp_event(4)
    daemon.idle()
    assert daemon.engine.embedder.embedded == embedded
    titles = {p["metadata"]["title"] for p in daemon.engine.store.doc_chunks("blog", "4").values()}
    assert titles == {"New title"}
    assert daemon.engine.store.page("blog", "4").title == "New title"


def test_a_failed_pass_leaves_the_old_version_serving(daemon, wp):
    old = [f"Old version paragraph {i}: " + words(i, 40) for i in range(6)]
    _index(daemon, wp, 5, old)
    old_texts = daemon.doc_texts("blog", "5")

    store = daemon.engine.store
    real_put = store.put_page
    failed = threading.Event()
    release = threading.Event()

    def put_page_fails_once(record):
        if not failed.is_set():
            failed.set()
            release.wait(30)
            raise StoreError("Qdrant: injected failure after embedding")
        return real_put(record)

    store.put_page = put_page_fails_once
    wp.edit(5, html=page_html([f"New version paragraph {i}: " + words(i + 50, 40) for i in range(6)]))
    daemon.wp_event(5)
    wait_for(failed.is_set, what="the pass to reach the page switch")
    # mid-pass: the new chunks are written but search still sees exactly the old version
    hits = [r for r in daemon.search("version paragraph", 50) if r["doc_id"] == "5"]
    assert hits and all(r["text"].startswith("Old version") for r in hits)
    release.set()
    wait_for(lambda: daemon.engine.queue.pending() and daemon.engine.queue.pending()[0].state == "retry",
             what="the failed pass to be scheduled for retry")
    hits = [r for r in daemon.search("version paragraph", 50) if r["doc_id"] == "5"]
    assert sorted(r["text"] for r in hits) == sorted(old_texts)          # whole old page, nothing else
    store.put_page = real_put
    daemon.idle()
    assert all(t.startswith("New version") for t in daemon.doc_texts("blog", "5"))


def test_a_search_racing_passes_never_sees_a_mix(daemon, wp):
    versions = {v: [f"Version {v} paragraph {i}: " + words(i * 3 + (v == 'B'), 50) for i in range(8)]
                for v in ("A", "B")}
    _index(daemon, wp, 6, versions["A"])
    seen: list[set[str]] = []
    stop = threading.Event()
    vector = daemon.engine.embedder.embed(["version paragraph"])[0]

    def searcher():
        while not stop.is_set():
            hits = [r for r in daemon.engine.search_vector(vector, 60) if r.metadata["doc_id"] == "6"]
            seen.append({r.text.split()[1] for r in hits})

    t = threading.Thread(target=searcher)
    t.start()
    try:
        for flip in range(6):
            v = "B" if flip % 2 == 0 else "A"
            wp.edit(6, html=page_html(versions[v]))
            daemon.wp_event(6)
            daemon.idle()
    finally:
        stop.set()
        t.join()
    assert len(seen) > 50
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) != 1][:3]


def test_an_older_fetch_never_overwrites_a_newer_version(daemon, wp):
    _index(daemon, wp, 7, ["Newest text that must stay."])
    post = wp.posts[7]
    newer = post.modified
    post.html = page_html(["Stale text from a lagging replica."])
    post.modified = newer.replace(year=2025)                  # the CMS answers with an older revision
    daemon.wp_event(7)
    daemon.idle()
    assert daemon.doc_texts("blog", "7") == ["Newest text that must stay."]


def test_a_burst_of_webhooks_for_one_page_is_one_pass(wp, daemon_factory):
    daemon = daemon_factory(wp_source(wp), consume=False)
    wp.publish(8, "Autosave", page_html(["Burst test paragraph."]))
    for _ in range(20):
        daemon.wp_event(8)
    assert len(daemon.engine.queue.pending()) == 1
    assert daemon.engine.queue.depth() == 1
    daemon.engine.queue.start(2)
    daemon.idle()
    assert wp.fetches[8] == 1


def test_a_key_added_while_running_runs_again_after(daemon, wp):
    _index(daemon, wp, 9, ["First text."])
    entered, release = threading.Event(), threading.Event()
    connector = daemon.engine.connectors["blog"]
    real_fetch = connector.fetch

    def slow_fetch(doc_id):
        result = real_fetch(doc_id)
        if not entered.is_set():
            entered.set()
            release.wait(30)
        return result

    connector.fetch = slow_fetch
    daemon.wp_event(9)
    wait_for(entered.is_set, what="the first pass to start")
    wp.edit(9, html=page_html(["Second text, written while the first pass ran."]))
    daemon.wp_event(9)                                         # must not run concurrently, must not be lost
    assert daemon.engine.queue.depth() == 0       # coalesced into the running key
    release.set()
    daemon.idle()
    assert daemon.doc_texts("blog", "9") == ["Second text, written while the first pass ran."]
