"""WordPress: ragsync's plugin (plugin/ragsync.php) sends Standard Webhooks deliveries; sites
that already run the WP Webhooks plugin can point it at ragsync instead (`signature =
"wp-webhooks"`). The connector fetches posts and pages anonymously from the core REST API, so
anything not public (draft, pending, private, trash, deleted) is simply invisible and counts
as gone."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator

import httpx

from connectors.base import (Connector, Delivery, Gone, Listed, Page, error_document, hmac_sha256,
                             json_body, json_object, no_verdict, refused, replay_id, same)
from ragsync.errors import ConfigError, Rejected
from ragsync.source import SourceConfig
from ragsync.times import iso_utc

EVENTS = frozenset({"post.published", "post.updated", "post.unpublished", "post.trashed", "post.deleted"})
WP_WEBHOOKS_TRIGGERS = frozenset({"post_create", "post_update", "post_trash", "post_delete"})
SIGNATURES = ("standard-webhooks", "wp-webhooks")


class WordPressConnector(Connector):
    options = frozenset({"post_types", "signature"})

    def __init__(self, source: SourceConfig, http: httpx.Client) -> None:
        super().__init__(source, http)
        self.scheme = source.options.get("signature", "standard-webhooks")
        if self.scheme not in SIGNATURES:
            raise ConfigError(f"source {source.name!r}: signature must be one of {', '.join(SIGNATURES)}")

    @property
    def signs_standard_webhooks(self) -> bool:          # type: ignore[override]
        return self.scheme == "standard-webhooks"

    @property
    def rest_bases(self) -> list[str]:
        """REST bases to look in, in order; post and page ids share one id space."""
        return list(self.source.options.get("post_types", ["posts", "pages"]))

    def setup(self, url: str) -> list[str]:
        secret = f"the value of ${self.source.webhook_secret_env}"
        if self.scheme == "standard-webhooks":
            return ["install connectors/wordpress/plugin/ragsync.php (Plugins, or wp-content/mu-plugins/)",
                    f"Settings → ragsync → Webhook URL: {url} (or define RAGSYNC_WEBHOOK_URL in wp-config.php)",
                    f"Settings → ragsync → Secret: {secret} (whsec_<base64>; or RAGSYNC_WEBHOOK_SECRET)"]
        return ["WP Webhooks → Send Data: add post_create, post_update, post_trash and post_delete, each with",
                f"webhook URL {url} and, under the webhook's settings, secret {secret}"]

    def verify(self, delivery: Delivery, tolerance_s: int) -> str | None:
        if self.scheme == "standard-webhooks":
            return super().verify(delivery, tolerance_s)
        # WP Webhooks: base64 HMAC-SHA256 of the body, no timestamp, so no replay window
        # beyond the delivery-id dedup (documented as the weaker choice)
        given = delivery.headers.get("x-wp-webhook-signature", "")
        if not given:
            raise Rejected(401, "missing X-WP-Webhook-Signature header")
        if not any(same(given, base64.b64encode(hmac_sha256(key.encode(), delivery.body)).decode())
                   for key in self.secrets()):
            raise Rejected(401, "no valid signature")
        return replay_id(given)

    def parse(self, delivery: Delivery) -> list[str]:
        payload = json_object(delivery.body)
        if self.scheme == "wp-webhooks":
            if delivery.headers.get("x-wp-webhook-name") not in WP_WEBHOOKS_TRIGGERS:
                return []
            post_id = payload.get("post_id")
        elif not isinstance(payload.get("type"), str) or payload["type"] not in EVENTS:
            return []
        else:
            post_id = payload.get("id")
        return [str(int(self.checked_id(post_id, "id")))]

    def valid_id(self, doc_id: str) -> bool:
        """A post id: ASCII digits ("²" is a digit to str.isdigit, not to WordPress)."""
        return 0 < len(doc_id) <= 20 and doc_id.isascii() and doc_id.isdigit()

    def fetch(self, doc_id: str) -> Page | Gone:
        """Only WordPress's own JSON verdict deletes: `rest_forbidden` (draft, pending, private,
        trash), `rest_post_invalid_id` under every REST base (deleted, never existed) and
        `content.protected`. Anything else (a WAF's 403 page, `rest_not_logged_in` from a site
        that closed its REST API, a proxy's HTML 404) is an error to retry."""
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a WordPress post id")
        for base in self.rest_bases:
            resp = self._rest(f"/wp/v2/{base}/{doc_id}")
            if resp.status_code != 200:
                code = error_document(resp).get("code")
                if code == "rest_forbidden":
                    return Gone(doc_id, "not public (rest_forbidden)")
                if code == "rest_post_invalid_id":
                    continue                  # another post type, or deleted: try the next base
                raise no_verdict(self.source.name, f"post {doc_id} ({base})", resp)
            post = json_body(resp)
            if not isinstance(post, dict) or str(post.get("id")) != doc_id:
                # a cache or proxy answering with another post (or none) is no verdict on this one
                raise no_verdict(self.source.name, f"post {doc_id} ({base})", resp)
            modified = iso_utc(post.get("modified_gmt") or post.get("modified"))
            if post.get("status", "publish") != "publish":
                return Gone(doc_id, f"status {post.get('status')}")
            content = post.get("content") or {}
            if content.get("protected"):
                return Gone(doc_id, "password-protected", modified)   # still listed: remember the revision
            return Page(
                doc_id=doc_id,
                title=strip_tags(str((post.get("title") or {}).get("rendered", ""))),
                url=str(post.get("link", "")),
                html=str(content.get("rendered", "")),
                modified=modified,
            )
        return Gone(doc_id, "not found (rest_post_invalid_id)")

    def list(self, since: str | None = None) -> Iterator[Listed]:
        order = {"orderby": "modified", "modified_after": since} if since else {"orderby": "id"}
        for base in self.rest_bases:
            page, pages = 1, 1
            while page <= pages:
                resp = self._rest(f"/wp/v2/{base}", {"per_page": 100, "page": page, "order": "asc",
                                                     "_fields": "id,modified_gmt", **order})
                if resp.status_code != 200:
                    raise refused(self.source.name, f"listing {base}", resp)
                for post in json_body(resp):
                    yield Listed(str(post["id"]), iso_utc(post["modified_gmt"]))
                pages = int(resp.headers.get("x-wp-totalpages", "1") or 1)
                page += 1

    def _rest(self, route: str, params: dict | None = None) -> httpx.Response:
        """Pretty /wp-json/ URLs first; sites without pretty permalinks answer those with an
        HTML 404, so fall back to ?rest_route= (and remember that for this source)."""
        base = (self.source.base_url or "").rstrip("/")
        if not getattr(self, "_plain_permalinks", False):
            resp = self.get(f"{base}/wp-json{route}", params)
            if resp.status_code != 404 or _is_rest_error(resp):
                return resp
            self._plain_permalinks = True
        return self.get(f"{base}/", {"rest_route": route, **(params or {})})


def _is_rest_error(resp: httpx.Response) -> bool:
    return "code" in error_document(resp)


def strip_tags(rendered: str) -> str:
    """A rendered title as plain text. A linear scan, not a `<[^>]+>` regex: an author's title
    of thousands of unclosed '<' made that backtrack quadratically."""
    head, *tags = rendered.split("<")
    out = [head]
    for part in tags:                         # each part starts inside a tag, if it closes
        _, closed, rest = part.partition(">")
        out.append(rest if closed else "<" + part)
    return html.unescape("".join(out)).strip()
