"""WordPress: ragsync's plugin (plugin/ragsync.php) sends Standard Webhooks deliveries; the
connector fetches posts and pages anonymously from the core REST API, so anything not
public (draft, pending, private, trash, deleted) is simply invisible and counts as gone."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx

from connectors.base import Connector, Gone, Listed, Page, iso_utc, json_object
from ragsync.errors import FetchError, Rejected

EVENTS = frozenset({"post.published", "post.updated", "post.unpublished", "post.trashed", "post.deleted"})
_TAG = re.compile(r"<[^>]+>")


class WordPressConnector(Connector):
    options = frozenset({"post_types"})

    @property
    def rest_bases(self) -> list[str]:
        """REST bases to look in, in order; post and page ids share one id space."""
        return list(self.source.options.get("post_types", ["posts", "pages"]))

    def parse(self, body: bytes) -> list[str]:
        payload = json_object(body)
        if payload.get("type") not in EVENTS:
            return []
        post_id = payload.get("id")
        if isinstance(post_id, bool) or not isinstance(post_id, (int, str)) or not str(post_id).isdigit():
            raise Rejected(400, "'id' must be a positive integer post id")
        return [str(int(post_id))]

    def fetch(self, doc_id: str) -> Page | Gone:
        if not doc_id.isdigit():
            return Gone(doc_id, "not a WordPress post id")
        for base in self.rest_bases:
            resp = self._rest(f"/wp/v2/{base}/{doc_id}")
            if resp.status_code in (401, 403):
                return Gone(doc_id, f"not public (HTTP {resp.status_code})")
            if resp.status_code in (404, 410):
                continue                      # wrong post type, or deleted: try the next base
            post = _json(resp)
            modified = iso_utc(post.get("modified_gmt") or post.get("modified"))
            if post.get("status", "publish") != "publish":
                return Gone(doc_id, f"status {post.get('status')}")
            content = post.get("content") or {}
            if content.get("protected"):
                return Gone(doc_id, "password-protected", modified)   # still listed: remember the revision
            return Page(
                doc_id=doc_id,
                title=html.unescape(_TAG.sub("", (post.get("title") or {}).get("rendered", ""))).strip(),
                url=str(post.get("link", "")),
                html=str(content.get("rendered", "")),
                modified=modified,
            )
        return Gone(doc_id, "not found")

    def list(self) -> Iterator[Listed]:
        for base in self.rest_bases:
            page, pages = 1, 1
            while page <= pages:
                resp = self._rest(f"/wp/v2/{base}", {"per_page": 100, "page": page, "orderby": "id",
                                                     "order": "asc", "_fields": "id,modified_gmt"})
                if resp.status_code != 200:
                    raise FetchError(f"{self.source.name}: listing {base} answered HTTP {resp.status_code}",
                                     transient=False)
                for post in _json(resp):
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


def _json(resp: httpx.Response):
    try:
        return resp.json()
    except ValueError:
        raise FetchError(f"non-JSON answer from {resp.request.url.copy_with(query=None)}", transient=False) from None


def _is_rest_error(resp: httpx.Response) -> bool:
    try:
        return isinstance(resp.json(), dict) and "code" in resp.json()
    except ValueError:
        return False
