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

from connectors.base import (Connector, Delivery, Gone, Listed, Page, check_age, error_document, fill, hmac_sha256,
                             json_body, json_object, no_verdict, refused, replay_id, same, well_formed)
from connectors.richtext import fields_html
from ragsync.errors import ConfigError, FetchError, Rejected
from ragsync.source import SourceConfig
from ragsync.times import iso_utc

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
    signs_standard_webhooks = False
    needs_base_url = False                   # the Delivery API's own address by default
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

    def setup(self, url: str) -> list[str]:
        return ["Contentful → Settings → Webhooks → Add webhook",
                f"URL: {url}; triggers: Entry publish, unpublish, archive, unarchive, delete",
                f"Settings → Webhooks → Settings → request verification: the signing secret is the value of "
                f"${self.source.webhook_secret_env}",
                f"a Content Delivery API token (Settings → API keys) into ${self.source.options.get('delivery_token_env')}"]

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
        if delivery.headers.get("x-contentful-topic", "") not in TOPICS:
            return []
        sys = payload.get("sys") if isinstance(payload.get("sys"), dict) else {}
        content_type = _link_id(sys.get("contentType"))
        if self.content_types and content_type and content_type not in self.content_types:
            return []
        return [self.checked_id(sys.get("id"), "sys.id")]

    def valid_id(self, doc_id: str) -> bool:
        """A Contentful entry id: 1–64 letters, digits, '-', '_' or '.', not starting with '.'
        (so never "." or "..", which an HTTP client resolves to the environment itself)."""
        return well_formed(doc_id, ENTRY_ID_CHARS) and not doc_id.startswith(".")

    def fetch(self, doc_id: str) -> Page | Gone:
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a Contentful entry id")
        resp = self._get(f"/entries/{doc_id}", {"locale": self.locale})
        if resp.status_code == 404 and _entry_not_found(error_document(resp), doc_id):
            return Gone(doc_id, "not published (NotFound)")
        if resp.status_code in (401, 403):
            raise refused(self.source.name, "the Delivery API", resp)
        if resp.status_code != 200:                      # a wrong space or environment, a proxy page
            raise no_verdict(self.source.name, f"entry {doc_id}", resp)
        entry = json_body(resp)
        sys = entry.get("sys") if isinstance(entry, dict) else None
        if not isinstance(sys, dict) or sys.get("id") != doc_id or not sys.get("updatedAt"):
            raise no_verdict(self.source.name, f"entry {doc_id}", resp)
        fields = entry.get("fields") if isinstance(entry.get("fields"), dict) else {}
        content_type = _link_id(sys.get("contentType"))
        if self.content_types and content_type is None:
            raise no_verdict(self.source.name, f"entry {doc_id} (no sys.contentType)", resp)
        if self.content_types and content_type not in self.content_types:
            return Gone(doc_id, "content type not indexed")
        template = self.source.options.get("url_template", "https://app.contentful.com/spaces/{space_id}/entries/{id}")
        url = fill(template, {**fields, "id": doc_id, "space_id": self.source.options["space_id"]})
        return Page(doc_id=doc_id, title=str(fields.get(self.source.options.get("title_field", "title")) or ""),
                    url=url, html=fields_html(fields, self.body_fields), modified=iso_utc(sys["updatedAt"]))

    def list(self, since: str | None = None) -> Iterator[Listed]:
        """Every published entry, through an initial Sync (the whole published set, paged by
        sync_token). Deletions show as the ids the index has and this listing lacks. With
        `since`: the Delivery API's entries updated after it, paged by skip."""
        if since:
            yield from self._updated_after(since)
            return
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
                kind = _link_id(sys.get("contentType"))
                if sys.get("type") == "Entry" and (not self.content_types or kind in self.content_types):
                    yield Listed(str(sys["id"]), iso_utc(sys["updatedAt"]))
            if not body.get("nextPageUrl"):
                return
            # follow the page by its token against our own base URL, never a URL from an answer
            token = parse_qs(urlsplit(str(body["nextPageUrl"])).query).get("sync_token", [""])[0]
            if not token:
                raise FetchError(f"{self.source.name}: Sync API nextPageUrl has no sync_token", transient=False)
            params = {"sync_token": token}

    def _updated_after(self, since: str) -> Iterator[Listed]:
        params: dict[str, Any] = {"sys.updatedAt[gt]": since, "order": "sys.updatedAt", "limit": 1000,
                                  "select": "sys.id,sys.updatedAt,sys.contentType"}
        if len(self.content_types) == 1:
            params["content_type"] = next(iter(self.content_types))
        skip = 0
        while True:
            resp = self._get("/entries", {**params, "skip": skip})
            if resp.status_code != 200:
                raise refused(self.source.name, "listing entries", resp)
            body = json_body(resp)
            items = body.get("items") or []
            for item in items:
                sys = item.get("sys") or {}
                if not self.content_types or _link_id(sys.get("contentType")) in self.content_types:
                    yield Listed(str(sys["id"]), iso_utc(sys["updatedAt"]))
            skip += len(items)
            if not items or skip >= int(body.get("total") or 0):
                return

    def _get(self, route: str, params: dict[str, Any]) -> httpx.Response:
        return self.get(self.root + route, params, {"Authorization": f"Bearer {self.token('delivery_token_env')}"})


def _link_id(link: object) -> str | None:
    """The id of a Contentful link (`{"sys": {"id": ...}}`); None for anything else."""
    target = link.get("sys") if isinstance(link, dict) else None
    value = target.get("id") if isinstance(target, dict) else None
    return value if isinstance(value, str) else None


def _entry_not_found(error: dict[str, Any], doc_id: str) -> bool:
    """Contentful's verdict on this entry: a `NotFound` error whose details name an Entry.
    A wrong space or environment answers NotFound too, naming the Space or Environment."""
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return (_link_id(error) == "NotFound" and details.get("type") == "Entry"
            and details.get("id", doc_id) == doc_id)
