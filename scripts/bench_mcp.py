"""MCP benchmark: prints numbers (not a test). Run through `scripts/bench-mcp`.

A real daemon (`Daemon`, as `ragsync serve` starts it, search token set) over the shared corpus
(a `files` source, indexed by ragsync itself). The same questions go, interleaved, to
- GET /search?group=page (httpx, keep-alive): the baseline, measured in the same run;
- the MCP `search` tool through the official SDK's client (one streamable HTTP session);
- the same tool call as one raw JSON-RPC POST to /mcp (httpx): the transport without the client;
and one page is read by GET /pages/... and by the `get_page` tool. Latency p50/p95 per way and
its ratio to the plain request.
"""

from __future__ import annotations

import argparse
import asyncio
import html as html_mod
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.bench_search import CORPUS, QUESTIONS  # noqa: E402
from tests.support import free_port, run_main  # noqa: E402

TOKEN = "bench-search-key-0123456789abcdef"


def serve(folder: Path):
    """A daemon over the corpus, indexed before it starts."""
    from ragsync import config as config_mod
    from ragsync import reconcile
    from ragsync.daemon import Daemon
    from ragsync.engine import Engine
    pages = folder / "pages"
    pages.mkdir(parents=True)
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        page = json.loads(line)
        (pages / f"{page['slug']}.html").write_text(f"<html><head><title>{html_mod.escape(page['title'])}</title>"
                                                    f"</head><body>{page['html']}</body></html>", encoding="utf-8")
    cfg = folder / "ragsync.toml"
    cfg.write_text(f'data_dir = "var"\n[server]\nport = {free_port()}\nreconcile_on_start = false\n'
                   'search_token_env = "BENCH_SEARCH_KEY"\nsearch_rate_limit_per_s = 0\n'
                   '[reconcile]\npoll_interval_s = 0\naudit_interval_s = 0\nmax_delete_share = 1.0\n'
                   '[[sources]]\nname = "docs"\ntype = "files"\npath = "pages"\nwebhook_secret_env = "BENCH_SECRET"\n')
    os.environ.update(BENCH_SEARCH_KEY=TOKEN, BENCH_SECRET="whsec_" + "QmVuY2hTZWNyZXQwMTIzNDU2Nzg5MDEyMzQ1Njc4OQ==")
    config = config_mod.load(cfg)
    with Engine(config) as engine:
        (report,) = reconcile.run(engine, ["docs"], standalone=True, force=True)
        assert not report.errors, report.errors
    daemon = Daemon(config, port=None, workers=1)
    daemon.start()
    return daemon


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    import httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    bearer = {"authorization": f"Bearer {TOKEN}"}
    rpc = {**bearer, "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    times: dict[str, list[float]] = {k: [] for k in ("/search", "mcp tool (SDK client)", "mcp raw POST",
                                                     "/pages", "get_page tool")}
    questions = [q for q, _ in QUESTIONS]
    with httpx.Client(base_url=url, timeout=60) as http:
        async with Client(streamable_http_client(f"{url}/mcp", http_client=create_mcp_http_client(headers=bearer))) as c:
            async def tool(query: str) -> None:
                result = await c.call_tool("search", {"query": query, "limit": 10})
                assert not result.is_error, result.content

            def plain(query: str) -> None:
                resp = http.get("/search", params={"q": query, "limit": 10, "group": "page"}, headers=bearer)
                assert resp.status_code == 200, resp.text

            def raw(query: str) -> None:
                call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "search", "arguments": {"query": query, "limit": 10}}}
                resp = http.post("/mcp", json=call, headers=rpc)
                assert resp.status_code == 200 and "error" not in resp.json(), resp.text

            for q in questions[:3]:                              # warm: the model, the store, the loop
                plain(q)
                await tool(q)
                raw(q)
            for r in range(rounds):
                for i, q in enumerate(questions):
                    ways = [("/search", lambda: plain(q)), ("mcp raw POST", lambda: raw(q))]
                    for name, call in (ways if (r + i) % 2 else ways[::-1]):
                        started = time.perf_counter()
                        call()
                        times[name].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await tool(q)
                    times["mcp tool (SDK client)"].append(time.perf_counter() - started)
                for _ in range(5):
                    started = time.perf_counter()
                    assert http.get("/pages/docs/ch08-03-hash-maps", headers=bearer).status_code == 200
                    times["/pages"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    page = await c.call_tool("get_page", {"source": "docs", "doc_id": "ch08-03-hash-maps"})
                    assert not page.is_error, page.content
                    times["get_page tool"].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="passes over the questions (default 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        daemon = serve(Path(tmp))
        print(f"indexed {CORPUS.name} and started the daemon in {time.perf_counter() - started:.0f} s; "
              f"{os.cpu_count()} CPUs")
        try:
            times = asyncio.run(measure(daemon.url, args.rounds))
        finally:
            daemon.stop()
    base = {"/search": statistics.median(times["/search"]), "/pages": statistics.median(times["/pages"])}
    print(f"\n{'way':<24}{'calls':>7}{'p50 ms':>9}{'p95 ms':>9}{'× plain':>9}")
    for name, values in times.items():
        values.sort()
        p50, p95 = statistics.median(values), values[int(0.95 * (len(values) - 1))]
        plain = base["/pages"] if name in ("/pages", "get_page tool") else base["/search"]
        print(f"{name:<24}{len(values):>7}{1000 * p50:>9.1f}{1000 * p95:>9.1f}{p50 / plain:>9.2f}")


if __name__ == "__main__":
    run_main(main)
