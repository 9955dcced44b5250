"""The connector contract: how one CMS signs and shapes its webhooks, how to fetch one
document by id, and how to list what it has published. A connector knows nothing about
Qdrant, chunks or embeddings; the pipeline knows nothing about any CMS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

import httpx

from connectors import standard_webhooks
from ragsync.config import SourceConfig, env_secret
from ragsync.errors import FetchError, Rejected


@dataclass(frozen=True)
class Delivery:
    """One webhook request exactly as it arrived: the raw bytes are what signatures cover."""
    method: str
    target: str                  # path and query string as sent, e.g. "/webhooks/ghost?event=post.deleted"
    headers: Mapping[str, str]   # case-insensitive lookup
    query: Mapping[str, str]
    body: bytes
    received: float              # time.time() on arrival


@dataclass(frozen=True)
class Page:
    """A published document as the CMS's own API returns it now."""
    doc_id: str
    title: str
    url: str
    html: str
    modified: str          # ISO 8601 UTC, e.g. "2026-11-25T18:00:00Z"


@dataclass(frozen=True)
class Gone:
    """The document is not published (deleted, draft, private, trashed, protected)."""
    doc_id: str
    reason: str
    modified: str = ""     # when the CMS still shows it (e.g. password-protected): its modified time


@dataclass(frozen=True)
class Listed:
    """One entry of a listing: enough to decide whether a body fetch is needed."""
    doc_id: str
    modified: str


class Connector:
    """Base class; one subclass per CMS folder, registered by one line in connectors.TYPES.
    The defaults speak Standard Webhooks with a JSON body carrying `id`, which is what
    ragsync's own CMS plugins send."""

    #: config keys this connector accepts in its [[sources]] table, beyond the common ones
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, source: SourceConfig, http: httpx.Client) -> None:
        self.source = source
        self.http = http

    def verify(self, delivery: Delivery, tolerance_s: int) -> str | None:
        """Authenticate a delivery from its raw bytes (constant-time compares); return an id
        that is the same for a replay of it (None when the scheme has none), or raise Rejected."""
        return standard_webhooks.verify(self.source.secret(), delivery.headers, delivery.body,
                                        delivery.received, tolerance_s)

    def parse(self, delivery: Delivery) -> list[str]:
        """The document ids a verified delivery says may have changed; [] for events to ignore.
        Nothing else in the body is trusted: the pass fetches the truth by id."""
        payload = json_object(delivery.body)
        doc_id = payload.get("id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id).strip() == "":
            raise Rejected(400, "body needs an 'id' (string or integer)")
        return [str(doc_id)]

    def fetch(self, doc_id: str) -> Page | Gone:
        """The document's published state now, from the CMS's own API (never a URL from a body)."""
        raise NotImplementedError

    def list(self) -> Iterator[Listed]:
        """Every published document with its modified time (for the reconciler)."""
        raise NotImplementedError

    # -- helpers for HTTP connectors -------------------------------------------------------

    def secrets(self) -> list[str]:
        """The webhook secrets to accept: one, or two separated by a space during a rotation."""
        return self.source.secret().split()

    def token(self, option: str) -> str | None:
        """A secret named by an `*_env` option (e.g. api_token_env), read from the environment."""
        var = self.source.options.get(option)
        return env_secret(str(var), f"source {self.source.name!r}") if var else None

    def get(self, url: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET with the one retry classification every connector shares: 2xx and the 'not
        visible' statuses come back to the caller; 429/5xx/timeouts are transient errors."""
        try:
            resp = self.http.get(url, params=params, headers=headers)
        except httpx.TimeoutException:
            raise FetchError(f"{self.source.name}: timeout fetching {url}", transient=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{self.source.name}: cannot reach {url}: {type(exc).__name__}", transient=True) from None
        if resp.status_code < 300 or resp.status_code in (401, 403, 404, 410):
            return resp
        transient = resp.status_code == 429 or resp.status_code >= 500
        raise FetchError(f"{self.source.name}: HTTP {resp.status_code} from {url}",
                         transient=transient, retry_after=_retry_after(resp))


def json_body(resp: httpx.Response) -> Any:
    """A CMS answer's JSON. Anything else (a WAF challenge, a captive or maintenance page) is
    an error to retry, then park: never read as a verdict on the document."""
    try:
        return resp.json()
    except ValueError:
        raise FetchError(f"non-JSON answer from {resp.request.url.copy_with(query=None)}", transient=True) from None


def error_document(resp: httpx.Response) -> dict[str, Any]:
    """The CMS's own JSON error document, or {} when the answer is not one (an HTML page
    from a WAF, CDN or proxy): only the former may carry a verdict on a document."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def no_verdict(source: str, what: str, resp: httpx.Response) -> FetchError:
    """An answer that is not the CMS's documented verdict on the document (a WAF page, a proxy
    404, a closed API, an unexpected code): retried with backoff, then parked; never a deletion."""
    return FetchError(f"{source}: {what} answered HTTP {resp.status_code} without the CMS's own "
                      "'not published' verdict; nothing deleted", transient=True)


def refused(source: str, what: str, resp: httpx.Response) -> FetchError:
    """The CMS's own JSON refusal (a rejected API key, a listing that is not there) means ragsync
    is misconfigured: straight to the dead-letter queue. The same status as an HTML page is a
    WAF or proxy in the way: retried. Never "the document is gone" either way."""
    return FetchError(f"{source}: {what} answered HTTP {resp.status_code}", transient=not error_document(resp))


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def same(given: str, expected: str) -> bool:
    """Constant-time string equality (signatures, tokens)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def replay_id(*parts: str) -> str:
    """A delivery id for schemes without one: a replay of the same signed request repeats it."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def check_age(stamp_ms: str, now: float, tolerance_s: int) -> None:
    """Reject a millisecond timestamp outside the tolerance window (Ghost, Contentful)."""
    try:
        stamp = int(stamp_ms) / 1000
    except ValueError:
        raise Rejected(401, "signature timestamp is not an integer") from None
    if abs(now - stamp) > tolerance_s:
        raise Rejected(401, "signature timestamp is outside the tolerance window")


def well_formed(doc_id: Any, allowed: frozenset[str]) -> bool:
    """An id from a webhook body or the queue: a non-empty string of the CMS's id characters."""
    return isinstance(doc_id, str) and bool(doc_id) and set(doc_id) <= allowed


def fill(template: str, values: Mapping[str, Any]) -> str:
    """A `url_template` filled from a document's fields; a field it lacks renders empty."""
    return template.format_map(_Blank({k: v for k, v in values.items() if isinstance(v, (str, int, float))}))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "body is not valid JSON") from None
    except RecursionError:
        raise Rejected(400, "body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object")
    return payload


def iso_utc(value: str | float | datetime) -> str:
    """Normalise a CMS time to 'YYYY-MM-DDTHH:MM:SSZ' so that times compare as strings."""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    else:
        text = value.strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "")))
    except ValueError:
        return None
