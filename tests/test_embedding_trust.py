"""An embedding server is trusted no further than its answer checks out: an endless body costs
bounded memory and time, NaN, string or missing vectors are a transient fault (the page waits,
nothing bad is stored, search answers 503), and credentials in its URL are never shown."""

from __future__ import annotations

import resource
import time

import pytest

from ragsync.embed import EmbedderUnavailable, EmbeddingConfig, OpenAIEmbedder
from tests.fakes import FakeEmbeddingServer
from tests.support import run_cli, page_html, wait_for, words, wp_source


@pytest.fixture
def server():
    fake = FakeEmbeddingServer()
    yield fake
    fake.close()


def embedder(url: str, **settings) -> OpenAIEmbedder:
    return OpenAIEmbedder(EmbeddingConfig(provider="openai", url=url, model="fake", **settings))


def test_an_endless_answer_costs_bounded_memory_and_time(server):
    server.mode = "endless"
    emb = embedder(f"http://127.0.0.1:{server.port}/v1", timeout_s=5)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable):
        emb.embed(["one text"] * 4)
    assert time.monotonic() - started < 20                     # 4 tries, each cut at the cap
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"{grown_mb:.0f} MB for an endless answer"
    emb.close()


@pytest.mark.parametrize("mode", ["nan", "strings", "short"])
def test_a_bad_vector_is_a_transient_fault_never_stored(mode, server):
    emb = embedder(f"http://127.0.0.1:{server.port}/v1")
    assert emb.dim == 384
    server.mode = mode
    with pytest.raises(EmbedderUnavailable, match="vectors"):
        emb.embed(["a", "b", "c"])
    server.mode = "good"
    assert len(emb.embed(["a", "b", "c"])) == 3
    emb.close()


def test_a_page_waits_while_the_server_answers_nan_and_search_is_a_503(server, daemon_factory, wp):
    url = f"http://127.0.0.1:{server.port}/v1"
    daemon = daemon_factory(wp_source(wp), f'[embedding]\nprovider = "openai"\nurl = "{url}"\nmodel = "fake"\n'
                                           "[queue]\nbackoff_base_s = 0.1\nbackoff_max_s = 0.5",
                            embedder_from_config=True)
    wp.publish(1, "Crabs", page_html([words(1, 40)]))
    server.mode = "strings"
    daemon.wp_event(1, "post.published")
    wait_for(lambda: server.requests > 6, 30, "the pass to try a few times")
    assert daemon.http.get("/search", params={"q": "crabs"}).status_code == 503
    page = daemon.engine.store.page("blog", "1")
    assert page is None or page.state != "live"                 # nothing recorded live with bad vectors
    assert not daemon.engine.queue.dead()                       # waiting, never parked
    server.mode = "good"
    daemon.idle()
    assert daemon.engine.store.page("blog", "1").state == "live"
    assert daemon.search("crabs")                               # and it is found


def test_credentials_in_the_embedding_url_are_never_shown(server, daemon_factory, wp, tmp_path, caplog):
    url = f"http://ragsync:s3cret-pw@127.0.0.1:{server.port}/v1"
    daemon = daemon_factory(wp_source(wp), f'[embedding]\nprovider = "openai"\nurl = "{url}"\nmodel = "fake"\n',
                            embedder_from_config=True)
    server.mode = "down"
    assert daemon.http.get("/search", params={"q": "crabs"}).status_code == 503
    ready = daemon.http.get("/readyz")
    assert ready.status_code == 503 and "***@127.0.0.1" in ready.text
    seen = ready.text + daemon.http.get("/").text + caplog.text
    checked = run_cli(tmp_path / "ragsync.toml", "check")
    assert "***@127.0.0.1" in checked.stdout + checked.stderr
    assert "s3cret" not in seen + checked.stdout + checked.stderr


def test_after_a_reindex_to_another_model_the_embed_metrics_follow_and_the_old_embedder_is_closed(
        server, daemon_factory, wp, tmp_path):
    from ragsync import reindex
    url = f"http://127.0.0.1:{server.port}/v1"
    daemon = daemon_factory(wp_source(wp), f'[embedding]\nprovider = "openai"\nurl = "{url}"\nmodel = "fake-a"\n',
                            embedder_from_config=True)
    before = daemon.engine.embedder
    cfg = tmp_path / "ragsync.toml"
    cfg.write_text(cfg.read_text().replace('model = "fake-a"', 'model = "fake-b"'))
    reindex.run(daemon.engine, drop_old=True)
    assert daemon.engine.embedder is not before and before._pool._shutdown   # the old one let go of its threads

    def texts() -> float:
        lines = [line for line in daemon.http.get("/metrics").text.splitlines()
                 if line.startswith('ragsync_embed_texts_total{provider="openai"}')]
        return float(lines[0].split()[-1]) if lines else 0.0
    counted = texts()
    wp.publish(1, "Crabs", page_html([words(1, 40)]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    assert texts() > counted
