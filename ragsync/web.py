"""The Flask app: webhooks (for CMSs), search and MCP (for search teams and agents), admin
(for the CLI and operators), health and metrics. Every error leaves as a short JSON body with its status;
no handler writes its own try/except → 500, and no body ever carries a traceback.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from connectors.base import Delivery
from ragsync.door import (RateLimiter, bearer, charge_search, client, current_engine, current_ops, host_allowed,
                          origin_allowed, same)
from ragsync.engine import Engine
from ragsync.errors import RagsyncError, Rejected
from ragsync.mcp import Bridge
from ragsync.operations import Local
from ragsync.status_page import status_page

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
    app.extensions["ragsync.mcp"] = Bridge(app.extensions["ragsync.operations"], engine.config.max_body_bytes)
    for bp in (health,) if worker else (webhooks, search, admin, health, status_page):
        app.register_blueprint(bp)

    @app.before_request
    def check_host():
        """Signed webhooks need no Host check; everything a browser could be tricked into
        reading does (DNS rebinding)."""
        if request.blueprint != "webhooks" and not host_allowed(engine.config):
            return jsonify(error="unknown Host: add it to [server] allowed_hosts"), 421
        return None

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
        return jsonify(error=exc.public), 503

    @app.errorhandler(Exception)
    def internal(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal error"), 500

    return app


LOG_LINES_PER_S = 2.0                  # accepted deliveries logged at INFO per source; the rest at DEBUG



def _args() -> dict:
    """An admin POST's JSON object (an empty one when there is none)."""
    args = request.get_json(silent=True)
    return args if isinstance(args, dict) else {}


def _reason(exc: HTTPException) -> str:
    return {413: "body too large", 404: "not found", 405: "method not allowed"}.get(exc.code, exc.name.lower())


# -- webhooks ---------------------------------------------------------------------------------

@webhooks.post("/webhooks/<source>")
def receive(source: str):
    """Check, verify, parse to keys, record durably, answer 202. No fetching or embedding here."""
    engine = current_engine()
    connector = engine.connectors.get(source)
    if connector is None:
        return jsonify(error=f"unknown source {source!r}"), 404
    config = engine.config.sources[source]
    replay_window = 2 * engine.config.timestamp_tolerance_s      # longer than any timestamp we accept
    try:
        if not config.allows(client(engine.config)):
            raise Rejected(403, "address not allowed for this source")
        if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
            raise Rejected(415, "content type must be application/json")
        delivery = Delivery(method=request.method, target=_target(), headers=request.headers,
                            query=request.args, body=request.get_data(cache=False), received=time.time())
        delivery_id = connector.verify(delivery, engine.config.timestamp_tolerance_s)
        # charged after the signature check: unsigned junk must not spend the CMS's own budget
        current_app.extensions["ragsync.limiter"].charge(source, config.rate_limit_per_s or 0,
                                                          config.rate_limit_burst, "rate limit exceeded")
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
    config = current_engine().config
    token = config.search_token()
    if token is not None and not same(bearer(), token):
        return jsonify(error="bad or missing search API key (Authorization: Bearer ...)"), 401
    charge_search(config)
    return None


@search.get("/search")
def query():
    try:
        limit = int(request.args.get("limit", "10"))
    except ValueError:
        return jsonify(error="'limit' must be an integer"), 400
    q = request.args.get("q", "")
    filters = {k: request.args.get(k) for k in ("source", "url_prefix", "modified_after", "modified_before", "group",
                                                "mode")}
    results = current_ops().search(q, limit, **filters)
    return jsonify(query=q.strip(), **({"group": "page"} if filters["group"] == "page" else {}), results=results)


@search.get("/pages/<source>/<path:doc_id>")
def document(source: str, doc_id: str):
    return jsonify(current_ops().document(source, doc_id))


@search.get("/sources")
def sources():
    return jsonify(sources=current_ops().sources())


@search.get("/index/status")
def index_status():
    return jsonify(current_ops().index_status())


@search.post("/mcp")
def mcp():
    """The MCP tools over streamable HTTP, behind the same door as /search (token, rate limit,
    Host); a browser page of a site not named in [server] allowed_hosts may not call them.
    POST only: stateless, the server never speaks first, so there is no GET stream (405, as the
    protocol lets a server answer) to hold an HTTP thread open."""
    if not origin_allowed(current_engine().config):
        return jsonify(error="unknown Origin: add its host to [server] allowed_hosts"), 403
    return current_app.extensions["ragsync.mcp"].wsgi


# -- health and metrics -------------------------------------------------------------------------

@health.get("/healthz")
def healthz():
    return jsonify(status="ok", service="ragsync", instance=current_engine().instance)


@health.get("/readyz")
def readyz():
    engine = current_engine()
    if (problem := engine.embedder.ready()) is not None:
        return jsonify(status="not ready", error=problem), 503
    try:
        engine.store.count_chunks()
        engine.queue.summary()
    except Exception as exc:
        return jsonify(status="not ready", error=type(exc).__name__), 503
    return jsonify(status="ready")


@health.get("/metrics")
def metrics():
    engine = current_engine()
    return Response(engine.metrics.render(), mimetype="text/plain; version=0.0.4")


# -- admin (bearer token) -----------------------------------------------------------------------

@admin.before_request
def require_token():
    token = current_engine().config.admin_token()
    if token is None:
        return jsonify(error=f"admin API disabled: set {current_engine().config.admin_token_env}"), 403
    if not same(bearer(), token):
        return jsonify(error="bad or missing bearer token"), 401
    return None


@admin.get("/status")
def status():
    return jsonify(current_ops().status())


@admin.get("/pages/<source>/<path:doc_id>")
def page(source: str, doc_id: str):
    return jsonify(current_ops().page(source, doc_id))


@admin.get("/export")
def export():
    return Response((line + "\n" for line in current_ops().export()), mimetype="application/x-ndjson")


@admin.post("/reconcile")
def reconcile():
    args = _args()
    return jsonify(reports=current_ops().reconcile(args.get("source") or None, dry_run=bool(args.get("dry_run")),
                                            force=bool(args.get("force"))))


@admin.post("/reindex")
def reindex():
    args = _args()
    return jsonify(current_ops().reindex(args.get("source") or None, drop_old=bool(args.get("drop_old"))))


@admin.get("/dlq")
def dlq_list():
    return jsonify(parked=current_ops().dlq())


@admin.post("/dlq/replay")
def dlq_replay():
    return jsonify(replayed=current_ops().replay(_args().get("keys")))


@admin.post("/dlq/drop")
def dlq_drop():
    return jsonify(dropped=current_ops().drop(_args().get("keys")))
