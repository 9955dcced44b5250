"""The MCP server: four read-only tools — search, get_page, list_sources, index_status — over
the operations layer, so an agent gets what /search and the CLI give, never a second
implementation. The official SDK (`mcp`, MCPServer) writes the protocol, the JSON schemas
(from the models below) and the tool errors.

Two doors. The daemon mounts the SDK's streamable HTTP app at /mcp (`Bridge`): a2wsgi runs
that ASGI app on one event loop thread inside the WSGI server, so MCP shares the port and the
door of /search (search token, rate limit, Host and Origin checks); it is stateless, so any web
process of a server-mode deployment can answer any request. `ragsync mcp` serves the same
tools over stdio (`stdio()`), asking the running daemon over HTTP like the other commands, or
opening the store itself for one call at a time when none runs (a daemon may start meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from a2wsgi import ASGIMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from ragsync import __version__
from ragsync.config import MODES, Config
from ragsync.embed import open_embedder
from ragsync.errors import RagsyncError, Rejected
from ragsync.operations import MAX_LIMIT, MAX_QUERY_CHARS, Operations, connect

log = logging.getLogger("ragsync.mcp")

Using = Callable[[], AbstractContextManager[Operations]]     # the operations for one tool call
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
START_S = 10.0                         # for the event loop thread to start the SDK's session manager


# -- what the tools answer (the SDK turns these into the tools' output schemas) ---------------

class Passage(BaseModel):
    heading_path: list[str] = Field(description="the headings above the passage, outermost first")
    text: str
    score: float


class Hit(BaseModel):
    source: str
    doc_id: str = Field(description="the page's id in its CMS: get_page(source, doc_id) reads it whole")
    title: str
    url: str
    modified: str = Field(description="when the CMS last changed the page (ISO 8601 UTC)")
    score: float
    passages: list[Passage] = Field(description="its best passages, best first (one when group is 'chunk')")


class Found(BaseModel):
    query: str
    group: Literal["page", "chunk"]
    results: list[Hit]


class Section(BaseModel):
    heading_path: list[str]
    text: str


class PageText(BaseModel):
    source: str
    doc_id: str
    title: str
    url: str
    modified: str = Field(description="when the CMS last changed the page (ISO 8601 UTC)")
    indexed_at: str = Field(description="when this version became searchable (ISO 8601 UTC)")
    sections: list[Section] = Field(description="the page's whole indexed text, in page order")


class SourceInfo(BaseModel):
    source: str
    type: str = Field(description="the CMS: wordpress, ghost, strapi, contentful, …")
    pages_live: int
    last_webhook: str | None = Field(description="when its CMS last sent a change (ISO 8601 UTC)")
    last_change: str | None = Field(description="when a change of it last reached the index (ISO 8601 UTC)")
    freshness_p50_s: float | None = Field(description="CMS change → searchable, median seconds, last hour")
    freshness_p95_s: float | None = Field(description="the same, 95th percentile")


class Sources(BaseModel):
    sources: list[SourceInfo]


class Embedding(BaseModel):
    provider: str
    model: str | None
    ready: bool
    problem: str | None


class Collection(BaseModel):
    name: str
    physical: str | None
    config_matches: bool


class IndexStatus(BaseModel):
    pending: int = Field(description="changed pages not yet searchable in their new version")
    oldest_pending_s: float = Field(description="how long the oldest of them has waited")
    dead: int = Field(description="pages that failed and wait for an operator (dead-letter queue)")
    deletions_held: int = Field(description="deletions held back by the deletion budget")
    points: int
    embedder: Embedding
    collection: Collection
    as_of: str


SCHEMAS = (Found, PageText, Sources, IndexStatus)       # also in /openapi.json
TOOLS = ("search", "get_page", "list_sources", "index_status")


# -- the tools ----------------------------------------------------------------------------------

def server(using: Using) -> MCPServer:
    """The MCP server whose tools run on the operations `using()` gives for each call."""
    app = MCPServer("ragsync", version=__version__, instructions=(
        "Search the pages a CMS has published, as they are now: the index follows each change within "
        "seconds. search finds pages; get_page reads one whole; list_sources and index_status say how "
        "fresh the index is."))

    @app.tool(annotations=READ_ONLY)
    def search(query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)],
               limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="results")] = 10,
               source: Annotated[str | None, Field(description="only this source")] = None,
               url_prefix: Annotated[str | None, Field(description="only pages whose URL starts with this")] = None,
               modified_after: Annotated[str | None, Field(description="ISO 8601: pages modified at or after")] = None,
               modified_before: Annotated[str | None, Field(description="ISO 8601: pages modified before")] = None,
               group: Annotated[Literal["page", "chunk"], Field(description="page: one result per page with its best "
                                                                "passages; chunk: passages")] = "page",
               mode: Annotated[Literal[MODES] | None, Field(description="hybrid (keywords and meaning; the default), "
                                                            "dense (meaning) or keyword (BM25)")] = None) -> Found:
        """Find published pages by meaning and by exact words (names, identifiers, other languages)."""
        with _answering(using) as ops:
            results = ops.search(query, limit, source=source, url_prefix=url_prefix, modified_after=modified_after,
                                 modified_before=modified_before, group="page" if group == "page" else None,
                                 mode=mode)
        return Found(query=query.strip(), group=group, results=[_hit(r) for r in results])

    @app.tool(annotations=READ_ONLY)
    def get_page(source: str, doc_id: str) -> PageText:
        """A live page's whole indexed text, in order, with its title, URL and times."""
        with _answering(using) as ops:
            return PageText.model_validate(ops.document(source, doc_id))

    @app.tool(annotations=READ_ONLY)
    def list_sources() -> Sources:
        """The CMS sources this index follows, their live pages and how fresh each is."""
        with _answering(using) as ops:
            return Sources(sources=[SourceInfo.model_validate(s) for s in ops.sources()])

    @app.tool(annotations=READ_ONLY)
    def index_status() -> IndexStatus:
        """Work still pending, failures and held deletions: how far to trust an answer right now."""
        with _answering(using) as ops:
            return IndexStatus.model_validate(ops.index_status())

    return app


