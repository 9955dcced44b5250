"""`GET /openapi.json`: an OpenAPI 3.1 document of every HTTP endpoint, built for the running
config, so each configured source's webhook path carries what its CMS must send. Search
teams generate clients from it; `tests/test_openapi.py` validates it and checks each live
answer against it."""

from __future__ import annotations

from typing import Any

from ragsync import __version__
from ragsync.config import MODES
from ragsync.engine import Engine
from ragsync.mcp import SCHEMAS as READER_SCHEMAS

JSON = "application/json"


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
NULLABLE_STR = {"type": ["string", "null"]}
STRINGS = {"type": "array", "items": STR}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(["error"], error=STR),
    "Accepted": _obj(["accepted"], accepted=STRINGS, queued=INT, ignored=BOOL, duplicate=BOOL),
    "Chunk": _obj(["id", "score", "text", "source", "doc_id", "url", "title", "modified", "chunk_index"],
                  id=STR, score=NUM, text=STR, source=STR, doc_id=STR, url=STR, title=STR, modified=STR,
                  chunk_index=INT, content_hash=STR, heading_path=STRINGS, indexed_at=STR, fingerprint=STR,
                  live=BOOL),
    "Page": _obj(["score", "source", "doc_id", "title", "url", "modified", "chunks"],
                 score=NUM, source=STR, doc_id=STR, title=STR, url=STR, modified=STR,
                 heading_paths={"type": "array", "items": STRINGS},
                 chunks={"type": "array", "items": {"$ref": "#/components/schemas/Chunk"}}),
    "SearchResults": _obj(["query", "results"], query=STR, group={"const": "page"},
                          results={"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/Chunk"},
                                                                        {"$ref": "#/components/schemas/Page"}]}}),
    "Status": _obj(["points", "pending", "oldest_pending_s", "dead", "sources", "reconcile", "polling", "collection"],
                   points=INT, pending=INT, oldest_pending_s=NUM, queue_depth=INT, dead=INT, chunks_embedded=INT,
                   writes=INT, sources={"type": "object", "additionalProperties": _obj(
                       ["pages_live", "pages_gone", "points", "deletions_held"], pages_live=INT, pages_gone=INT,
                       points=INT, deletions_held=INT)},
                   reconcile={"type": "object"}, polling={"type": "object"}, collection={"type": "object"}),
    "Report": _obj(["source", "listed", "added", "updated", "repaired", "tombstoned", "errors"],
                   source=STR, listed=INT, unchanged=INT, added=STRINGS, updated=STRINGS, repaired=STRINGS,
                   tombstoned=STRINGS, errors=STRINGS, duration_s=NUM, newest=STR),
    "Parked": _obj(["source", "doc_id", "error", "attempts", "failed_at"], source=STR, doc_id=STR, error=STR,
                   attempts=INT, failed_at=NUM),
    "Keys": _obj([], keys={"type": ["array", "null"], "items": {"type": "array", "items": STR,
                                                                  "minItems": 2, "maxItems": 2}}),
    "PageRecord": _obj(["source", "doc_id", "state", "modified", "chunks", "points"], source=STR, doc_id=STR,
                       state={"enum": ["live", "gone"]}, modified=STR, title=STR, url=STR, indexed_at=STR,
                       reason=STR, chunks=INT, points=INT),
    "Health": _obj(["status"], status=STR, service=STR, instance=NULLABLE_STR, error=STR),
    "JsonRpc": _obj(["jsonrpc"], jsonrpc={"const": "2.0"}, id={"type": ["string", "integer", "null"]},
                    result={"type": "object"}, error={"type": "object"}),
}
for _model in READER_SCHEMAS:          # what the MCP tools answer, written once (pydantic models)
    _schema = _model.model_json_schema(ref_template="#/components/schemas/{model}")
    SCHEMAS.update(_schema.pop("$defs", {}))
    SCHEMAS[_model.__name__] = _schema


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str | None = None, media: str = JSON) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema or media != JSON:
        out["content"] = {media: {"schema": _ref(schema) if schema else STR}}
    return out


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {400: "bad input", 401: "bad or missing signature or token", 403: "not allowed",
               404: "unknown source or page", 413: "body too large", 415: "not JSON", 429: "rate limited (Retry-After)",
               503: "temporarily unavailable (Qdrant, the embedding server)"}
    return {str(c): _answer(meaning[c], "Error") for c in codes}


