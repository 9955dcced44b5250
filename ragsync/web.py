"""The Flask app: webhooks (for CMSs), search (for search teams), admin (for the CLI and
operators), health and metrics. Every error leaves as a short JSON body with its status;
no handler writes its own try/except → 500, and no body ever carries a traceback.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from connectors.base import Delivery
from ragsync.embed import EmbedderUnavailable
from ragsync.engine import Engine
from ragsync.errors import RagsyncError, Rejected, StoreError
from ragsync.operations import Local
from ragsync.status_page import status_page
from ragsync.source import within

log = logging.getLogger("ragsync.web")

webhooks = Blueprint("webhooks", __name__)
search = Blueprint("search", __name__)
admin = Blueprint("admin", __name__, url_prefix="/admin")
health = Blueprint("health", __name__)


def create_app(engine: Engine, worker: bool = False) -> Flask:
    """`worker`: only health and metrics (a `ragsync worker` serves those on its own port)."""
    app = Flask("ragsync")
    app.config["MAX_CONTENT_LENGTH"] = engine.config.max_body_bytes
    app.extensions["ragsync"] = engine
    app.extensions["ragsync.operations"] = Local(engine)
    app.extensions["ragsync.limiter"] = RateLimiter()
    for bp in (health,) if worker else (webhooks, search, admin, health, status_page):
        app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=_reason(exc)), exc.code

    @app.errorhandler(Rejected)
    def rejected(exc: Rejected):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return jsonify(error=str(exc)), exc.status, headers

    @app.errorhandler(RagsyncError)
    def ragsync_error(exc: RagsyncError):
        """The admin API (behind its token) gets the whole message; anyone else a short one,
        with the details (Qdrant's own text, paths, URLs) in the log only."""
        if request.blueprint == "admin":
            return jsonify(error=str(exc)), 503
        log.warning("%s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
        return jsonify(error=_unavailable(exc)), 503

    @app.errorhandler(Exception)
    def internal(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal error"), 500

    return app


LOG_LINES_PER_S = 2.0                  # accepted deliveries logged at INFO per source; the rest at DEBUG


def _unavailable(exc: RagsyncError) -> str:
    if isinstance(exc, StoreError):
        return "the index is unavailable, retry later"
    if isinstance(exc, EmbedderUnavailable):
        return "the embedding server is unavailable, retry later"
    return "temporarily unavailable, retry later"


def _engine() -> Engine:
    return current_app.extensions["ragsync"]


def _ops() -> Local:
    return current_app.extensions["ragsync.operations"]


def _args() -> dict:
    """An admin POST's JSON object (an empty one when there is none)."""
    args = request.get_json(silent=True)
    return args if isinstance(args, dict) else {}


def _client() -> str | None:
    """The client's address: the peer's, or — when the peer is one of `[server] trusted_proxies`
    — the nearest address in X-Forwarded-For that is not a trusted proxy (a client can write
    anything at the far end of that header, so it is read from the proxy's side)."""
    proxies = _engine().config.trusted_proxies
    peer = request.remote_addr
    if not proxies or not within(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    return next((hop for hop in reversed(hops) if not within(hop, proxies)), peer)


def _bearer() -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


def _reason(exc: HTTPException) -> str:
    return {413: "body too large", 404: "not found", 405: "method not allowed"}.get(exc.code, exc.name.lower())


# -- webhooks ---------------------------------------------------------------------------------

class RateLimiter:
    """A token bucket per source: a flood gets 429 with Retry-After instead of a slow server."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}     # source → (tokens, at)
        self.lock = threading.Lock()

    def wait_s(self, source: str, rate: float, burst: int) -> float:
        """0 when a delivery may pass now (and take a token), else seconds until one may."""
        with self.lock:
            now = time.monotonic()
            tokens, at = self.buckets.get(source, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            if tokens >= 1:
                self.buckets[source] = (tokens - 1, now)
                return 0.0
            self.buckets[source] = (tokens, now)
            return (1 - tokens) / rate


@webhooks.post("/webhooks/<source>")
def receive(source: str):
    """Check, verify, parse to keys, record durably, answer 202. No fetching or embedding here."""
    engine = _engine()
    connector = engine.connectors.get(source)
    if connector is None:
        return jsonify(error=f"unknown source {source!r}"), 404
    config = engine.config.sources[source]
    replay_window = 2 * engine.config.timestamp_tolerance_s      # longer than any timestamp we accept
    try:
        if not config.allows(_client()):
            raise Rejected(403, "address not allowed for this source")
        if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
            raise Rejected(415, "content type must be application/json")
        delivery = Delivery(method=request.method, target=_target(), headers=request.headers,
                            query=request.args, body=request.get_data(cache=False), received=time.time())
        delivery_id = connector.verify(delivery, engine.config.timestamp_tolerance_s)
        # charged after the signature check: unsigned junk must not spend the CMS's own budget
        if config.rate_limit_per_s and (wait := current_app.extensions["ragsync.limiter"].wait_s(
                source, config.rate_limit_per_s, config.rate_limit_burst)):
            raise Rejected(429, "rate limit exceeded", retry_after=math.ceil(wait))
        doc_ids = connector.parse(delivery)
    except Rejected as exc:
        engine.metrics.rejected.labels(source, str(exc.status)).inc()
        log.info("rejected delivery for %s: %s %s", source, exc.status, exc)
        raise
    queued = engine.queue.accept(source, delivery_id, doc_ids, replay_window)
    if queued is None:
        return jsonify(accepted=[], queued=0, duplicate=True), 202
    if not doc_ids:
        log.info("ignored delivery for %s (no document event)", source)
    else:                 # "is it working?" is answered by the log, yet a flood does not fill it
        loud = not current_app.extensions["ragsync.limiter"].wait_s(f"log {source}", LOG_LINES_PER_S, 20)
        log.log(logging.INFO if loud else logging.DEBUG, "accepted delivery for %s: %s", source,
                ", ".join(doc_ids), extra={"source": source, "doc_id": doc_ids[0], "event_id": delivery_id})
    engine.metrics.webhook(source)
    return jsonify(accepted=doc_ids, queued=len(queued), ignored=not doc_ids), 202


def _target() -> str:
    """The request target as the sender signed it: path plus the raw query string."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


# -- search -----------------------------------------------------------------------------------

@search.before_request
def require_search_token():
    config = _engine().config
    token = config.search_token()
    if token is not None and not hmac.compare_digest(_bearer().encode(), token.encode()):
        return jsonify(error="bad or missing search API key (Authorization: Bearer ...)"), 401
    # its own budget per client: queries share the model with the passes
    if config.search_rate_limit_per_s and (wait := current_app.extensions["ragsync.limiter"].wait_s(
            f"search {_client()}", config.search_rate_limit_per_s, 2 * config.search_rate_limit_per_s)):
        raise Rejected(429, "search rate limit exceeded", retry_after=math.ceil(wait))
    return None


@search.get("/search")
def query():
    try:
        limit = int(request.args.get("limit", "10"))
    except ValueError:
        return jsonify(error="'limit' must be an integer"), 400
    q = request.args.get("q", "")
    filters = {k: request.args.get(k) for k in ("source", "url_prefix", "modified_after", "modified_before", "group")}
    results = _ops().search(q, limit, **filters)
    return jsonify(query=q.strip(), **({"group": "page"} if filters["group"] == "page" else {}), results=results)


# -- health and metrics -------------------------------------------------------------------------

@health.get("/healthz")
def healthz():
    return jsonify(status="ok", service="ragsync", instance=_engine().instance)


@health.get("/readyz")
def readyz():
    engine = _engine()
    if (problem := engine.embedder.ready()) is not None:
        return jsonify(status="not ready", error=problem), 503
    try:
        engine.store.count_chunks()
        engine.queue.pending()
    except Exception as exc:
        return jsonify(status="not ready", error=type(exc).__name__), 503
    return jsonify(status="ready")


@health.get("/metrics")
def metrics():
    engine = _engine()
    return Response(engine.metrics.render(), mimetype="text/plain; version=0.0.4")


# -- admin (bearer token) -----------------------------------------------------------------------

@admin.before_request
def require_token():
    token = _engine().config.admin_token()
    if token is None:
        return jsonify(error=f"admin API disabled: set {_engine().config.admin_token_env}"), 403
    if not hmac.compare_digest(_bearer().encode(), token.encode()):
        return jsonify(error="bad or missing bearer token"), 401
    return None


@admin.get("/status")
def status():
    return jsonify(_ops().status())


@admin.get("/pages/<source>/<path:doc_id>")
def page(source: str, doc_id: str):
    return jsonify(_ops().page(source, doc_id))


@admin.get("/export")
def export():
    return Response((line + "\n" for line in _ops().export()), mimetype="application/x-ndjson")


@admin.post("/reconcile")
def reconcile():
    args = _args()
    return jsonify(reports=_ops().reconcile(args.get("source") or None, dry_run=bool(args.get("dry_run")),
                                            force=bool(args.get("force"))))


@admin.post("/reindex")
def reindex():
    args = _args()
    return jsonify(_ops().reindex(args.get("source") or None, drop_old=bool(args.get("drop_old"))))


@admin.get("/dlq")
def dlq_list():
    return jsonify(parked=_ops().dlq())


@admin.post("/dlq/replay")
def dlq_replay():
    return jsonify(replayed=_ops().replay(_args().get("keys") or None))


@admin.post("/dlq/drop")
def dlq_drop():
    return jsonify(dropped=_ops().drop(_args().get("keys") or None))
