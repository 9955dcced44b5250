"""What a CMS talks to: `POST /webhooks/<source>` (check, verify, parse to keys, record
durably, 202) and `GET /healthz`, plus the rules every ragsync app shares (Host check, JSON
errors). Nothing here touches the index or the model, so it runs in the daemon's app and, with
an embedded store, alone in the front process (front.py) that answers while the store's
process is busy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from connectors.base import Connector, Delivery
from ragsync.config import Config
from ragsync.door import RateLimiter, client, host_allowed
from ragsync.errors import RagsyncError, Rejected
from ragsync.queue import WorkQueue

log = logging.getLogger("ragsync.web")

LOG_LINES_PER_S = 2.0                  # accepted deliveries logged at INFO per source; the rest at DEBUG

alive = Blueprint("alive", __name__)
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


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
    writes its own try/except → 500, and no body ever carries a traceback: `failure`)."""
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes

    @app.before_request
    def check_host():
        """Everything a browser could be tricked into reading needs a Host check (DNS
        rebinding); signed webhooks (Receiver) need none."""
        if not host_allowed(current_intake().config):
            return jsonify(error="unknown Host: add it to [server] allowed_hosts"), 421
        return None

    @app.errorhandler(Exception)
    def error(exc: Exception):
        if request.blueprint == "admin" and isinstance(exc, RagsyncError) and not isinstance(exc, Rejected):
            return jsonify(error=str(exc)), 503          # the admin API (behind its token) gets the whole message
        status, body, headers = failure(exc, request.method, request.path)
        return jsonify(body), status, headers


def failure(exc: Exception, method: str, path: str) -> tuple[int, dict[str, str], dict[str, str]]:
    """An error as every ragsync app answers it: its status, a short JSON body and headers; the
    details (Qdrant's own text, paths, URLs, a traceback) go to the log only."""
    if isinstance(exc, Rejected):
        return exc.status, {"error": str(exc)}, {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if isinstance(exc, HTTPException):
        return exc.code or 400, {"error": _reason(exc)}, {}
    if isinstance(exc, RagsyncError):
        log.warning("%s %s: %s: %s", method, path, type(exc).__name__, exc)
        return 503, {"error": exc.public}, {}
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return 500, {"error": "internal error"}, {}


def _reason(exc: HTTPException) -> str:
    return {413: "body too large", 404: "not found", 405: "method not allowed"}.get(exc.code, exc.name.lower())


class Receiver:
    """`/webhooks/<source>` on plain WSGI, ahead of the Flask app it wraps (its `wsgi_app`):
    check, verify, parse to keys, record durably, answer 202 — no fetching or embedding here.
    A delivery is the one request a CMS floods us with, and Flask's per-request machinery (app
    and request contexts, routing, hooks, its JSON provider) was a third of the front's CPU for
    each; its answers keep the rules of prepare() (JSON errors, no traceback, no Host check)."""

    def __init__(self, app: WSGIApp, intake: Intake, limiter: RateLimiter) -> None:
        self.app, self.intake, self.limiter = app, intake, limiter

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        source = path.removeprefix("/webhooks/")
        if source == path or not source or "/" in source:
            return self.app(environ, start_response)
        headers: dict[str, str] = {}
        try:
            if environ["REQUEST_METHOD"] != "POST":
                headers["Allow"] = "POST"
                raise MethodNotAllowed()
            source = source.encode("latin-1").decode("utf-8", "replace")      # WSGI's path is bytes as latin-1
            if source in self.intake.connectors:
                status, body = 202, self.receive(source, Request(environ))
            else:
                status, body = 404, {"error": f"unknown source {source!r}"}
        except Exception as exc:
            status, body, more = failure(exc, environ["REQUEST_METHOD"], path)
            headers.update(more)
        data = json.dumps(body).encode()
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers.items()])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [data]      # HEAD: the headers alone

    def receive(self, source: str, request: Request) -> dict:
        intake = self.intake
        connector = intake.connectors[source]
        config = intake.config.sources[source]
        replay_window = 2 * intake.config.timestamp_tolerance_s      # longer than any timestamp we accept
        request.max_content_length = intake.config.max_body_bytes
        try:
            if not config.allows(client(intake.config, request)):
                raise Rejected(403, "address not allowed for this source")
            if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
                raise Rejected(415, "content type must be application/json")
            delivery = Delivery(method=request.method, target=_target(request), headers=request.headers,
                                query=request.args, body=request.get_data(cache=False), received=time.time())
            delivery_id = connector.verify(delivery, intake.config.timestamp_tolerance_s)
            # charged after the signature check: unsigned junk must not spend the CMS's own budget
            self.limiter.charge(source, config.rate_limit_per_s or 0, config.rate_limit_burst, "rate limit exceeded")
            doc_ids = connector.parse(delivery)
        except Rejected as exc:
            intake.metrics.rejected_delivery(source, exc.status)
            log.info("rejected delivery for %s: %s %s", source, exc.status, exc)
            raise
        queued = intake.queue.accept(source, delivery_id, doc_ids, replay_window)
        if queued is None:
            return {"accepted": [], "queued": 0, "duplicate": True}
        if not doc_ids:
            log.info("ignored delivery for %s (no document event)", source)
        else:                 # "is it working?" is answered by the log, yet a flood does not fill it
            loud = not self.limiter.wait_s(f"log {source}", LOG_LINES_PER_S, 20)
            log.log(logging.INFO if loud else logging.DEBUG, "accepted delivery for %s: %s", source,
                    ", ".join(doc_ids), extra={"source": source, "doc_id": doc_ids[0], "event_id": delivery_id})
        intake.metrics.webhook(source)
        return {"accepted": doc_ids, "queued": len(queued), "ignored": not doc_ids}


def _target(request: Request) -> str:
    """The request target as the sender signed it: path plus the raw query string."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


@alive.get("/healthz")
def healthz():
    return jsonify(status="ok", service="ragsync", instance=current_intake().instance)
