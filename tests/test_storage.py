"""The store's layout at scale (issue 19): the `[qdrant]` storage settings take effect as
Qdrant reports them, change in place on a live index, bring an index written by an older
ragsync to the same layout, and quantized search loses nothing measurable on the corpus."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from ragsync.chunk import Chunker
from ragsync.config import StoreSettings
from ragsync.extract import extract
from ragsync.index import INDEX_KB, ClientStore, EdgeStore, PageRecord, collection_params
from tests.support import page_html, wp_source

CORPUS = Path(__file__).parent / "data" / "rust-docs-40.jsonl.gz"      # the shared corpus's first 40 pages
DEFAULT = {"on_disk": True, "quantization": "int8", "hnsw_m": 16, "hnsw_ef_construct": 100}
INDEXED = INDEX_KB * 1024 // (384 * 4) + 1500        # enough points for a segment with its graph and int8 copies


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _write(store, vectors: np.ndarray, copy: int = 0, text=lambda i: f"chunk {i}") -> list[str]:
    ids = [f"00000000-0000-4000-8000-{copy:04d}{i:08d}" for i in range(len(vectors))]
    for at in range(0, len(ids), 1000):
        store.upsert_chunks([(ids[i], vectors[i].tolist(), {"page_content": text(i), "metadata": {
            "source": "blog", "doc_id": f"{copy}-{i // 20}", "url": f"https://x.test/{copy}/{i // 20}"}})
            for i in range(at, min(at + 1000, len(ids)))])
    return ids


def _index_memory(store: EdgeStore) -> set[str]:
    """Where the engine keeps each payload index of both shards, as it reports it."""
    infos = [*store._chunks.info().payload_schema.values(), *store._pages.info().payload_schema.values()]
    return {str(getattr(i.params, "memory", None) or "default").removeprefix("Memory.") for i in infos}


def test_the_default_layout_is_what_qdrant_reports(tmp_path):
    store = EdgeStore(tmp_path / "s", 384)
    try:
        _write(store, _unit(np.random.default_rng(1).standard_normal((INDEXED, 384))))
        store.optimize()
        layout = store.layout()
        assert (layout["points"], layout["indexed"]) == (INDEXED, INDEXED)
        assert layout["applied"] == [DEFAULT]
        assert _index_memory(store) == {"Cold"}                        # payload indexes memory-mapped too
    finally:
        store.close()


def test_settings_change_in_place_on_a_live_index(tmp_path):
    vectors = _unit(np.random.default_rng(2).standard_normal((INDEXED, 384)))
    store = EdgeStore(tmp_path / "s", 384)
    ids = _write(store, vectors)
    store.close()
    changed = StoreSettings(on_disk=False, quantization="none", hnsw_m=8, hnsw_ef_construct=64)
    store = EdgeStore(tmp_path / "s", 384, changed)                 # opening applies them: no reindex
    try:
        layout = store.layout()
        assert layout["applied"] == [{"on_disk": False, "quantization": "none", "hnsw_m": 8, "hnsw_ef_construct": 64}]
        assert layout["points"] == layout["indexed"] == INDEXED
        assert _index_memory(store) == {"default"}
        assert store.search(vectors[7].tolist(), 1)[0].id == ids[7]
    finally:
        store.close()


def test_an_index_written_by_the_previous_layout_opens_and_converges(tmp_path):
    """What ragsync wrote before these settings existed: the engine's defaults, never optimized
    (every point in RAM, in plain segments)."""
    import qdrant_edge as qe
    root = tmp_path / "old"
    shards = {name: qe.EdgeShard.create(str(root / name), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))) for name, dim in (("chunks", 384), ("pages", 1))}
    vectors = _unit(np.random.default_rng(3).standard_normal((INDEXED, 384)))
    for at in range(0, INDEXED, 1000):
        shards["chunks"].update(qe.UpdateOperation.upsert_points([qe.Point(
            i, vectors[i].tolist(), {"page_content": f"chunk {i}", "metadata": {"source": "blog", "doc_id": str(i // 20)}})
            for i in range(at, min(at + 1000, INDEXED))]))
    record = PageRecord("blog", "0", "live", "2026-01-01T00:00:00Z", live_ids=[str(i) for i in range(20)])
    shards["pages"].update(qe.UpdateOperation.upsert_points([qe.Point(record.point_id, [1.0], record.__dict__)]))
    for shard in shards.values():
        shard.flush()
        shard.close()

    store = EdgeStore(root, 384)
    try:
        layout = store.layout()
        assert layout["applied"] == [DEFAULT] and layout["points"] == layout["indexed"] == INDEXED
        assert store.page("blog", "0") == record and len(store.doc_chunks("blog", "0")) == 20
        assert store.search(vectors[42].tolist(), 1)[0].id == "42"
    finally:
        store.close()


@pytest.fixture(scope="module")
def corpus_vectors(embedder) -> tuple[list[str], np.ndarray]:
    """The chunks of the first 40 corpus pages, embedded by the real model."""
    chunker = Chunker(embedder.tokenizer_file, 200)
    rows = [json.loads(line) for line in gzip.decompress(CORPUS.read_bytes()).decode("utf-8").splitlines()]
    texts = [c.embed_text for row in rows for c in chunker.chunk(extract(row["html"]))]
    return texts, np.asarray(embedder.embed(texts), dtype=np.float32)


def test_quantized_search_returns_the_exact_top_hit_on_the_corpus(tmp_path, embedder, corpus_vectors):
    """Copies of the corpus chunks, each nudged a little, give near-ties that int8 alone would
    misorder; rescoring from the original vectors must keep the exact top hit."""
    texts, vectors = corpus_vectors
    noise = np.random.default_rng(4)
    store = EdgeStore(tmp_path / "q", embedder.dim)
    try:
        copies = -(-INDEXED // len(texts))
        for copy in range(copies):
            _write(store, _unit(vectors + noise.normal(0, 0.02, vectors.shape)), copy, lambda i: texts[i])
        store.optimize()
        assert store.layout()["applied"] == [DEFAULT]
        queries = [" ".join(t.split("\n\n", 1)[-1].split()[:10]) for t in texts[::len(texts) // 50]][:50]
        same = recall = 0
        for q in queries:
            v = embedder.embed_query(q)
            quantized, exact = store.search(v, 10), store.search(v, 10, exact=True)
            same += abs(quantized[0].score - exact[0].score) < 1e-6        # that hit, or one tied with it
            recall += sum(h.score >= exact[-1].score - 1e-6 for h in quantized)
        assert same == len(queries)
        assert recall / (10 * len(queries)) >= 0.95
    finally:
        store.close()


def test_a_server_collection_gets_the_same_layout(tmp_path):
    """The create-collection arguments a server gets (qdrant-client's local mode keeps only the
    vector parameters, so the rest is checked as sent)."""
    chunks, pages = collection_params(StoreSettings(), 384), collection_params(StoreSettings(), 1, graph=False)
    assert chunks["vectors_config"].on_disk and chunks["on_disk_payload"]
    assert (chunks["hnsw_config"].m, chunks["hnsw_config"].ef_construct, chunks["hnsw_config"].on_disk) == (16, 100, True)
    scalar = chunks["quantization_config"].scalar
    assert (scalar.type.value, scalar.always_ram) == ("int8", True)
    assert pages["hnsw_config"].m == 0 and pages["quantization_config"] is None
    assert collection_params(StoreSettings(quantization="none"), 384)["quantization_config"] is None

    for on_disk in (True, False):
        store = ClientStore(QdrantClient(path=str(tmp_path / f"local-{on_disk}")), "ragsync", 384,
                            settings=StoreSettings(on_disk=on_disk))
        try:
            assert store.layout()["applied"][0]["on_disk"] is on_disk
        finally:
            store.close()


def test_a_daemon_restarted_with_other_store_settings_keeps_its_index(daemon_factory, wp):
    """Store settings are not the vectors: no fingerprint refusal, no reindex, nothing re-embedded."""
    wp.publish(1, "Traits", page_html(["Traits define shared behavior in an abstract way.", "Generics come next."]))
    first = daemon_factory(wp_source(wp))
    first.wp_event(1)
    first.idle()
    first.close()
    second = daemon_factory(wp_source(wp), '[qdrant]\non_disk = false\nquantization = "none"\nhnsw_m = 8\n')
    assert second.engine.config.store == StoreSettings(on_disk=False, quantization="none", hnsw_m=8)
    hits = second.search("shared behavior")
    assert hits and hits[0]["doc_id"] == "1"
    assert second.engine.store.writes == 0 and second.engine.snapshot().collection["config_matches"]