def _hit(result: dict[str, Any]) -> Hit:
    """A /search result (a page with its chunks, or one chunk) as one shape."""
    chunks = result.get("chunks") or [result]
    return Hit(source=result["source"], doc_id=result["doc_id"], title=result.get("title") or "",
               url=result.get("url") or "", modified=result.get("modified") or "", score=result["score"],
               passages=[Passage(heading_path=c.get("heading_path") or [], text=c["text"], score=c["score"])
                         for c in chunks])


@contextlib.contextmanager
def _answering(using: Using) -> Iterator[Operations]:
    """A refusal (bad argument, unknown page) or an outage becomes a tool error with one line for
    the agent; the details of an outage stay in the log."""
    try:
        with using() as ops:
            yield ops
    except Rejected as exc:
        raise ToolError(str(exc)) from None
    except RagsyncError as exc:
        log.warning("MCP tool call failed: %s: %s", type(exc).__name__, exc)
        raise ToolError(exc.public) from None


# -- the doors ----------------------------------------------------------------------------------

class Bridge:
    """The SDK's stateless streamable HTTP app as a WSGI app for /mcp. Its event loop thread and
    session manager start on the first request (most daemons are never asked) and stop at close()."""

    def __init__(self, ops: Operations, max_body_bytes: int) -> None:
        self.ops, self.max_body_bytes = ops, max_body_bytes
        self._wsgi: ASGIMiddleware | None = None
        self._stop: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def wsgi(self) -> ASGIMiddleware:
        with self._lock:
            if self._wsgi is None:
                self._wsgi = self._start()
            return self._wsgi

    def _start(self) -> ASGIMiddleware:
        mcp = server(lambda: contextlib.nullcontext(self.ops))
        # The Host and Origin checks are the daemon's own (ragsync.door), made before this app runs.
        app = mcp.streamable_http_app(stateless_http=True, json_response=True, max_request_body_size=self.max_body_bytes,
                                      transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True, name="mcp").start()
        started, stop = threading.Event(), asyncio.Event()

        async def serve() -> None:
            async with mcp.session_manager.run():
                started.set()
                await stop.wait()

        done = asyncio.run_coroutine_threadsafe(serve(), loop)
        if not started.wait(START_S):
            raise RagsyncError("the MCP server did not start")

        def close() -> None:
            loop.call_soon_threadsafe(stop.set)
            with contextlib.suppress(Exception):
                done.result(START_S)
            loop.call_soon_threadsafe(loop.stop)
        self._stop = close
        return ASGIMiddleware(app, loop=loop)

    def close(self) -> None:
        with self._lock:
            if self._stop is not None:
                self._stop()
            self._wsgi, self._stop = None, None


def stdio(config: Config) -> None:
    """`ragsync mcp`: the tools over stdin/stdout until the agent closes them. Each call asks the
    daemon, or opens the store for itself and closes it after; the model loads once."""
    model = functools.cache(lambda: open_embedder(config.embedding, config.data_dir))
    try:
        server(lambda: connect(config, read_only=True, embedder=model)).run("stdio")
    finally:
        if model.cache_info().currsize:
            model().close()
