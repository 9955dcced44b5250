"""Hostile input against real parts: header floods and stalled clients against a real
`ragsync serve`, the start race between the daemon and a CLI command, a server that
impersonates the daemon, search limits, 503 bodies without internals, CMS answers that
decompress without end, malformed listings, and pathological headings and titles."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from connectors.wordpress import strip_tags
from ragsync import reconcile
from ragsync.datalock import DataLock
from ragsync.errors import FetchError, StoreError
from ragsync.extract import extract
from tests.support import SECRET_ENV, ServeProcess, free_port, page_html, run_cli, wait_for, wp_source

DEMO_PAGE = Path(__file__).resolve().parent.parent / "config" / "demo" / "pages" / "ch04-01-what-is-ownership.html"


def files_config(tmp_path: Path, extra: str = "") -> Path:
    pages = tmp_path / "pages"
    pages.mkdir(exist_ok=True)
    (pages / "ownership.html").write_text(DEMO_PAGE.read_text())
    cfg = tmp_path / "ragsync.toml"
    cfg.write_text(f'data_dir = "var"\n[server]\nport = {free_port()}\nhttp_threads = 16\n{extra}\n'
                   f'[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\nwebhook_secret_env = "{SECRET_ENV}"\n')
    return cfg


def test_header_flood_and_stalled_clients_do_not_take_the_daemon_down(tmp_path):
    daemon = ServeProcess(files_config(tmp_path), tmp_path / "serve.log")
    try:
        host, port = "127.0.0.1", int(daemon.url.rsplit(":", 1)[1])
        flood = socket.create_connection((host, port))
        flood.sendall(b"POST /webhooks/docs HTTP/1.1\r\nHost: x\r\n")
        sent = 0
        try:
            while sent < 8 * 1024 * 1024:                  # an endless header, 8 MiB of it
                flood.sendall(b"X-Junk: " + b"a" * 1000 + b"\r\n")
                sent += 1010
        except OSError:
            pass                                            # the server closed it: the point
        answer = flood.recv(200)
        assert sent < 8 * 1024 * 1024 or answer.startswith(b"HTTP/1.1 413"), answer
        flood.close()

        stalled = []
        for _ in range(20):                                 # more stalled clients than HTTP threads
            s = socket.create_connection((host, port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # ... and never finish the request
            stalled.append(s)
        def answers() -> bool:
            try:
                return httpx.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(answers, 30, "the daemon to answer again past the stalled clients")
        for s in stalled:
            s.close()
        assert daemon.proc.poll() is None
    finally:
        daemon.close()


def test_a_starting_daemon_waits_for_a_cli_command_that_holds_the_store(tmp_path):
    cfg = files_config(tmp_path)
    lock = DataLock(tmp_path / "var")                      # what a standalone CLI command holds
    assert lock.try_acquire()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "ragsync", "--config", str(cfg), "serve"],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "waiting up to" in log.read_text(), 60, "the daemon to say it waits")
        assert proc.poll() is None                          # waiting, not exited
        lock.release()
        wait_for(lambda: run_cli(cfg, "status", "--json").returncode == 0, 180, "the daemon to serve status")
        status = json.loads(run_cli(cfg, "status", "--json").stdout)
        assert status["daemon"] is not None                 # over HTTP: the daemon holds the store
    finally:
        proc.terminate()
        proc.wait(60)


class _Impostor(BaseHTTPRequestHandler):
    """Answers /healthz like ragsync on the configured port and records what it was sent."""
    seen: list[dict] = []

    def do_GET(self):
        _Impostor.seen.append(dict(self.headers))
        body = json.dumps({"status": "ok", "service": "ragsync"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_cli_never_sends_the_admin_token_to_another_server_on_the_port(tmp_path):
    cfg = files_config(tmp_path)
    port = int(cfg.read_text().split("port = ")[1].split("\n")[0])
    server = ThreadingHTTPServer(("127.0.0.1", port), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = run_cli(cfg, "dlq", "replay")                # an admin command, with the token in the env
        assert out.returncode == 0 and out.stdout.startswith("replay: 0 key(s)"), out.stderr   # it opened the store itself
        assert not any("Authorization" in h or "authorization" in h for h in _Impostor.seen)
    finally:
        server.shutdown()


def test_search_caps_the_query_and_has_its_own_rate_limit(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), "search_rate_limit_per_s = 1")     # goes under [server]
    resp = daemon.http.get("/search", params={"q": "x" * 1001})
    assert resp.status_code == 400 and "1000" in resp.json()["error"]
    codes = [daemon.http.get("/search", params={"q": "ownership"}).status_code for _ in range(3)]
    assert codes == [200, 429, 429]                        # a burst of 2 (the long query took one)


def test_a_503_body_carries_no_internals(daemon_factory, wp, monkeypatch, tmp_path):
    daemon = daemon_factory(wp_source(wp))
    secret_path = str(daemon.config.data_dir)

    def broken(*args, **kwargs):
        raise StoreError(f"Qdrant: Can't init WAL in {secret_path}/qdrant: WouldBlock")
    monkeypatch.setattr(daemon.engine.store, "search", broken)
    resp = daemon.http.get("/search", params={"q": "ownership"})
    assert resp.status_code == 503 and resp.json() == {"error": "the index is unavailable, retry later"}
    assert secret_path not in resp.text and "WAL" not in resp.text


def test_a_cms_answer_that_decompresses_without_end_is_refused(daemon_factory, wp, monkeypatch):
    """4 KB of gzip can be megabytes of HTML: the read stops at the cap, the pass parks."""
    import connectors.base as base
    monkeypatch.setattr(base, "MAX_ANSWER_BYTES", 1024 * 1024)
    bomb = gzip.compress(b"<p>" + b"a" * (4 * 1024 * 1024) + b"</p>")
    assert len(bomb) < 16 * 1024

    class Bomb(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        daemon = daemon_factory(f'[[sources]]\nname = "blog"\ntype = "wordpress"\n'
                                f'base_url = "http://127.0.0.1:{server.server_port}"\nwebhook_secret_env = "{SECRET_ENV}"\n',
                                consume=False)
        with pytest.raises(FetchError, match="larger than 1 MiB"):
            daemon.engine.connectors["blog"].fetch("1")
    finally:
        server.shutdown()


class _Malformed(BaseHTTPRequestHandler):
    """A "WordPress" whose listing entries have no id."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'[{"no_id": 1, "modified_gmt": "2026-01-01T00:00:00"}]')

    def log_message(self, *args):
        pass


