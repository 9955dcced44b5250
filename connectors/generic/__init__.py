"""Generic: for an in-house CMS. It sends Standard Webhooks deliveries and serves two JSON
endpoints; README "Connecting an in-house CMS" is the contract, small enough for an afternoon.

    POST <ragsync>/webhooks/<source>   {"type": "document.published", "id": "<doc id>"}
    GET  <base_url>/documents/<id>     200 {"id", "title", "url", "modified", "html" | "markdown"}
                                       404 or 410 {"id": <the id>, ...}: not published (deleted, draft, …);
                                       a 404 that does not name the document (a proxy's, a
                                       gateway's {"message": "Not Found"}) is retried
    GET  <base_url>/documents?limit=100[&cursor=<c>]
                                       200 {"documents": [{"id", "modified"}], "next_cursor": <c> | null}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from connectors.base import (Connector, Delivery, Gone, Listed, Page, error_document, json_body,
                             json_object, no_verdict, refused)
from connectors.richtext import fields_html
from ragsync.errors import FetchError
from ragsync.times import iso_utc

EVENTS = frozenset({"document.published", "document.updated", "document.unpublished", "document.deleted"})


class GenericConnector(Connector):
    options = frozenset({"api_token_env"})

    def parse(self, delivery: Delivery) -> list[str]:
        payload = json_object(delivery.body)
        if not isinstance(payload.get("type"), str) or payload["type"] not in EVENTS:
            return []
        return [self.checked_id(payload.get("id"), "id")]

    def fetch(self, doc_id: str) -> Page | Gone:
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a valid document id")
        resp = self._get(f"/documents/{quote(doc_id, safe='')}", None)
        if resp.status_code in (404, 410) and error_document(resp).get("id") == doc_id:
            return Gone(doc_id, f"HTTP {resp.status_code}")   # the CMS names the document: its own verdict
        if resp.status_code in (404, 410):
            raise no_verdict(self.source.name, f"document {doc_id!r}", resp)
        if resp.status_code != 200:
            raise refused(self.source.name, "the document endpoint", resp)
        doc = json_body(resp)
        if not isinstance(doc, dict) or not doc.get("modified"):
            raise FetchError(f"{self.source.name}: document {doc_id!r} has no 'modified'", transient=False)
        body = doc["html"] if isinstance(doc.get("html"), str) else fields_html(doc, ["markdown"])
        return Page(doc_id=doc_id, title=str(doc.get("title") or ""), url=str(doc.get("url") or ""),
                    html=body, modified=iso_utc(doc["modified"]))

    def list(self, since: str | None = None) -> Iterator[Listed]:
        params: dict[str, Any] = {"limit": 100, **({"modified_after": since} if since else {})}
        while True:
            resp = self._get("/documents", params)
            if resp.status_code != 200:
                raise refused(self.source.name, "listing /documents", resp)
            body = json_body(resp)
            for doc in body.get("documents") or []:
                yield Listed(str(doc["id"]), iso_utc(doc["modified"]))
            if not body.get("next_cursor"):
                return
            params = {**params, "cursor": body["next_cursor"]}

    def _get(self, route: str, params: dict[str, Any] | None) -> httpx.Response:
        token = self.token("api_token_env")
        return self.get(f"{(self.source.base_url or '').rstrip('/')}{route}", params,
                        {"Authorization": f"Bearer {token}"} if token else None)
