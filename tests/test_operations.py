"""For search teams and operators: search filters and its API key, the collection read by
LangChain's own Qdrant store, metrics that move with traffic (freshness histogram included),
readiness, JSON logs, and `ragsync web` + `ragsync worker` as separate processes on Redis."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import (ADMIN_TOKEN, SECRET, SECRET_ENV, free_port, page_html, run_cli, signed, wait_for, words, wp_source,
                            write_config)


def _publish_three(daemon, wp) -> None:
    for post_id, topic in ((1, "ownership moves values"), (2, "borrowing lends references"), (3, "lifetimes bound references")):
        wp.publish(post_id, f"On {topic}", page_html([f"In Rust, {topic} between functions. " + words(post_id, 60)]))
        daemon.wp_event(post_id)
    daemon.idle()


def test_search_filters_by_source_url_prefix_and_modified_range(daemon, wp):
    _publish_three(daemon, wp)                         # modified 00:00:01, :02, :03 on 2026-01-01
    docs = lambda **params: [r["doc_id"] for r in daemon.search("references in Rust", 10, **params)]  # noqa: E731
    assert set(docs()) == {"1", "2", "3"}
    assert set(docs(url_prefix=f"{wp.url}/?p=2")) == {"2"}
    assert set(docs(modified_after="2026-01-01T00:00:02Z")) == {"2", "3"}
    assert set(docs(modified_before="2026-01-01T00:00:02Z")) == {"1"}
    assert set(docs(modified_after="2026-01-01T00:00:02Z", modified_before="2026-01-01T00:00:03Z")) == {"2"}
    assert docs(source="blog", url_prefix="https://elsewhere/") == []
    hit = daemon.search("ownership moves values", 1)[0]
    assert {"score", "text", "title", "url", "heading_path", "doc_id", "modified", "source"} <= set(hit)
    bad = daemon.http.get("/search", params={"q": "x", "modified_after": "last tuesday"})
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]


def test_grouped_search_returns_each_page_once_best_chunk_first(daemon, wp):
    topics = {1: ("Ownership", ["Ownership moves a value to its new owner.", "The borrow checker enforces who owns a value."]),
              2: ("Threads", ["Spawned threads run closures at the same time.", "Channels pass values between threads."]),
              3: ("Cargo", ["Cargo builds the crate and fetches dependencies.", "Cargo.toml lists what a crate needs."])}
    for post_id, (title, (first, second)) in topics.items():
        wp.publish(post_id, title, page_html([words(post_id, 170), first, words(post_id + 10, 170), second], title))
        daemon.wp_event(post_id, "post.published")
    daemon.idle()
    question = "who owns a value, and what does the borrow checker check?"
    chunks = [r["doc_id"] for r in daemon.search(question, 10)]
    assert chunks.count("1") >= 2                              # as chunks, one page takes several places
    pages = daemon.search(question, 10, group="page")
    assert sorted(p["doc_id"] for p in pages) == ["1", "2", "3"]              # each page once
    assert pages[0]["doc_id"] == "1" and pages[0]["title"] == "Ownership"
    assert [p["score"] for p in pages] == sorted((p["score"] for p in pages), reverse=True)
    for page in pages:
        scores = [c["score"] for c in page["chunks"]]
        assert page["score"] == scores[0] and scores == sorted(scores, reverse=True) and len(scores) <= 3
        assert {c["doc_id"] for c in page["chunks"]} == {page["doc_id"]} and page["heading_paths"]
    assert len(pages[0]["chunks"]) >= 2 and pages[0]["heading_paths"] == [pages[0]["chunks"][0]["heading_path"]]
    bad = daemon.http.get("/search", params={"q": "x", "group": "site"})
    assert bad.status_code == 400 and "group" in bad.json()["error"]


def test_a_filter_that_matches_few_pages_returns_all_of_them(daemon, wp):
    """Filters run inside Qdrant: two pages far from the query, among 360 chunks near it."""
    for post_id in range(1, 61):
        wp.publish(post_id, f"Ownership {post_id}", page_html(
            [f"Ownership and borrowing in Rust, part {post_id}."] + [words(post_id * 7 + k, 180) for k in range(6)]))
        daemon.wp_event(post_id, "post.published")
    wp.clock += timedelta(days=30)
    for post_id in (61, 62):
        wp.publish(post_id, "Tomatoes", page_html([f"Water the tomato plants in the morning, bed {post_id}."]))
        daemon.wp_event(post_id, "post.published")
    daemon.idle(300)
    after = "2026-01-15T00:00:00Z"
    assert {r["doc_id"] for r in daemon.search("ownership and borrowing in Rust", 5, modified_after=after)} == {"61", "62"}
    pages = daemon.search("ownership and borrowing in Rust", 5, group="page", modified_after=after)
    assert sorted(p["doc_id"] for p in pages) == ["61", "62"]


def test_search_api_key_from_the_environment(wp, daemon_factory, monkeypatch):
    monkeypatch.setenv("T_SEARCH_KEY", "search-key-0123456789abcdef")
    daemon = daemon_factory(wp_source(wp), 'search_token_env = "T_SEARCH_KEY"')
    assert daemon.http.get("/search", params={"q": "x"}).status_code == 401
    assert daemon.http.get("/search", params={"q": "x"}, headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = daemon.http.get("/search", params={"q": "x"}, headers={"authorization": "Bearer search-key-0123456789abcdef"})
    assert ok.status_code == 200 and ok.json()["results"] == []
    assert "search-key-0123456789abcdef" not in daemon.http.get("/search", params={"q": "x"}).text


def test_langchain_reads_the_collection_as_it_is(tmp_path, embedder, wp):
    """langchain-qdrant's own QdrantVectorStore opens ragsync's collection (qdrant-client local
    mode standing in for a server) and returns ragsync's chunks with their metadata; with the
    documented filter it never sees the chunks of a pass that died before its page switched."""
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    from ragsync.errors import StoreError

    from ragsync import config as config_mod
    from ragsync.engine import Engine
    from ragsync.index import ClientStore

    path = str(tmp_path / "qdrant-local")
    engine = Engine(config_mod.load(write_config(tmp_path, wp_source(wp))), embedder=embedder,
                    store=ClientStore(QdrantClient(path=path), "ragsync", embedder.dim))
    try:
        wp.publish(1, "Smart pointers", page_html(["Box puts a value on the heap and owns it.", words(1, 80)]))
        wp.publish(2, "Threads", page_html(["Spawned threads run closures concurrently.", words(2, 80)]))
        for post_id in ("1", "2"):
            engine.queue.add("blog", post_id)
        engine.queue.drain()
        wp.edit(2, html=page_html(["Rc counts the owners that share one value.", words(2, 80)]))

        def dies(record):
            raise StoreError("Qdrant went away between the new chunks and the switch")
        engine.store.put_page = dies
        engine.queue.add("blog", "2")
        engine.queue.drain()                                  # the pass fails: its new chunks stay behind
    finally:
        engine.close()

    class RagsyncModel(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed(texts)

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed([text])[0]

    client = QdrantClient(path=path)
    try:
        store = QdrantVectorStore(client=client, collection_name="ragsync", embedding=RagsyncModel())
        docs = store.similarity_search("which type stores a value on the heap?", k=2)
        live = models.Filter(must_not=[models.FieldCondition(key="metadata.live", match=models.MatchValue(value=False))])
        question = "what counts the owners of a shared value?"
        raw = store.similarity_search(question, k=1)
        kept = store.similarity_search(question, k=3, filter=live)
    finally:
        client.close()
    assert "Rc counts" in raw[0].page_content and raw[0].metadata["live"] is False    # the dead pass's chunk
    assert all(d.metadata.get("live") is not False and "Rc counts" not in d.page_content for d in kept)
    assert docs[0].page_content.startswith("Smart pointers") or "Box puts a value on the heap" in docs[0].page_content
    meta = docs[0].metadata
    assert (meta["source"], meta["doc_id"], meta["title"]) == ("blog", "1", "Smart pointers")
    assert {"url", "modified", "chunk_index", "content_hash", "heading_path"} <= set(meta) and meta["live"] is True


def _metrics(daemon) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in daemon.http.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_a_page_read_can_wait_for_the_revision_just_published(daemon, wp):
    """Read-your-writes for a publisher: `until` + `wait_s` answer once the page is indexed at
    that revision (or, after wait_s, with what there is), with no polling."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    _publish_three(daemon, wp)
    edited = wp.edit(1, html=page_html(["Ownership, edited: the waiting reader sees this text."]))
    until = edited.modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    url, wait = "/admin/pages/blog/1", {"until": until, "wait_s": 0.3}
    began = time.monotonic()
    stale = daemon.http.get(url, params=wait, headers=admin).json()
    assert time.monotonic() - began >= 0.3 and stale["modified"] < until      # no pass yet: it waited, then answered

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(daemon.http.get, url, params={**wait, "wait_s": 60}, headers=admin)
        daemon.wp_event(1)
        fresh = waiting.result(timeout=60).json()
    assert fresh["modified"] == until and daemon.doc_texts("blog", "1") == [
        "Ownership, edited: the waiting reader sees this text."]
    for bad in ({"until": "yesterday"}, {"until": until, "wait_s": "soon"}, {"until": until, "wait_s": 61}):
        resp = daemon.http.get(url, params=bad, headers=admin)
        assert resp.status_code == 400 and "error" in resp.json()


