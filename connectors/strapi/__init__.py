"""Strapi 5: native webhooks (`entry.publish`, `entry.update`, `entry.unpublish`,
`entry.delete`, …) keyed by `documentId`, fetched through the REST API with a read-only API
token; the published version of a document that was unpublished or deleted answers 404.

Strapi signs nothing. The webhook carries a static shared token in a custom header (default
`X-Ragsync-Token`, or `Authorization: Bearer …`), compared in constant time. That is weaker than
a signature: whoever sees one delivery can replay or forge hints for a while — they still only
make ragsync re-fetch the truth, but keep the endpoint on HTTPS and an `allow_ips` list.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import httpx

from connectors.base import (Connector, Delivery, Gone, Listed, Page, error_document, fill, json_body,
                             json_object, no_verdict, refused, replay_id, same, well_formed)
from connectors.richtext import fields_html
from ragsync.errors import ConfigError, Rejected
from ragsync.source import SourceConfig
from ragsync.times import iso_utc

DOC_ID_CHARS = frozenset(string.ascii_letters + string.digits)


class StrapiConnector(Connector):
    signs_standard_webhooks = False
    options = frozenset({"collections", "api_token_env", "locale", "title_field", "body_fields",
                         "url_template", "token_header"})

    def __init__(self, source: SourceConfig, http: httpx.Client) -> None:
        super().__init__(source, http)
        self.collections = source.options.get("collections")
        if not isinstance(self.collections, list) or not self.collections:
            raise ConfigError(f"source {source.name!r}: set collections (plural API ids, e.g. [\"articles\"])")
        self.body_fields = list(source.options.get("body_fields", ["body", "content"]))

    def setup(self, url: str) -> list[str]:
        header = self.source.options.get("token_header", "x-ragsync-token")
        return ["Strapi admin → Settings → Webhooks → Create new webhook",
                f"URL: {url}; events: Entry create, update, delete, publish, unpublish",
                f"header {header}: the value of ${self.source.webhook_secret_env} (Strapi signs nothing: "
                "this token is the only proof, so send it over HTTPS)",
                f"a read-only API token (Settings → API Tokens) into ${self.source.options.get('api_token_env')}"]

    def verify(self, delivery: Delivery, tolerance_s: int) -> str | None:
        header = self.source.options.get("token_header", "x-ragsync-token")
        given = delivery.headers.get(header) or delivery.headers.get("authorization", "").removeprefix("Bearer ")
        if not given or not any(same(given.strip(), secret) for secret in self.secrets()):
            raise Rejected(401, f"missing or wrong {header} token")
        return replay_id(delivery.body.decode("utf-8", "replace"))   # the body carries its send time

    def parse(self, delivery: Delivery) -> list[str]:
        payload = json_object(delivery.body)
        event = delivery.headers.get("x-strapi-event") or payload.get("event")
        if not isinstance(event, str) or not event.startswith("entry."):
            return []                                     # media.*, releases.*, …
        doc_id = (payload.get("entry") or {}).get("documentId") if isinstance(payload.get("entry"), dict) else None
        return [self.checked_id(doc_id, "entry.documentId")]

    def valid_id(self, doc_id: str) -> bool:
        """A Strapi 5 documentId: letters and digits, at most 64."""
        return well_formed(doc_id, DOC_ID_CHARS)

    def fetch(self, doc_id: str) -> Page | Gone:
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a Strapi documentId")
        for collection in self.collections:               # documentIds are unique across types
            resp = self._api(f"/{collection}/{doc_id}", {"status": "published", "populate": "*"})
            if resp.status_code in (401, 403):
                raise refused(self.source.name, f"reading {collection}", resp)
            if resp.status_code == 200:
                body = json_body(resp)
                data = body.get("data") if isinstance(body, dict) else None
                if not isinstance(data, dict) or not data.get("documentId") or not data.get("updatedAt"):
                    raise no_verdict(self.source.name, f"{collection}/{doc_id}", resp)
                return self._page(collection, data)
            error = error_document(resp).get("error")
            if not (resp.status_code == 404 and isinstance(error, dict) and error.get("name") == "NotFoundError"):
                raise no_verdict(self.source.name, f"{collection}/{doc_id}", resp)
        return Gone(doc_id, "not published (NotFoundError)")

    def list(self, since: str | None = None) -> Iterator[Listed]:
        order = ({"filters[updatedAt][$gt]": since, "sort": "updatedAt:asc"} if since
                 else {"sort": "documentId:asc"})
        for collection in self.collections:
            page, pages = 1, 1
            while page <= pages:
                resp = self._api(f"/{collection}", {"status": "published", "pagination[page]": page,
                                                    "pagination[pageSize]": 100, "fields[0]": "updatedAt", **order})
                if resp.status_code != 200:
                    raise refused(self.source.name, f"listing {collection}", resp)
                body = json_body(resp)
                for item in body.get("data") or []:
                    yield Listed(str(item["documentId"]), iso_utc(item["updatedAt"]))
                pages = int(((body.get("meta") or {}).get("pagination") or {}).get("pageCount") or 1)
                page += 1

    def _page(self, collection: str, data: dict[str, Any]) -> Page:
        base = (self.source.base_url or "").rstrip("/")
        template = self.source.options.get("url_template", "{base_url}/api/{collection}/{documentId}")
        title = data.get(self.source.options.get("title_field", "title"))
        return Page(doc_id=str(data["documentId"]), title=str(title or ""),
                    url=fill(template, {**data, "base_url": base, "collection": collection}),
                    html=fields_html(data, self.body_fields), modified=iso_utc(data["updatedAt"]))

    def _api(self, route: str, params: dict[str, Any]) -> httpx.Response:
        if locale := self.source.options.get("locale"):
            params = {**params, "locale": locale}
        token = self.token("api_token_env")
        return self.get(f"{(self.source.base_url or '').rstrip('/')}/api{route}", params,
                        {"Authorization": f"Bearer {token}"} if token else None)
