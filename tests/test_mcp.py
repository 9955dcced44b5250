"""For agents and retrievers: the MCP tools driven by the official SDK's own client, over
streamable HTTP at /mcp of a real daemon (behind the search door) and over stdio from `ragsync
mcp` (with a daemon running and without one); `ragsync check` asking /mcp; and the LangChain
and LlamaIndex retrievers against a running daemon."""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ragsync import config as config_mod
from ragsync.engine import Engine
from ragsync.errors import Rejected
from tests.support import Harness, page_html, run_cli, words, wp_source, write_config

PAGES = Path(__file__).resolve().parents[1] / "config" / "demo" / "pages"      # real Rust-book chapters
QUESTION = "spawn a new thread and wait for it to finish with a join handle"
TOKEN = "mcp-search-key-0123456789abcdef"
TOOLS = {"search", "get_page", "list_sources", "index_status"}


def chapters(*slugs: str) -> list[dict]:
    """Demo pages as a CMS would hold them: the title, and the HTML body."""
    out = []
    for slug in slugs:
        text = (PAGES / f"{slug}.html").read_text(encoding="utf-8")
        title = html.unescape(re.search(r"<title>(.*?)</title>", text).group(1))
        out.append({"title": title, "html": text[text.index("<main>"):]})
    return out


def agent(url: str, token: str | None = TOKEN) -> Client:
    """The SDK's client over streamable HTTP, showing the search token as a hosted agent does."""
    http = create_mcp_http_client(headers={"authorization": f"Bearer {token}"} if token else None)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def stdio_agent(config: Path) -> Client:
    """The SDK's client running `ragsync mcp` as a desktop agent does."""
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "ragsync", "--config", str(config), "mcp"],
                                        env=dict(os.environ)))


