"""Helpers shared by the tests and the benchmarks: signed requests, config writing, the
CLI, a daemon in this process or a child one, and the expected index. No fixtures here
(conftest.py has those), so a benchmark can import it without pytest."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from connectors.standard_webhooks import sign
from ragsync import config as config_mod
from ragsync.chunk import Chunker
from ragsync.daemon import Daemon
from ragsync.embed import Embedder
from ragsync.extract import extract
from tests.fakes import FakeWordPress

SECRET = "whsec_" + base64.b64encode(b"ragsync-test-secret-0123456789").decode()
SECRET_ENV = "RAGSYNC_TEST_SECRET"
ADMIN_TOKEN = "test-admin-token-0123456789"


def signed(body: dict | bytes, *, secret: str = SECRET, timestamp: int | None = None,
           msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret, msg_id, ts, raw)}
    return raw, headers


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll a condition (never a fixed sleep): fail with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def write_config(tmp_path: Path, sources: str, extra: str = "", port: int = 8787) -> Path:
    """`extra` goes under [server] (or opens its own tables). Polling is off unless `extra`
    sets one of its clocks: each test says which mechanism it relies on."""
    if "poll_interval_s" not in extra and "audit_interval_s" not in extra:
        off = "poll_interval_s = 0\naudit_interval_s = 0\n"
        extra = (extra.replace("[reconcile]\n", "[reconcile]\n" + off, 1) if "[reconcile]\n" in extra
                 else f"{extra}\n[reconcile]\n{off}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "ragsync.toml"
    path.write_text(f'data_dir = "var"\n[server]\nport = {port}\n{extra}\n{sources}\n', encoding="utf-8")
    return path


def wp_source(wp: FakeWordPress, name: str = "blog") -> str:
    return (f'[[sources]]\nname = "{name}"\ntype = "wordpress"\nbase_url = "{wp.url}"\n'
            f'webhook_secret_env = "{SECRET_ENV}"\n')


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


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue                              # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_main(main: Callable[[], None]) -> None:
    """A benchmark's entry point: a failed run exits at once, instead of hanging on the worker
    threads of the daemon it started."""
    try:
        main()
    except BaseException:
        traceback.print_exc()
        os._exit(1)


def run_cli(config: Path | None, *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None,
            timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """`ragsync [--config FILE] ARGS...` as a user runs it, in a child process; `env` adds to
    this environment (None removes a variable); `check` asserts that it succeeded."""
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    proc = subprocess.run([sys.executable, "-m", "ragsync", *(["--config", str(config)] if config else []), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=environ)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def reconcile_cli(config_path: Path) -> dict:
    """`ragsync reconcile --json` as a user runs it (over the daemon's admin API); its one report."""
    out = run_cli(config_path, "reconcile", "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    (report,) = json.loads(out.stdout)["reports"]
    return report


def exported(cfg: Path) -> dict[str, list[str]]:
    """doc_id → its chunk texts, sorted, from `ragsync export`."""
    out = run_cli(cfg, "export")
    assert out.returncode == 0, out.stderr
    state: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        point = json.loads(line)
        state.setdefault(point["metadata"]["doc_id"], []).append(point["page_content"])
    return {k: sorted(v) for k, v in state.items()}


def published(wp: FakeWordPress, chunker: Chunker) -> dict[str, list[str]]:
    """doc_id → the chunk texts the index should hold for what the fake WordPress publishes."""
    return {str(p.id): sorted(c.text for c in chunker.chunk(extract(p.html)))
            for p in list(wp.posts.values()) if p.status == "publish" and not p.password}


class Harness(Daemon):
    """A real ragsync daemon in this process (Flask over HTTP on a free port, consumer
    threads, the embedded store), started as `ragsync serve` starts, with test helpers."""

    def __init__(self, config_path: Path, embedder: Embedder | None, workers: int = 2, consume: bool = True) -> None:
        """`embedder` None: the engine builds the one its config names; `consume` False: no
        worker threads, so keys stay pending."""
        super().__init__(config_mod.load(config_path), embedder=embedder, port=0, workers=workers if consume else 0,
                         http_threads=8)
        self.start()
        self.http = httpx.Client(base_url=self.url, timeout=30)

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
        if self.engine is None:
            return
        self.http.close()
        self.stop()


class ServeProcess:
    """`ragsync serve` as a real child process (for kill -9, SIGTERM and CLI-over-HTTP tests)."""

    def __init__(self, config_path: Path, log_path: Path, wrap: list[str] | None = None) -> None:
        """`wrap`: a command that execs the rest of its arguments (e.g. into a memory cgroup)."""
        self.config = config_mod.load(config_path)
        self.url = self.config.base_url
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen([*(wrap or []), sys.executable, "-m", "ragsync", "--config", str(config_path),
                                      "serve"], stdout=self.log, stderr=self.log, env=os.environ.copy())
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

    def front_pid(self) -> int:
        """The front process this daemon started (it answers webhooks and /healthz)."""
        return next(pid for pid in children(self.proc.pid) if b"ragsync.front" in Path(f"/proc/{pid}/cmdline").read_bytes())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        self.close()
        return code

    def close(self) -> None:
        """Never leave a daemon behind: one still running here is killed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.http.close()
        self.log.close()
