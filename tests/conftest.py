"""Shared fixtures: the real model (loaded once), a fake WordPress over HTTP, and a real
ragsync daemon (Flask on cheroot over HTTP + huey consumer threads + embedded Qdrant) per test."""

from __future__ import annotations

import shutil
import subprocess
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ragsync import config as config_mod
from ragsync.daemon import http_server
from ragsync.config import EmbeddingConfig
from ragsync.embed import Embedder, LocalEmbedder
from ragsync.engine import Engine
from ragsync.web import create_app
from tests.fakes import FakeWordPress
from tests.support import ADMIN_TOKEN, SECRET, SECRET_ENV, signed, wait_for  # noqa: F401 (re-exported)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Iterator[Path]:
    """One ONNX export for the whole run, daemons in child processes included."""
    import os
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


def write_config(tmp_path: Path, sources: str, extra: str = "", port: int = 8787) -> Path:
    path = tmp_path / "ragsync.toml"
    path.write_text(f'data_dir = "var"\n[server]\nport = {port}\n{extra}\n{sources}\n', encoding="utf-8")
    return path


def wp_source(wp: FakeWordPress, name: str = "blog") -> str:
    return (f'[[sources]]\nname = "{name}"\ntype = "wordpress"\nbase_url = "{wp.url}"\n'
            f'webhook_secret_env = "{SECRET_ENV}"\n')


class Daemon:
    """A real ragsync in this process: Flask over HTTP, consumer threads, embedded Qdrant."""

    def __init__(self, config_path: Path, embedder: Embedder | None, workers: int = 2, consume: bool = True) -> None:
        """`embedder` None: the engine builds the one its config names."""
        self.config = config_mod.load(config_path)
        self.engine = Engine(self.config, embedder=embedder)
        self.engine.embedder.load()
        self.server = http_server(create_app(self.engine), "127.0.0.1", 0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.bind_addr[1]}"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()
        self.http = httpx.Client(base_url=self.url, timeout=30)
        if consume:
            self.engine.queue.start(workers)

    def webhook(self, source: str, body: dict | bytes, **kwargs) -> httpx.Response:
        raw, headers = signed(body, **kwargs)
        return self.http.post(f"/webhooks/{source}", content=raw, headers=headers)

    def wp_event(self, post_id: int, type_: str = "post.updated", post_type: str = "post",
                 source: str = "blog") -> httpx.Response:
        resp = self.webhook(source, {"type": type_, "id": post_id, "post_type": post_type})
        assert resp.status_code == 202, resp.text
        return resp

    def idle(self, timeout: float = 120.0) -> None:
        wait_for(lambda: not self.engine.queue.pending(), timeout, "the queue to drain")

    def search(self, q: str, limit: int = 10, **params) -> list[dict]:
        resp = self.http.get("/search", params={"q": q, "limit": limit, **params})
        assert resp.status_code == 200, resp.text
        return resp.json()["results"]

    def doc_texts(self, source: str, doc_id: str) -> list[str]:
        """The chunk texts Qdrant holds for a page, in page order."""
        points = self.engine.store.doc_chunks(source, doc_id).values()
        return [p["page_content"] for p in sorted(points, key=lambda p: p["metadata"]["chunk_index"])]

    def close(self) -> None:
        if self.http.is_closed:
            return
        self.server.stop()
        self.http.close()
        self.engine.close()


@pytest.fixture
def daemon_factory(tmp_path: Path, embedder: Embedder) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(sources: str, extra: str = "", embedder_from_config: bool = False, **kwargs) -> Daemon:
        d = Daemon(write_config(tmp_path, sources, extra), None if embedder_from_config else embedder, **kwargs)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon(wp: FakeWordPress, daemon_factory) -> Daemon:
    return daemon_factory(wp_source(wp))


def page_html(paragraphs: list[str], title: str = "Guide") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<h1>{title}</h1><h2>Part one</h2>{body}"


def words(seed: int, n: int) -> str:
    """Deterministic English-ish filler text (distinct per seed) for long pages."""
    vocab = ("cargo crate build module trait borrow lifetime vector iterator closure thread channel "
             "mutex ownership reference slice string option result error panic macro test feature "
             "workspace registry publish version manifest profile target compile link").split()
    out, x = [], seed * 7919 + 13
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out.append(vocab[x % len(vocab)])
    return " ".join(out).capitalize() + "."


def reconcile_cli(config_path: Path) -> dict:
    """`ragsync reconcile --json` as a user runs it (over the daemon's admin API); its one report."""
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "ragsync", "--config", str(config_path), "reconcile", "--json"],
                         capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert out.returncode == 0, out.stderr + out.stdout
    (report,) = json.loads(out.stdout)["reports"]
    return report


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`ragsync serve` as a real child process (for kill -9, SIGTERM and CLI-over-HTTP tests)."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        import os
        import subprocess
        import sys
        self.config = config_mod.load(config_path)
        self.url = self.config.base_url
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "ragsync", "--config", str(config_path), "serve"],
                                     stdout=self.log, stderr=self.log, env=os.environ.copy())
        self.http = httpx.Client(base_url=self.url, timeout=30)
        wait_for(self._ready, 180, f"ragsync serve on {self.url}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"ragsync serve exited with {self.proc.returncode}")
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def admin(self, path: str) -> dict:
        return self.http.get(path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()

    def idle(self, timeout: float = 180) -> None:
        wait_for(lambda: self.admin("/admin/status")["pending"] == 0, timeout, "the daemon's queue to drain")

    def texts(self) -> dict[str, str]:
        """doc_id → all its chunk text, from the daemon's own export."""
        out: dict[str, str] = {}
        resp = self.http.get("/admin/export", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        for line in resp.text.splitlines():
            point = json.loads(line)
            doc = point["metadata"]["doc_id"]
            out[doc] = out.get(doc, "") + " " + point["page_content"]
        return out

    def eventually(self, check: Callable[[dict[str, str]], bool], what: str, timeout: float = 15) -> None:
        """Poll the index (doc_id → text) until `check` holds: a real CMS delivers asynchronously."""
        wait_for(lambda: check(self.texts()), timeout, what)

    def webhook(self, source: str, body: dict) -> httpx.Response:
        raw, headers = signed(body)
        return self.http.post(f"/webhooks/{source}", content=raw, headers=headers)

    def kill(self) -> None:
        import signal
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.close()

    def stop(self) -> int:
        import signal
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self.close()
        return code

    def close(self) -> None:
        self.http.close()
        self.log.close()
