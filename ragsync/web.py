"""The Flask app: webhooks (for CMSs), search and MCP (for search teams and agents), admin
(for the CLI and operators), health and metrics. Webhooks, /healthz and the rules every app
shares (JSON errors, the Host check) are in intake.py.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ragsync.door import RateLimiter, bearer, charge_search, current_engine, current_ops, origin_allowed, same
from ragsync.engine import Engine
from ragsync.intake import Receiver, alive, prepare
from ragsync.mcp import Bridge
from ragsync.operations import Local
from ragsync.status_page import status_page

search = Blueprint("search", __name__)
admin = Blueprint("admin", __name__, url_prefix="/admin")
health = Blueprint("health", __name__)


def create_app(engine: Engine, worker: bool = False) -> Flask:
    """`worker`: only health and metrics (a `ragsync worker` serves those on its own port)."""
    app = Flask("ragsync")
    prepare(app, engine.config)
    app.extensions["ragsync"] = engine
    app.extensions["ragsync.operations"] = Local(engine)
    app.extensions["ragsync.limiter"] = RateLimiter()
    app.extensions["ragsync.mcp"] = Bridge(app.extensions["ragsync.operations"], engine.config.max_body_bytes)
    for bp in (alive, health) if worker else (search, admin, alive, health, status_page):
        app.register_blueprint(bp)
    if not worker:
        app.wsgi_app = Receiver(app.wsgi_app, engine, app.extensions["ragsync.limiter"])   # type: ignore[method-assign]
    return app


def _args() -> dict:
    """An admin POST's JSON object (an empty one when there is none)."""
    args = request.get_json(silent=True)
    return args if isinstance(args, dict) else {}


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
    """`?until=<CMS modified time>&wait_s=N`: answered once the page is indexed at that
    revision or later, or after N seconds with what there is."""
    try:
        wait_s = float(request.args.get("wait_s", "0"))
    except ValueError:
        return jsonify(error="'wait_s' must be a number of seconds"), 400
    return jsonify(current_ops().page(source, doc_id, request.args.get("until"), wait_s))


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
