"""What a CMS talks to: `POST /webhooks/<source>` (check, verify, parse to keys, record
durably, 202) and `GET /healthz`, plus the rules every ragsync app shares (Host check, JSON
errors). Nothing here touches the index or the model, so it runs in the daemon's app and, with
an embedded store, alone in the front process (front.py) that answers while the store's
process is busy.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from connectors.base import Connector, Delivery
from ragsync.config import Config
from ragsync.door import client, host_allowed
from ragsync.errors import RagsyncError, Rejected
from ragsync.queue import WorkQueue

log = logging.getLogger("ragsync.web")

LOG_LINES_PER_S = 2.0                  # accepted deliveries logged at INFO per source; the rest at DEBUG

webhooks = Blueprint("webhooks", __name__)
alive = Blueprint("alive", __name__)


class Deliveries(Protocol):
    """Where intake counts what it accepted and refused (Metrics, or the front's relay to it)."""

    def webhook(self, source: str) -> None: ...

    def rejected_delivery(self, source: str, status: int) -> None: ...


class Intake(Protocol):
    """What the webhook and liveness views need: an Engine has it, and so has the front."""

    config: Config
    connectors: dict[str, Connector]
    queue: WorkQueue
    metrics: Deliveries
    instance: str | None


def current_intake() -> Intake:
    return current_app.extensions["ragsync"]


def prepare(app: Flask, config: Config) -> None:
    """The rules of every ragsync app: the body limit, the Host check (by the config in force:
    a reindex may switch it), and errors as a short JSON body with their status (no handler
    writes its own try/except → 500, and no body ever carries a traceback)."""
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes

    @app.before_request
    def check_host():
        """Signed webhooks need no Host check; everything a browser could be tricked into
        reading does (DNS rebinding)."""
        if request.blueprint != "webhooks" and not host_allowed(current_intake().config):
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


def _reason(exc: HTTPException) -> str:
    return {413: "body too large", 404: "not found", 405: "method not allowed"}.get(exc.code, exc.name.lower())


@webhooks.post("/webhooks/<source>")
def receive(source: str):
    """Check, verify, parse to keys, record durably, answer 202. No fetching or embedding here."""
    intake = current_intake()
    connector = intake.connectors.get(source)
    if connector is None:
        return jsonify(error=f"unknown source {source!r}"), 404
    config = intake.config.sources[source]
    replay_window = 2 * intake.config.timestamp_tolerance_s      # longer than any timestamp we accept
    limiter = current_app.extensions["ragsync.limiter"]
    try:
        if not config.allows(client(intake.config)):
            raise Rejected(403, "address not allowed for this source")
        if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
            raise Rejected(415, "content type must be application/json")
        delivery = Delivery(method=request.method, target=_target(), headers=request.headers,
                            query=request.args, body=request.get_data(cache=False), received=time.time())
        delivery_id = connector.verify(delivery, intake.config.timestamp_tolerance_s)
        # charged after the signature check: unsigned junk must not spend the CMS's own budget
        limiter.charge(source, config.rate_limit_per_s or 0, config.rate_limit_burst, "rate limit exceeded")
        doc_ids = connector.parse(delivery)
    except Rejected as exc:
        intake.metrics.rejected_delivery(source, exc.status)
        log.info("rejected delivery for %s: %s %s", source, exc.status, exc)
        raise
    queued = intake.queue.accept(source, delivery_id, doc_ids, replay_window)
    if queued is None:
        return jsonify(accepted=[], queued=0, duplicate=True), 202
    if not doc_ids:
        log.info("ignored delivery for %s (no document event)", source)
    else:                 # "is it working?" is answered by the log, yet a flood does not fill it
        loud = not limiter.wait_s(f"log {source}", LOG_LINES_PER_S, 20)
        log.log(logging.INFO if loud else logging.DEBUG, "accepted delivery for %s: %s", source,
                ", ".join(doc_ids), extra={"source": source, "doc_id": doc_ids[0], "event_id": delivery_id})
    intake.metrics.webhook(source)
    return jsonify(accepted=doc_ids, queued=len(queued), ignored=not doc_ids), 202


def _target() -> str:
    """The request target as the sender signed it: path plus the raw query string."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


@alive.get("/healthz")
def healthz():
    return jsonify(status="ok", service="ragsync", instance=current_intake().instance)
