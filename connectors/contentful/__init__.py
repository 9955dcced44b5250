"""Contentful: signed webhook requests (`x-contentful-signature`, HMAC-SHA256 over the
canonical request: method, path, the signed headers and the raw body), fetch through the
Content Delivery API (404 for unpublished, archived or deleted entries), and reconcile
through the Sync API.

Topics come in the `X-Contentful-Topic` header: `ContentManagement.Entry.publish`,
`.unpublish`, `.archive`, `.unarchive` and `.delete` change what is published; `create`,
`save` and `auto_save` touch drafts only and are ignored.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from connectors.base import (Connector, Delivery, Gone, Listed, Page, check_age, fill, hmac_sha256, iso_utc,
                             json_body, json_object, refused, replay_id, same, well_formed)
from connectors.richtext import fields_html
from ragsync.config import SourceConfig
from ragsync.errors import ConfigError, FetchError, Rejected

TOPICS = frozenset(f"ContentManagement.Entry.{action}"
                   for action in ("publish", "unpublish", "archive", "unarchive", "delete"))
ENTRY_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


def canonical(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    """Contentful's canonical request: headers as sorted `name:value` pairs joined by ';'."""
    pairs = ";".join(f"{k}:{v}" for k, v in sorted(headers.items()))
    return f"{method.upper()}\n{target}\n{pairs}\n".encode() + body


def sign(secret: str, method: str, target: str, headers: dict[str, str], body: bytes) -> str:
    """The `x-contentful-signature` a sender puts on a request (tests and benchmarks)."""
    return hmac_sha256(secret.encode(), canonical(method, target, headers, body)).hex()


class ContentfulConnector(Connector):
    options = frozenset({"space_id", "environment", "delivery_token_env", "locale", "content_types",
                         "title_field", "body_fields", "url_template"})

    def __init__(self, source: SourceConfig, http: httpx.Client) -> None:
        super().__init__(source, http)
        for key in ("space_id", "delivery_token_env"):
            if not source.options.get(key):
                raise ConfigError(f"source {source.name!r}: set {key}")
        self.locale = source.options.get("locale", "en-US")
        self.body_fields = list(source.options.get("body_fields", ["body", "content"]))
        self.content_types = set(source.options.get("content_types", []))
        root = (source.base_url or "https://cdn.contentful.com").rstrip("/")
        self.root = f"{root}/spaces/{source.options['space_id']}/environments/{source.options.get('environment', 'master')}"

    def verify(self, delivery: Delivery, tolerance_s: int) -> str | None:
        given = delivery.headers.get("x-contentful-signature", "")
        names = [n.strip().lower() for n in delivery.headers.get("x-contentful-signed-headers", "").split(",") if n.strip()]
        if not given or not {"x-contentful-timestamp", "x-contentful-signed-headers"} <= set(names):
            raise Rejected(401, "missing x-contentful-signature, or signed headers without timestamp")
        check_age(delivery.headers.get("x-contentful-timestamp", ""), delivery.received, tolerance_s)
        signed = {name: delivery.headers.get(name, "").strip() for name in names}
        if not any(same(given, sign(secret, delivery.method, delivery.target, signed, delivery.body))
                   for secret in self.secrets()):
            raise Rejected(401, "no valid signature")
        return replay_id(given)

    def parse(self, delivery: Delivery) -> list[str]:
        payload = json_object(delivery.body)
        if delivery.headers.get("x-contentful-topic") not in TOPICS:
            return []
        sys = payload.get("sys") if isinstance(payload.get("sys"), dict) else {}
        content_type = ((sys.get("contentType") or {}).get("sys") or {}).get("id")
        if self.content_types and content_type and content_type not in self.content_types:
            return []
        entry_id = sys.get("id")
        if not well_formed(entry_id, ENTRY_ID_CHARS):
            raise Rejected(400, "'sys.id' is missing or malformed")
        return [entry_id]

    def fetch(self, doc_id: str) -> Page | Gone:
        if not well_formed(doc_id, ENTRY_ID_CHARS):
            return Gone(doc_id, "not a Contentful entry id")
        resp = self._get(f"/entries/{doc_id}", {"locale": self.locale})
        if resp.status_code in (404, 410):
            return Gone(doc_id, "not published")
        if resp.status_code != 200:
            raise refused(self.source.name, "the Delivery API", resp)
        entry = json_body(resp)
        sys, fields = entry.get("sys") or {}, entry.get("fields") or {}
        if self.content_types and ((sys.get("contentType") or {}).get("sys") or {}).get("id") not in self.content_types:
            return Gone(doc_id, "content type not indexed")
        template = self.source.options.get("url_template", "https://app.contentful.com/spaces/{space_id}/entries/{id}")
        url = fill(template, {**fields, "id": doc_id, "space_id": self.source.options["space_id"]})
        return Page(doc_id=doc_id, title=str(fields.get(self.source.options.get("title_field", "title")) or ""),
                    url=url, html=fields_html(fields, self.body_fields), modified=iso_utc(sys["updatedAt"]))

    def list(self) -> Iterator[Listed]:
        """Every published entry, through an initial Sync (the whole published set, paged by
        sync_token). Deletions show as the ids the index has and this listing lacks."""
        params: dict[str, Any] = {"initial": "true", "type": "Entry"}
        if len(self.content_types) == 1:
            params["content_type"] = next(iter(self.content_types))
        while True:
            resp = self._get("/sync", params)
            if resp.status_code != 200:
                raise refused(self.source.name, "the Sync API", resp)
            body = json_body(resp)
            for item in body.get("items") or []:
                sys = item.get("sys") or {}
                kind = ((sys.get("contentType") or {}).get("sys") or {}).get("id")
                if sys.get("type") == "Entry" and (not self.content_types or kind in self.content_types):
                    yield Listed(str(sys["id"]), iso_utc(sys["updatedAt"]))
            if not body.get("nextPageUrl"):
                return
            # follow the page by its token against our own base URL, never a URL from an answer
            token = parse_qs(urlsplit(str(body["nextPageUrl"])).query).get("sync_token", [""])[0]
            if not token:
                raise FetchError(f"{self.source.name}: Sync API nextPageUrl has no sync_token", transient=False)
            params = {"sync_token": token}

    def _get(self, route: str, params: dict[str, Any]) -> httpx.Response:
        return self.get(self.root + route, params, {"Authorization": f"Bearer {self.token('delivery_token_env')}"})