def test_metrics_move_with_traffic(daemon, wp):
    _publish_three(daemon, wp)
    m = _metrics(daemon)
    assert m['ragsync_webhooks_total{source="blog"}'] == 3
    assert m['ragsync_passes_total{outcome="indexed",source="blog"}'] == 3
    assert m['ragsync_backfill_total{source="blog"}'] == 3              # changed (2026-01-01) before the daemon ran
    assert m.get('ragsync_freshness_seconds_count{source="blog"}', 0) == 0
    embedded = m['ragsync_chunks_embedded_total{source="blog"}']
    assert embedded > 0 and m["ragsync_points"] == embedded and m["ragsync_qdrant_writes_total"] > 0
    assert m["ragsync_pending_keys"] == 0 and m["ragsync_queue_depth"] == 0 and m["ragsync_dead_letter_keys"] == 0
    assert m['ragsync_catch_rate{source="blog"}'] == 0

    daemon.wp_event(1)                                   # unchanged republish: everything reused
    bad = signed({"type": "post.updated", "id": 1}, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    assert daemon.http.post("/webhooks/blog", content=bad[0], headers=bad[1]).status_code == 401
    daemon.idle()
    wp.clock = datetime.now(timezone.utc)                # from here on, changes made while the daemon runs
    wp.edit(2, html=page_html(["A change the webhook never announced. " + words(9, 40)]))   # missed webhook
    daemon.http.post("/admin/reconcile", json={}, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    daemon.idle()
    m = _metrics(daemon)
    assert m['ragsync_passes_total{outcome="unchanged",source="blog"}'] == 1
    assert m['ragsync_chunks_reused_total{source="blog"}'] >= embedded / 3
    assert m['ragsync_webhooks_rejected_total{source="blog",status="401"}'] == 1
    assert m['ragsync_reconcile_caught_total{source="blog"}'] == 1
    assert m['ragsync_reconcile_last{result="updated",source="blog"}'] == 1
    assert m['ragsync_catch_rate{source="blog"}'] == pytest.approx(1 / 4)   # 1 of 4 changes came from reconcile
    assert m['ragsync_freshness_seconds_count{source="blog"}'] == 1 and m['ragsync_backfill_total{source="blog"}'] == 3
    assert m["ragsync_oldest_pending_seconds"] == 0


def test_readyz_is_false_until_the_model_is_loaded(tmp_path, wp, model_cache):
    from ragsync import config as config_mod
    from ragsync.embed import EmbeddingConfig
    from ragsync.embed import LocalEmbedder
    from ragsync.engine import Engine
    from ragsync.web import create_app

    engine = Engine(config_mod.load(write_config(tmp_path, wp_source(wp))),
                    embedder=LocalEmbedder(EmbeddingConfig(), model_cache))
    try:
        client = create_app(engine).test_client()
        assert client.get("/healthz").status_code == 200
        resp = client.get("/readyz")
        assert resp.status_code == 503 and "loading" in resp.json["error"]
        engine.embedder.load()
        assert client.get("/readyz").status_code == 200
    finally:
        engine.close()


def test_web_and_worker_as_separate_processes_on_redis(tmp_path: Path, wp, redis_url):
    port, worker_port = free_port(), free_port()
    cfg = write_config(tmp_path, wp_source(wp), f'reconcile_on_start = false\n[queue]\nredis_url = "{redis_url}"',
                       port=port)
    env = {**os.environ, SECRET_ENV: SECRET, "RAGSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "RAGSYNC_LOG_LEVEL": "DEBUG"}
    logs = {role: open(tmp_path / f"{role}.log", "w+") for role in ("web", "worker")}
    args = {"web": ["web"], "worker": ["worker", "--port", str(worker_port)]}
    procs = {role: subprocess.Popen([sys.executable, "-m", "ragsync", "--config", str(cfg), *args[role]],
                                    stdout=logs[role], stderr=logs[role], env=env) for role in ("web", "worker")}
    web = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        def up() -> bool:
            try:
                return web.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, 120, "ragsync web")
        wp.clock = datetime.now(timezone.utc)
        wp.publish(7, "Channels", page_html(["Channels send values between threads safely."]))
        raw, headers = signed({"type": "post.published", "id": 7})
        assert web.post("/webhooks/blog", content=raw, headers=headers).status_code == 202

        def indexed() -> bool:                             # the worker's JSON log says so
            logs["worker"].seek(0)
            return any(json.loads(line).get("outcome") == "indexed" for line in logs["worker"] if line.startswith("{"))
        wait_for(indexed, 120, "the worker process to index the page")
        worker = httpx.Client(base_url=f"http://127.0.0.1:{worker_port}", timeout=30)   # its own health and metrics
        assert worker.get("/healthz").json()["service"] == "ragsync"
        assert worker.get("/webhooks/blog").status_code == 404                     # nothing else on that port
        wait_for(lambda: 'ragsync_passes_total{outcome="indexed",source="blog"} 1.0' in worker.get("/metrics").text,
                 30, "the worker's /metrics to count the pass")
        scraped = worker.get("/metrics").text
        assert 'ragsync_freshness_seconds_count{source="blog"} 1.0' in scraped
        assert 'ragsync_chunks_embedded_total{source="blog"}' in scraped
        worker.close()
        logs["worker"].seek(0)
        line = next(json.loads(x) for x in logs["worker"] if '"outcome": "indexed"' in x)
        assert (line["source"], line["doc_id"], line["level"]) == ("blog", "7", "info")
        logs["web"].seek(0)
        accepted = next(json.loads(x) for x in logs["web"] if "accepted delivery" in x)
        assert (accepted["doc_id"], accepted["event_id"]) == ("7", headers["webhook-id"])
        procs["worker"].send_signal(signal.SIGTERM)
        assert procs["worker"].wait(60) == 0
        # the embedded store is free now (with a Qdrant server both would share it at once)
        hits = web.get("/search", params={"q": "send values between threads"}).json()["results"]
        assert hits and hits[0]["doc_id"] == "7"
        for log in logs.values():
            log.seek(0)
            assert SECRET not in log.read()
    finally:
        web.close()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        for log in logs.values():
            log.close()


@pytest.mark.parametrize("role", ["web", "worker"])
def test_web_or_worker_without_redis_is_a_one_line_error(role, tmp_path, wp):
    cfg = write_config(tmp_path, wp_source(wp), port=free_port())
    out = run_cli(cfg, role, timeout=120)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "redis_url" in out.stderr


def test_a_qdrant_server_beside_the_embedded_queue(qdrant_server, tmp_path: Path, wp, embedder):
    """The middle deployment (`[qdrant] url`, no Redis): one `ragsync serve` owns data_dir (the
    queue's), CLI commands go through it, the index lives on the server, and a search team
    reads the collection there with a stock LangChain store while the daemon runs."""
    from langchain_core.embeddings import FakeEmbeddings
    from langchain_qdrant import QdrantVectorStore

    from ragsync.datalock import DataLock
    from ragsync.index import embedded_root
    from ragsync.operations import Remote, connect
    from tests.support import Harness
    cfg = write_config(tmp_path, wp_source(wp), 'reconcile_on_start = false\n[qdrant]\nurl = "http://qdrant.test:6333"')
    daemon = Harness(cfg, embedder)
    try:
        wp.publish(1, "Smart pointers", page_html(["Box puts a value on the heap and owns it.", words(1, 60)]))
        wp.publish(2, "Threads", page_html(["Spawned threads run closures concurrently.", words(2, 60)]))
        for post_id in (1, 2):
            daemon.wp_event(post_id)
        daemon.idle()
        assert daemon.search("which type stores a value on the heap?", 1)[0]["doc_id"] == "1"
        lock = DataLock(daemon.config.data_dir, create=False)
        assert lock.held() and lock.announced()["url"] == daemon.url          # the queue admits one process
        assert not embedded_root(daemon.config.data_dir).exists()               # the index is the server's
        ops = connect(daemon.config)
        assert isinstance(ops, Remote)
        ops.close()

        reader = QdrantVectorStore(client=qdrant_server, collection_name="ragsync", embedding=FakeEmbeddings(size=384))
        docs = reader.similarity_search_by_vector(embedder.embed_query("which type stores a value on the heap?"), k=1)
        assert (docs[0].metadata["doc_id"], docs[0].metadata["title"]) == ("1", "Smart pointers")
        wp.delete(2)
        daemon.wp_event(2, "post.deleted")
        daemon.idle()
        assert {d.metadata["doc_id"] for d in reader.similarity_search_by_vector(
            embedder.embed_query("spawned threads"), k=10)} == {"1"}
    finally:
        daemon.close()
