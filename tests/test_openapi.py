"""GET /openapi.json: a valid OpenAPI 3.1 document (checked by openapi-spec-validator), and
against the live app every documented route answers with a documented status whose JSON
matches its schema (jsonschema)."""

from __future__ import annotations

import jsonschema
from openapi_spec_validator import validate

from tests.support import ADMIN_TOKEN, page_html, signed

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def test_the_document_is_valid_and_every_answer_matches_it(daemon, wp):
    wp.publish(1, "Borrowing", page_html(["A reference borrows a value without owning it."]))
    daemon.wp_event(1, "post.published")
    daemon.idle()
    doc = daemon.http.get("/openapi.json").json()
    validate(doc)                                                       # OpenAPI 3.1, schemas included
    raw, signature = signed({"type": "post.updated", "id": 1, "post_type": "post"})
    calls = {
        ("/webhooks/blog", "post"): dict(content=raw, headers=signature),
        ("/search", "get"): dict(params={"q": "who owns a borrowed value"}),
        ("/healthz", "get"): {}, ("/readyz", "get"): {}, ("/metrics", "get"): {}, ("/openapi.json", "get"): {},
        ("/", "get"): {}, ("/status", "get"): dict(params={"q": "borrowing"}),
        ("/admin/status", "get"): dict(headers=ADMIN), ("/admin/export", "get"): dict(headers=ADMIN),
        ("/admin/dlq", "get"): dict(headers=ADMIN),
        ("/admin/reconcile", "post"): dict(headers=ADMIN, json={"source": "blog"}),
        ("/admin/reindex", "post"): dict(headers=ADMIN, json={"drop_old": True}),
        ("/admin/dlq/replay", "post"): dict(headers=ADMIN, json={"keys": []}),
        ("/admin/dlq/drop", "post"): dict(headers=ADMIN, json={"keys": [["blog", "404"]]}),
        ("/admin/pages/{source}/{doc_id}", "get"): dict(headers=ADMIN, url="/admin/pages/blog/1"),
        ("/pages/{source}/{doc_id}", "get"): dict(url="/pages/blog/1"), ("/sources", "get"): {},
        ("/index/status", "get"): {},
        ("/mcp", "post"): dict(json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                     "params": {"name": "search", "arguments": {"query": "borrowing"}}},
                               headers={"accept": "application/json, text/event-stream",
                                        "mcp-protocol-version": "2025-11-25"}),
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == set(calls)
    for (path, method), kwargs in calls.items():
        url = kwargs.pop("url", path)
        resp = daemon.http.request(method.upper(), url, **kwargs)
        answers = doc["paths"][path][method]["responses"]
        assert str(resp.status_code) in answers, (path, resp.status_code, resp.text[:200])
        content = answers[str(resp.status_code)].get("content", {})
        assert resp.headers["content-type"].split(";")[0] in content or not content, (path, resp.headers["content-type"])
        schema = content.get("application/json", {}).get("schema")
        if schema:
            jsonschema.validate(resp.json(), {**schema, "components": doc["components"]},
                                cls=jsonschema.Draft202012Validator)
    page = daemon.http.get("/admin/pages/blog/1", headers=ADMIN).json()
    assert (page["state"], page["chunks"], page["points"]) == ("live", 1, 1) and "live_ids" not in page
    missing = daemon.http.get("/admin/pages/blog/404", headers=ADMIN)
    assert missing.status_code == 404 and "404" in doc["paths"]["/admin/pages/{source}/{doc_id}"]["get"]["responses"]
    grouped = daemon.http.get("/search", params={"q": "borrowing", "group": "page"}).json()
    schema = doc["paths"]["/search"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(grouped, {**schema, "components": doc["components"]}, cls=jsonschema.Draft202012Validator)
    assert grouped["group"] == "page" and grouped["results"][0]["chunks"]
