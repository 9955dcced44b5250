"""The connector contract: how one CMS signs and shapes its webhooks, how to fetch one
document by id, and how to list what it has published. A connector knows nothing about
Qdrant, chunks or embeddings; the pipeline knows nothing about any CMS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from connectors import standard_webhooks
from ragsync.answer import AnswerTooLarge, bounded
from ragsync import retry
from ragsync.errors import ConfigError, FetchError, Rejected
from ragsync.source import SourceConfig, env_secret


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
        return standard_webhooks.verify(self.secrets(), delivery.headers, delivery.body,
                                        delivery.received, tolerance_s)

    def parse(self, delivery: Delivery) -> list[str]:
        """The document ids a verified delivery says may have changed; [] for events to ignore.
        Nothing else in the body is trusted: the pass fetches the truth by id."""
        return [self.checked_id(json_object(delivery.body).get("id"), "id")]

    def valid_id(self, doc_id: str) -> bool:
        """The one id rule of this CMS, applied to webhook bodies and to the queue's keys alike
        (README "Sources"). Default: 1–256 printable characters, not "." or ".." (an HTTP client
        would resolve those as path segments)."""
        return 0 < len(doc_id) <= 256 and doc_id.isprintable() and doc_id not in (".", "..")

    def checked_id(self, value: Any, field: str) -> str:
        """A webhook body's id (a string, or an integer where the CMS uses them) that passes
        valid_id; anything else is a 400."""
        doc_id = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(doc_id, str) or not self.valid_id(doc_id):
            raise Rejected(400, f"'{field}' is missing or not a valid {type(self).__name__.removesuffix('Connector')} id")
        return doc_id

    def fetch(self, doc_id: str) -> Page | Gone:
        """The document's published state now, from the CMS's own API (never a URL from a body)."""
        raise NotImplementedError

    def list(self, since: str | None = None) -> Iterator[Listed]:
        """Every published document with its modified time (for the reconciler and the audit).
        With `since` (ISO 8601 UTC), only those modified after it, asked of the CMS itself so
        that a poll costs O(changes), not O(pages); a few more (at `since` exactly) are fine."""
        raise NotImplementedError

    # -- helpers for HTTP connectors -------------------------------------------------------

    signs_standard_webhooks: ClassVar[bool] = True    # its secrets are whsec_<base64>

    def secrets(self) -> list[str]:
        """The webhook secrets to accept: the variable's value, and during a rotation the old
        one in `<variable>_PREVIOUS`. Never split on spaces: a token may contain them. (Several
        `whsec_` secrets separated by spaces are split: base64 has no spaces.)"""
        values = [self.source.secret()]
        if previous := os.environ.get(f"{self.source.webhook_secret_env}_PREVIOUS"):
            values.append(previous)
        out: list[str] = []
        for value in values:
            parts = value.split()
            out.extend(parts if len(parts) > 1 and all(p.startswith("whsec_") for p in parts) else [value])
        return out

    #: whether the connector reaches the CMS at `base_url` (a folder of files does not)
    needs_base_url: ClassVar[bool] = True

    def check_settings(self) -> None:
        """At start and in `ragsync check`: settings without which no fetch can work."""
        base = self.source.base_url
        if self.needs_base_url and not base:
            raise ConfigError(f"source {self.source.name!r}: base_url is not set: set it to the CMS's address "
                              "(e.g. https://www.example.com)")
        if base and not base.startswith(("http://", "https://")):
            raise ConfigError(f"source {self.source.name!r}: base_url must start with http:// or https://, got {base!r}")

    def check_secrets(self) -> None:
        """At start: a secret that can never verify anything is a one-line error now, not a
        503 on every delivery later. A Standard Webhooks sender (ragsync's WordPress plugin,
        every library) signs nothing with a secret that is not whsec_<base64>."""
        for secret in self.secrets():
            if self.signs_standard_webhooks:
                if not secret.startswith("whsec_"):
                    raise ConfigError(f"source {self.source.name!r}: the webhook secret in "
                                      f"{self.source.webhook_secret_env} must look like whsec_<base64> (senders "
                                      "refuse anything else): make one with python3 -c 'import base64, os; "
                                      "print(\"whsec_\" + base64.b64encode(os.urandom(24)).decode())'")
                standard_webhooks.secret_key(secret)

    def setup(self, url: str) -> list[str]:
        """What to set in the CMS so that its webhooks reach this source (`ragsync check`)."""
        return [f"webhook URL: {url} (POST, Content-Type: application/json)",
                "signature: Standard Webhooks (headers webhook-id, webhook-timestamp, webhook-signature)",
                f"secret: the value of ${self.source.webhook_secret_env} (whsec_<base64>)",
                'body: {"type": "<event>", "id": "<document id>"}']

    def token(self, option: str) -> str | None:
        """A secret named by an `*_env` option (e.g. api_token_env), read from the environment."""
        var = self.source.options.get(option)
        return env_secret(str(var), f"source {self.source.name!r}") if var else None

    def get(self, url: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> httpx.Response:
        """GET with the one retry classification every connector shares: 2xx and the 'not
        visible' statuses come back to the caller; 429/5xx/timeouts are transient errors."""
        try:
            resp = bounded(self.http, "GET", url, params=params, headers=headers, max_bytes=MAX_ANSWER_BYTES,
                           deadline_s=ANSWER_DEADLINE_S)
        except AnswerTooLarge:
            raise TooLarge(url) from None
        except httpx.TimeoutException:
            raise FetchError(f"{self.source.name}: timeout fetching {url}", transient=True, outage=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{self.source.name}: cannot reach {url}: {type(exc).__name__}", transient=True,
                             outage=True) from None
        if resp.status_code < 300 or resp.status_code in (401, 403, 404, 410):
            return resp
        transient = retry.transient(resp.status_code)
        raise FetchError(f"{self.source.name}: HTTP {resp.status_code} from {url}",
                         transient=transient, retry_after=retry.retry_after(resp.headers), outage=transient)


MAX_ANSWER_BYTES = 32 * 1024 * 1024      # a CMS answer, after decompression
ANSWER_DEADLINE_S = 60.0                 # a whole CMS answer (each read has its own timeout too)


class TooLarge(FetchError):
    def __init__(self, url: str) -> None:
        super().__init__(f"the answer from {url} is larger than {MAX_ANSWER_BYTES >> 20} MiB (decompressed); "
                         "not read", transient=False)


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
    standard_webhooks.seconds(stamp_ms, now, tolerance_s, "signature timestamp", per_second=1000)


def well_formed(doc_id: Any, allowed: frozenset[str], longest: int = 64) -> bool:
    """An id made of the CMS's id characters only, 1 to `longest` of them."""
    return isinstance(doc_id, str) and 0 < len(doc_id) <= longest and set(doc_id) <= allowed


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

