"""Shared fixtures: the real model (loaded once), a fake WordPress over HTTP, a real
redis-server, and a real ragsync daemon (Flask on cheroot over HTTP + huey consumer threads +
embedded Qdrant) per test. The helpers they use live in tests/support.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ragsync.embed import Embedder, EmbeddingConfig, LocalEmbedder
from tests.fakes import FakeWordPress
from tests.support import ADMIN_TOKEN, SECRET, SECRET_ENV, Harness, free_port, wait_for, wp_source, write_config


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Iterator[Path]:
    """One ONNX export for the whole run, daemons in child processes included."""
    path = tmp_path_factory.mktemp("models")
    saved = os.environ.get("RAGSYNC_MODEL_CACHE")
    os.environ["RAGSYNC_MODEL_CACHE"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("RAGSYNC_MODEL_CACHE", None)
    else:
        os.environ["RAGSYNC_MODEL_CACHE"] = saved


@pytest.fixture(scope="session")
def embedder(model_cache: Path) -> Embedder:
    emb = LocalEmbedder(EmbeddingConfig(), model_cache)
    emb.load()                                  # load once for the whole session
    return emb


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("RAGSYNC_ADMIN_TOKEN", ADMIN_TOKEN)


@pytest.fixture
def wp() -> Iterator[FakeWordPress]:
    fake = FakeWordPress()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server for the tests about Redis (server mode)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test installs it with apt-get where it can)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)

    def up() -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False
    wait_for(up, 20, "redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def daemon_factory(tmp_path: Path, embedder: Embedder) -> Iterator[Callable[..., Harness]]:
    """Daemons started as `ragsync serve` starts, sharing the session's model; no startup
    reconcile unless the test's config asks for one (each test says what it sends)."""
    made: list[Harness] = []

    def make(sources: str, extra: str = "", embedder_from_config: bool = False, **kwargs) -> Harness:
        if "reconcile_on_start" not in extra:
            extra = "reconcile_on_start = false\n" + extra
        d = Harness(write_config(tmp_path, sources, extra), None if embedder_from_config else embedder, **kwargs)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon(wp: FakeWordPress, daemon_factory) -> Harness:
    return daemon_factory(wp_source(wp))


@pytest.fixture
def qdrant_server(tmp_path: Path, monkeypatch) -> Iterator[Any]:
    """qdrant-client's local mode standing in for `[qdrant] url` (no server binary here): one
    client, shared by everything in this process that asks for the server."""
    from qdrant_client import QdrantClient

    from ragsync import index
    client = QdrantClient(path=str(tmp_path / "qdrant-server"))
    close = client.close
    monkeypatch.setattr(client, "close", lambda **_: None)
    monkeypatch.setattr(index, "server_client", lambda config, **_: client)
    yield client
    close()