def _query(name: str, description: str, schema: dict[str, Any] = STR, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def document(engine: Engine) -> dict[str, Any]:
    config = engine.config
    admin = [{"bearer": []}]
    paths: dict[str, Any] = {}
    for name, connector in engine.connectors.items():
        paths[f"/webhooks/{name}"] = {"post": {
            "tags": ["webhooks"], "operationId": f"webhook_{name}".replace("-", "_"),
            "summary": f"A {config.sources[name].type} delivery for source {name!r}",
            "description": "What the CMS must send:\n\n" + "\n".join(
                f"- {line}" for line in connector.setup(f"{config.base_url}/webhooks/{name}")),
            "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
            "responses": {"202": _answer("durably queued (or a duplicate, or an event to ignore)", "Accepted"),
                          **_errors(400, 401, 403, 413, 415, 429, 503)}}}
    paths["/search"] = {"get": {
        "tags": ["search"], "operationId": "search",
        "summary": "The live versions of published pages nearest to a query",
        "parameters": [
            _query("q", "the query (at most 1,000 characters)", required=True),
            _query("limit", "results (1–100)", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}),
            _query("source", "only this source"), _query("url_prefix", "only pages whose URL starts with this"),
            _query("modified_after", "ISO 8601; only pages modified at or after it"),
            _query("modified_before", "ISO 8601; only pages modified before it"),
            _query("group", "page: one result per page with its best chunks", {"enum": ["page"]}),
            _query("mode", "hybrid (keywords and meaning fused inside Qdrant; the default), dense (the embedding "
                   "model only) or keyword (BM25 only)", {"enum": list(MODES)})],
        "security": [{"bearer": []}, {}],
        "responses": {"200": _answer("chunks, or pages with group=page", "SearchResults"),
                      **_errors(400, 401, 429, 503)}}}
    readers = {"/pages/{source}/{doc_id}": ("page", "A live page's whole indexed text, in order", "PageText"),
               "/sources": ("sources", "The sources, their live pages and freshness (last hour)", "Sources"),
               "/index/status": ("index_status", "Pending work, failures and held deletions", "IndexStatus")}
    for path, (op, summary, schema) in readers.items():
        paths[path] = {"get": {
            "tags": ["search"], "operationId": op, "summary": summary, "security": [{"bearer": []}, {}],
            **({"parameters": [{"name": n, "in": "path", "required": True, "schema": STR}
                               for n in ("source", "doc_id")]} if "{" in path else {}),
            "responses": {"200": _answer("done", schema), **_errors(*((400, 404) if "{" in path else ()), 401, 429, 503)}}}
    paths["/mcp"] = {"post": {
        "tags": ["search"], "operationId": "mcp", "summary": "MCP (Model Context Protocol) over streamable HTTP",
        "description": "Stateless: POST a JSON-RPC message, get JSON back (no GET stream, no session). Read-only "
                       "tools: search, get_page, list_sources, index_status (their schemas: tools/list). Same token, "
                       "rate limit and Host check as /search; a browser's Origin must be this host, this machine or "
                       "one in [server] allowed_hosts.",
        "security": [{"bearer": []}, {}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {"200": _answer("the JSON-RPC answer", "JsonRpc"), "202": {"description": "a notification taken"},
                      **_errors(400, 401, 403, 413, 429)}}}
    paths["/healthz"] = {"get": {"tags": ["health"], "operationId": "healthz", "summary": "The process answers",
                                 "responses": {"200": _answer("alive", "Health")}}}
    paths["/readyz"] = {"get": {"tags": ["health"], "operationId": "readyz",
                                "summary": "The model (or embedding server) and the store are ready",
                                "responses": {"200": _answer("ready", "Health"), "503": _answer("not ready", "Health")}}}
    paths["/metrics"] = {"get": {"tags": ["health"], "operationId": "metrics", "summary": "Prometheus metrics",
                                 "responses": {"200": _answer("Prometheus text format", media="text/plain")}}}
    paths["/openapi.json"] = {"get": {"tags": ["health"], "operationId": "openapi", "summary": "This document",
                                      "responses": {"200": _answer("OpenAPI 3.1", media=JSON)}}}
    for path, summary in (("/", "The status page"), ("/status", "The status page (same as /)")):
        paths[path] = {"get": {"tags": ["status"], "operationId": "status_page" + ("_alias" if path != "/" else ""),
                               "summary": summary, "parameters": [_query("q", "a search, shown grouped by page")],
                               "responses": {"200": _answer("HTML, no external assets", media="text/html")}}}
    admin_ops = {
        ("/admin/status", "get"): ("admin_status", "Points, pages, pending work, DLQ, reconcile and polling", "Status"),
        ("/admin/dlq", "get"): ("admin_dlq", "Parked keys with their last error", None),
        ("/admin/reconcile", "post"): ("admin_reconcile", "Run a reconcile now (waits for it)", None),
        ("/admin/reindex", "post"): ("admin_reindex", "Rebuild beside the live index, then switch", None),
        ("/admin/dlq/replay", "post"): ("admin_dlq_replay", "Queue parked keys again (all when none named)", None),
        ("/admin/dlq/drop", "post"): ("admin_dlq_drop", "Forget parked keys (all when none named)", None),
    }
    bodies = {
        "admin_dlq": _obj(["parked"], parked={"type": "array", "items": _ref("Parked")}),
        "admin_reconcile": _obj(["reports"], reports={"type": "array", "items": _ref("Report")}),
        "admin_reindex": {"type": "object"},
        "admin_dlq_replay": _obj(["replayed"], replayed={"type": "array", "items": STRINGS}),
        "admin_dlq_drop": _obj(["dropped"], dropped={"type": "array", "items": STRINGS}),
    }
    requests = {"admin_reconcile": _obj([], source=NULLABLE_STR, dry_run=BOOL, force=BOOL),
                "admin_reindex": _obj([], source=NULLABLE_STR, drop_old=BOOL),
                "admin_dlq_replay": _ref("Keys"), "admin_dlq_drop": _ref("Keys")}
    for (path, method), (op, summary, schema) in admin_ops.items():
        ok = _answer("done", schema) if schema else {"description": "done",
                                                      "content": {JSON: {"schema": bodies[op]}}}
        paths.setdefault(path, {})[method] = {
            "tags": ["admin"], "operationId": op, "summary": summary, "security": admin,
            **({"requestBody": {"content": {JSON: {"schema": requests[op]}}}} if op in requests else {}),
            "responses": {"200": ok, **_errors(400, 401, 403, 503)}}
    paths["/admin/pages/{source}/{doc_id}"] = {"get": {
        "tags": ["admin"], "operationId": "admin_page", "summary": "What the index holds for one page",
        "parameters": [*({"name": name, "in": "path", "required": True, "schema": STR} for name in ("source", "doc_id")),
                       {"name": "until", "in": "query", "schema": STR,
                        "description": "a CMS modified time: answer once the page is indexed at it or later"},
                       {"name": "wait_s", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        "description": "how long to wait for `until` (then answer with what there is)"}],
        "security": admin, "responses": {"200": _answer("its record and point count", "PageRecord"),
                                         **_errors(400, 401, 403, 404, 503)}}}
    paths["/admin/export"] = {"get": {
        "tags": ["admin"], "operationId": "admin_export", "summary": "Every point's payload, one JSON per line",
        "security": admin, "responses": {"200": _answer("JSON lines", media="application/x-ndjson"),
                                         **_errors(401, 403)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ragsync", "version": __version__,
                 "description": "Keeps a Qdrant index equal to what a CMS has published."},
        "servers": [{"url": config.base_url}],
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