def test_a_malformed_listing_fails_its_source_only(daemon_factory, wp):
    broken = ThreadingHTTPServer(("127.0.0.1", 0), _Malformed)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        daemon = daemon_factory(f'[[sources]]\nname = "broken"\ntype = "wordpress"\n'
                                f'base_url = "http://127.0.0.1:{broken.server_port}"\n'
                                f'webhook_secret_env = "{SECRET_ENV}"\n' + wp_source(wp))
        wp.publish(1, "Fine", page_html(["The second source is still reconciled."]))
        bad, good = reconcile.run(daemon.engine, ["broken", "blog"])
        assert bad.errors and "malformed listing" in bad.errors[0] and not bad.tombstoned
        assert good.added == ["1"] and not good.errors
    finally:
        broken.shutdown()


def test_pathological_headings_and_titles_stay_linear():
    started = time.perf_counter()
    blocks = extract("<h2>Install " + "#" * 200_000 + " now</h2><p>Body text.</p>")
    title = strip_tags("<" * 200_000 + "b>Title")
    elapsed = time.perf_counter() - started
    assert blocks[0].text == "Body text." and title.endswith("Title")
    assert elapsed < 5, f"{elapsed:.1f}s: the quadratic regexes took minutes here"


def test_the_extractor_reads_broken_and_deep_markup_as_a_tree():
    """Stray end tags, unclosed items and cells, a heading 5,000 elements deep (its script and
    ruby annotation not read into it), a comment inside code, text under 20,000 nested divs
    (lxml's own tree stops at 256 levels: the extractor walks the parser's events instead)."""
    html = ("</p></h2><h2>Guide <script>x()</script><ruby>漢<rt>kan</rt></ruby>"
            + "<span>" * 5000 + "deep" + "</span>" * 5000 + "</h2>"
            + "<p>Intro<ul><li>one<li>two</ul><table><tr><td>a<td>b</table></div><pre>code <!-- c -->here</pre>"
            + "<div>" * 20000 + "<p>Deep text.</p>")
    assert [(b.path, b.kind, b.text) for b in extract(html)] == [
        (("Guide 漢 deep",), kind, text) for kind, text in
        [("text", "Intro"), ("item", "one"), ("item", "two"), ("text", "a | b"), ("code", "code here"),
         ("text", "Deep text.")]]


def test_an_example_token_or_a_malformed_whsec_secret_stops_the_daemon_at_start(tmp_path, monkeypatch):
    cfg = files_config(tmp_path)
    monkeypatch.setenv("RAGSYNC_ADMIN_TOKEN", "change-me-admin")         # copied from an example file
    out = run_cli(cfg, "serve")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "example value" in out.stderr
    monkeypatch.setenv("RAGSYNC_ADMIN_TOKEN", "a-real-admin-token-0123456789")
    monkeypatch.setenv(SECRET_ENV, "whsec_not*base64!")
    out = run_cli(cfg, "serve")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "not valid base64" in out.stderr, out.stderr