def session(client: Client, steps: Callable[[Client], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with client as c:
            return await steps(c)
    return asyncio.run(run())


def three_pages_behind_a_key(wp, daemon_factory, monkeypatch) -> tuple[Harness, list[dict]]:
    """A daemon with a search key, holding three chapters of the Rust book (posts 1, 2, 3)."""
    monkeypatch.setenv("T_SEARCH_KEY", TOKEN)
    daemon = daemon_factory(wp_source(wp), 'search_token_env = "T_SEARCH_KEY"')
    pages = chapters("ch08-03-hash-maps", "ch16-01-threads", "ch15-01-box")
    wp.clock = datetime.now(timezone.utc)                 # changed while the daemon runs: freshness, not backfill
    for post_id, page in enumerate(pages, 1):
        wp.publish(post_id, page["title"], page["html"])
        daemon.wp_event(post_id)
    daemon.idle()
    return daemon, pages


def answer(result) -> dict:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def refusal(result) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


def test_an_agent_searches_reads_and_sees_each_change_over_http(wp, daemon_factory, monkeypatch):
    daemon, pages = three_pages_behind_a_key(wp, daemon_factory, monkeypatch)

    async def look(c: Client) -> tuple:
        tools = (await c.list_tools()).tools
        found = answer(await c.call_tool("search", {"query": QUESTION,
                                                    "limit": 3}))
        chunks = answer(await c.call_tool("search", {"query": "or_insert", "group": "chunk", "limit": 2}))
        text = answer(await c.call_tool("get_page", {"source": "blog", "doc_id": "2"}))
        return tools, found, chunks, text, answer(await c.call_tool("list_sources")), \
            answer(await c.call_tool("index_status"))

    tools, found, chunks, text, sources, status = session(agent(daemon.url), look)
    assert {t.name for t in tools} == TOOLS
    search = next(t for t in tools if t.name == "search")
    assert {"query", "limit", "source", "url_prefix", "modified_after", "modified_before", "group", "mode"} \
        <= set(search.input_schema["properties"]) and search.input_schema["required"] == ["query"]
    assert all(t.output_schema and t.annotations.read_only_hint for t in tools)
    assert found["group"] == "page" and found["results"][0]["doc_id"] == "2"
    top = found["results"][0]
    assert top["title"] == pages[1]["title"] and top["url"] and top["modified"] and top["passages"][0]["text"]
    assert len({r["doc_id"] for r in found["results"]}) == len(found["results"])      # pages, not chunks
    assert chunks["group"] == "chunk" and chunks["results"][0]["doc_id"] == "1"
    assert [s["text"] for s in text["sections"]] == daemon.doc_texts("blog", "2")       # the page, in order
    assert text["title"] == pages[1]["title"] and text["indexed_at"] and text["sections"][0]["heading_path"]
    (blog,) = sources["sources"]
    assert blog["source"] == "blog" and blog["type"] == "wordpress" and blog["pages_live"] == 3
    assert blog["last_webhook"] and blog["last_change"] and blog["freshness_p50_s"] is not None
    assert status["pending"] == 0 and status["dead"] == 0 and status["points"] > 0
    assert status["embedder"]["ready"] and status["collection"]["config_matches"]

    wp.edit(3, html=page_html(["Quokkas guard the heap allocations of every Box in this edition.", words(3, 40)]))
    daemon.wp_event(3)
    daemon.idle()
    edited = session(agent(daemon.url), lambda c: c.call_tool("search", {"query": "quokkas guard heap", "limit": 1}))
    assert answer(edited)["results"][0]["doc_id"] == "3"

    wp.delete(2)
    daemon.wp_event(2, "post.deleted")
    daemon.idle()

    async def gone(c: Client) -> tuple:
        return (answer(await c.call_tool("search", {"query": QUESTION})),
                refusal(await c.call_tool("get_page", {"source": "blog", "doc_id": "2"})))
    after, missing = session(agent(daemon.url), gone)
    assert "2" not in {r["doc_id"] for r in after["results"]}
    assert "no live page '2'" in missing


def test_mcp_is_behind_the_search_door(wp, daemon_factory, monkeypatch):
    """The token, the Host and Origin checks and the search rate limit of /search."""
    monkeypatch.setenv("T_SEARCH_KEY", TOKEN)
    daemon = daemon_factory(wp_source(wp), 'search_token_env = "T_SEARCH_KEY"\nsearch_rate_limit_per_s = 2\n'
                            'allowed_hosts = ["search.example.org"]')
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    base = {"content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2025-11-25"}
    post = lambda **headers: daemon.http.post("/mcp", json=call, headers={**base, **headers})  # noqa: E731
    assert post().status_code == 401
    assert post(authorization="Bearer wrong-key-0123456789abcdef").status_code == 401
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert post(**bearer, host="evil.example.com").status_code == 421
    assert post(**bearer, origin="https://evil.example.com").status_code == 403
    assert post(**bearer, origin="http://203.0.113.9").status_code == 403          # a page served from some address
    ok = post(**bearer, host="search.example.org", origin="https://search.example.org")
    assert ok.status_code == 200 and {t["name"] for t in ok.json()["result"]["tools"]} == TOOLS
    limited = [post(**bearer).status_code for _ in range(5)]              # a burst of 4, then 2/s
    assert 429 in limited and post(**bearer).headers.get("retry-after")
    assert TOKEN not in post().text


def test_hostile_arguments_are_tool_errors_never_a_crash(daemon, wp):
    wp.publish(1, "Vectors", page_html(["A vector stores values of one type next to each other.", words(1, 40)]))
    daemon.wp_event(1)
    daemon.idle()
    calls = [("search", {"query": "x" * 20_000}), ("search", {"query": ""}), ("search", {"query": 42}),
             ("search", {"query": "vector", "limit": 0}), ("search", {"query": "vector", "limit": "all"}),
             ("search", {"query": "vector", "source": "nope"}), ("search", {"query": "vector", "group": "site"}),
             ("search", {"query": "vector", "modified_after": "last tuesday"}), ("search", {}),
             ("get_page", {"source": "blog", "doc_id": "999"}), ("get_page", {"source": "nope", "doc_id": "1"}),
             ("get_page", {"source": ["blog"], "doc_id": {"x": 1}}), ("no_such_tool", {})]

    async def hostile(c: Client) -> tuple:
        refused = [refusal(await c.call_tool(name, args)) for name, args in calls]
        return refused, answer(await c.call_tool("search", {"query": "vector stores values"}))
    refused, still = session(agent(daemon.url, token=None), hostile)
    assert all(text and "Traceback" not in text and len(text) < 2000 for text in refused), refused
    assert "unknown source 'nope'" in refused[5] and "ISO 8601" in refused[7] and "no live page" in refused[9]
    assert still["results"][0]["doc_id"] == "1"


def test_ragsync_mcp_over_stdio_without_and_with_a_daemon(tmp_path, wp, embedder):
    wp.publish(7, "Closures", page_html(["Closures capture their environment by reference or by move.", words(7, 40)]))
    cfg = write_config(tmp_path, wp_source(wp), "reconcile_on_start = false\n")
    with Engine(config_mod.load(cfg), embedder=embedder) as engine:        # indexed, then no daemon runs
        engine.queue.add("blog", "7")
        engine.queue.drain()

    async def ask(c: Client) -> tuple:
        return (answer(await c.call_tool("search", {"query": "closures capture their environment"})),
                answer(await c.call_tool("list_sources")))
    found, sources = session(stdio_agent(cfg), ask)
    assert found["results"][0]["doc_id"] == "7" and sources["sources"][0]["last_webhook"] is None

    daemon = Harness(cfg, embedder)                # the store is free again: a daemon may start
    try:
        daemon.wp_event(7)
        daemon.idle()
        found, sources = session(stdio_agent(cfg), ask)
        assert found["results"][0]["doc_id"] == "7"
        assert sources["sources"][0]["last_webhook"]        # the daemon's own figures: it answered
    finally:
        daemon.close()


def test_the_rest_api_offers_what_the_tools_read(daemon, wp):
    """The reader operations behind the tools are plain HTTP too (for `ragsync mcp` and scripts)."""
    wp.publish(4, "Slices", page_html(["A slice borrows a contiguous run of elements.", words(4, 40)]))
    daemon.wp_event(4)
    daemon.idle()
    page = daemon.http.get("/pages/blog/4").json()
    assert [s["text"] for s in page["sections"]] == daemon.doc_texts("blog", "4")
    assert daemon.http.get("/pages/blog/5").status_code == 404
    assert daemon.http.get("/sources").json()["sources"][0]["pages_live"] == 1
    assert daemon.http.get("/index/status").json()["pending"] == 0
    assert httpx.get(f"{daemon.url}/mcp", timeout=5).status_code == 405    # stateless: no stream to hold a thread
    assert 'id="mcp"' in daemon.http.get("/").text                         # the status page names the endpoint


def test_check_asks_the_running_daemons_mcp_for_its_tools(wp, tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("T_SEARCH_KEY", TOKEN)
    cfg = write_config(tmp_path, wp_source(wp), 'search_token_env = "T_SEARCH_KEY"\nreconcile_on_start = false\n')
    before = run_cli(cfg, "check")
    assert "ok       mcp              tools search, get_page, list_sources, index_status: at http" in before.stdout, \
        before.stdout
    daemon = Harness(cfg, embedder)
    try:
        ok = run_cli(cfg, "check")
        assert f"ok       mcp              {daemon.url}/mcp answers with tools search, get_page, list_sources, " \
               "index_status" in ok.stdout, ok.stdout
        wrong = run_cli(cfg, "check", env={"T_SEARCH_KEY": "another-key-0123456789abcdef"})
        assert f"PROBLEM  mcp              {daemon.url}/mcp answered HTTP 401 without its tools (the search key" \
               in wrong.stdout and wrong.returncode == 1, wrong.stdout
    finally:
        daemon.close()


def test_langchain_and_llamaindex_retrievers_read_the_daemon_with_its_token(wp, daemon_factory, monkeypatch):
    from ragsync.langchain import RagsyncRetriever as LangChainRetriever
    from ragsync.llamaindex import RagsyncRetriever as LlamaIndexRetriever

    daemon, pages = three_pages_behind_a_key(wp, daemon_factory, monkeypatch)
    question = QUESTION

    docs = LangChainRetriever(url=daemon.url, token=TOKEN, k=3).invoke(question)
    assert len(docs) == 3 and docs[0].metadata["doc_id"] == "2" and docs[0].metadata["title"] == pages[1]["title"]
    assert {"source", "url", "modified", "heading_path", "score"} <= set(docs[0].metadata)
    assert docs[0].page_content in daemon.doc_texts("blog", "2") and docs[0].id == docs[0].metadata["id"]
    grouped = LangChainRetriever(url=daemon.url, token=TOKEN, k=3, group="page", source="blog").invoke(question)
    assert len({d.metadata["doc_id"] for d in grouped}) == len(grouped) and grouped[0].metadata["heading_paths"]
    assert LangChainRetriever(url=daemon.url, token=TOKEN, url_prefix="https://elsewhere/").invoke(question) == []
    with pytest.raises(Rejected, match="daemon answered 401: bad or missing search API key"):
        LangChainRetriever(url=daemon.url, k=3).invoke(question)

    nodes = LlamaIndexRetriever(daemon.url, token=TOKEN, k=3).retrieve(question)
    assert nodes[0].node.metadata["doc_id"] == "2" and nodes[0].score > 0 and nodes[0].node.get_content()
    pages_only = LlamaIndexRetriever(daemon.url, token=TOKEN, k=2, group="page",
                                     modified_after="2000-01-01T00:00:00Z").retrieve(question)
    assert [n.node.metadata["doc_id"] for n in pages_only][0] == "2" and len(pages_only) == 2
