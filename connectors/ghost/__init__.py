"""Ghost: native webhooks signed `X-Ghost-Signature: sha256=<hex>, t=<ms>` (HMAC-SHA256 of the
raw body followed by t, Ghost ≥ 5.87.1), and the public Content API, which answers 404 for
anything not published (draft, scheduled, unpublished, deleted) — so that is "gone".

Ghost sends no event header: give each webhook its event in the target URL
(`…/webhooks/<source>?event=post.published`); newer Ghost also puts `"event"` in the body.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from connectors.base import (Connector, Delivery, Gone, Listed, Page, check_age, error_document, hmac_sha256,
                             json_body, json_object, no_verdict, refused, replay_id, same, well_formed)
from ragsync.errors import ConfigError, Rejected
from ragsync.source import SourceConfig
from ragsync.times import iso_utc

KINDS = ("post", "page")
HEX = frozenset("0123456789abcdef")
EVENTS = frozenset(f"{kind}.{event}" for kind in KINDS for event in (
    "published", "published.edited", "unpublished", "deleted", "added", "edited", "scheduled",
    "unscheduled", "rescheduled"))


class GhostConnector(Connector):
    signs_standard_webhooks = False
    options = frozenset({"content_key_env", "legacy_signature"})

    def __init__(self, source: SourceConfig, http: httpx.Client) -> None:
        super().__init__(source, http)
        if not source.options.get("content_key_env"):
            raise ConfigError(f"source {source.name!r}: set content_key_env (the Content API key's variable)")

    def setup(self, url: str) -> list[str]:
        return ["Ghost Admin → Settings → Integrations → Add custom integration; its Content API key goes "
                f"into ${self.source.options['content_key_env']}",
                f"add one webhook per event, target URL {url}?event=<event>, for post.published, "
                "post.published.edited, post.unpublished, post.deleted, page.published, page.published.edited, "
                "page.unpublished, page.deleted",
                f"secret: the value of ${self.source.webhook_secret_env} (any string; Ghost signs X-Ghost-Signature)"]

    def verify(self, delivery: Delivery, tolerance_s: int) -> str | None:
        header = delivery.headers.get("x-ghost-signature", "")
        parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
        given, stamp = parts.get("sha256", ""), parts.get("t", "")
        if not given or not stamp:
            raise Rejected(401, "missing or malformed X-Ghost-Signature header")
        check_age(stamp, delivery.received, tolerance_s)
        keys = [key.encode() for key in self.secrets()]
        if any(same(given, hmac_sha256(key, delivery.body + stamp.encode()).hex()) for key in keys):
            return replay_id(given, stamp)
        if self.source.options.get("legacy_signature") and any(   # Ghost < 5.87.1 signed the body alone
                same(given, hmac_sha256(key, delivery.body).hex()) for key in keys):
            return replay_id(given)       # t is unsigned here: a replay with a fresh t is the same delivery
        raise Rejected(401, "no valid signature")

    def valid_id(self, doc_id: str) -> bool:
        """A Ghost object id: 24 hexadecimal characters."""
        return well_formed(doc_id.lower(), HEX, 24) and len(doc_id) == 24

    def parse(self, delivery: Delivery) -> list[str]:
        payload = json_object(delivery.body)
        event = delivery.query.get("event") or payload.get("event")
        if event is not None and (not isinstance(event, str) or event not in EVENTS):
            return []                                     # member.*, tag.*, site.changed …
        kind = next((k for k in KINDS if isinstance(payload.get(k), dict)), None)
        if kind is None:
            return []
        states = payload[kind]
        for state in ("current", "previous"):             # deleted: current is {}, previous has the id
            doc_id = (states.get(state) or {}).get("id") if isinstance(states.get(state), dict) else None
            if isinstance(doc_id, str) and self.valid_id(doc_id):
                return [doc_id]
        raise Rejected(400, f"'{kind}' carries no id")

    def fetch(self, doc_id: str) -> Page | Gone:
        if not self.valid_id(doc_id):
            return Gone(doc_id, "not a Ghost id")
        for kind in KINDS:                                # posts and pages share one id space
            resp = self._content(f"{kind}s/{doc_id}/", {"formats": "html"})
            if resp.status_code in (401, 403):            # a bad Content API key: not "gone"
                raise refused(self.source.name, "the Content API", resp)
            if resp.status_code == 200:
                body = json_body(resp)
                items = body.get(f"{kind}s") if isinstance(body, dict) else None
                item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else None
                if item is None or not item.get("updated_at"):
                    raise no_verdict(self.source.name, f"{kind} {doc_id}", resp)
                return Page(doc_id=doc_id, title=str(item.get("title") or ""), url=str(item.get("url") or ""),
                            html=str(item.get("html") or ""), modified=iso_utc(str(item["updated_at"])))
            if not _not_found(resp):                      # a proxy's 404, a 410, a 204: not Ghost's word
                raise no_verdict(self.source.name, f"{kind} {doc_id}", resp)
        return Gone(doc_id, "not published (NotFoundError)")

    def list(self, since: str | None = None) -> Iterator[Listed]:
        # Ghost's filter language (NQL) compares dates written 'YYYY-MM-DD HH:MM:SS', in UTC
        order = ({"filter": f"updated_at:>'{since.replace('T', ' ').rstrip('Z')}'", "order": "updated_at asc"}
                 if since else {"order": "id asc"})
        for kind in KINDS:
            page, pages = 1, 1
            while page <= pages:
                resp = self._content(f"{kind}s/", {"limit": 100, "page": page, "fields": "id,updated_at", **order})
                if resp.status_code != 200:
                    raise refused(self.source.name, f"listing {kind}s", resp)
                body = json_body(resp)
                for item in body.get(f"{kind}s", []):
                    yield Listed(str(item["id"]), iso_utc(item["updated_at"]))
                pages = int(((body.get("meta") or {}).get("pagination") or {}).get("pages") or 1)
                page += 1

    def _content(self, route: str, params: dict) -> httpx.Response:
        base = (self.source.base_url or "").rstrip("/")
        return self.get(f"{base}/ghost/api/content/{route}", {"key": self.token("content_key_env") or "", **params},
                        {"Accept-Version": "v5.0"})


def _not_found(resp: httpx.Response) -> bool:
    """Ghost's own 404 verdict: `{"errors": [{"type": "NotFoundError", ...}]}`."""
    errors = error_document(resp).get("errors")
    return (resp.status_code == 404 and isinstance(errors, list) and bool(errors)
            and all(isinstance(e, dict) and e.get("type") == "NotFoundError" for e in errors))
