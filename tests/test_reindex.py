"""Changing the chunker (or model) without downtime: the fingerprint refuses a mismatched
start with a clear message, and `ragsync reindex` rebuilds beside the live collection while
webhook edits keep coming and searches keep answering, then switches atomically."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

from ragsync.chunk import Chunker
from ragsync.extract import extract
from ragsync.fingerprint import fingerprint, short
from tests.support import ADMIN_TOKEN, page_html, run_cli, words


def _set_max_tokens(path: Path, n: int) -> None:
    text = path.read_text()
    head, _, _ = text.partition("\n[chunking]")
    path.write_text(f"{head}\n[chunking]\nmax_tokens = {n}\n")


def test_a_changed_chunker_is_refused_at_start_with_a_clear_message(daemon, wp):
    wp.publish(1, "Page", page_html([words(1, 80)]))
    daemon.wp_event(1)
    daemon.idle()
    daemon.close()                                      # frees the embedded store
    cfg = daemon.config.path
    _set_max_tokens(cfg, 120)
    out = run_cli(cfg, "serve")
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1, out.stderr
    assert "max_tokens 200 → 120" in out.stderr and "ragsync reindex" in out.stderr

    report = json.loads(run_cli(cfg, "reindex", "--drop-old", "--json").stdout)   # no daemon: it opens the store
    assert (report["pages"], report["changed"], report["dropped_old"]) == (1, "max_tokens 200 → 120", True)
    status = json.loads(run_cli(cfg, "status", "--json").stdout)
    assert status["collection"]["config_matches"] is True
    assert status["collection"]["fingerprint"]["max_tokens"] == 120
    assert not (cfg.parent / "var" / "qdrant" / "ragsync").exists()     # the old collection was dropped


def test_reindex_under_a_stream_of_edits_loses_nothing_and_search_never_goes_blank(daemon, wp):
    pages = 30
    for i in range(1, pages + 1):
        wp.publish(i, f"Guide {i}", page_html([words(i, 120), words(i + 100, 90)], title=f"Guide {i}"))
        daemon.wp_event(i)
    daemon.idle()
    old = daemon.engine._live
    _set_max_tokens(daemon.config.path, 64)             # smaller chunks: every point changes

    done: dict = {}

    def reindex() -> None:
        resp = daemon.http.post("/admin/reindex", json={}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=600)
        done["report"] = resp.json() if resp.status_code == 200 else resp.text
    thread = threading.Thread(target=reindex)
    thread.start()
    rng, edits, searches = random.Random(7), {}, 0
    while thread.is_alive():
        post_id = rng.randint(1, pages)
        marker = f"edition{len(edits)}"
        wp.edit(post_id, html=page_html([f"Revised text {marker}. " + words(post_id + 7 * len(edits), 100)],
                                        title=f"Guide {post_id}"))
        daemon.wp_event(post_id)
        edits[post_id] = marker
        assert daemon.search("cargo crate build module", 5), "a search during the reindex came back empty"
        searches += 1
    thread.join()
    report = done["report"]
    assert isinstance(report, dict), report
    wp.edit(1, status="draft")
    daemon.wp_event(1)
    wp.delete(2)
    daemon.wp_event(2, "post.deleted")
    daemon.idle()

    assert daemon.engine._live != old and report["new"] == daemon.engine._live and report["old"] == old
    assert (daemon.config.path.parent / "var" / "qdrant" / old).is_dir()       # kept until --drop-old
    chunker = Chunker(daemon.engine.embedder.tokenizer_file, 64)
    for post in (p for p in wp.posts.values() if p.status == "publish"):
        expected = [c.text for c in chunker.chunk(extract(post.html))]
        assert daemon.doc_texts("blog", str(post.id)) == expected, f"post {post.id}"
    for post_id, marker in edits.items():
        if post_id in wp.posts and wp.posts[post_id].status == "publish":
            assert marker in " ".join(daemon.doc_texts("blog", str(post_id)))
    assert daemon.doc_texts("blog", "1") == [] and daemon.doc_texts("blog", "2") == []
    stamps = {p["metadata"]["fingerprint"] for _, p in daemon.engine.store.iter_chunks()}
    assert stamps == {short(fingerprint(daemon.engine.config, daemon.engine.embedder))}
    print(f"\nreindex of {pages} pages under {len(edits)} edits and {searches} searches: {report['duration_s']:.1f}s, "
          f"{report['caught_up']} caught up")
