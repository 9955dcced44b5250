"""`GET /` (and `/status`, and the machine-readable `/openapi.json`): one server-rendered HTML page that shows what ragsync knows, the
way Sidekiq's or Flower's pages do — no front-end build, no external assets (it works offline
and behind a proxy), everything escaped, a strict Content-Security-Policy. Read-only to
anyone who can reach it; with the admin token (a form that sets a same-site, HTTP-only
cookie, or the bearer header) it offers DLQ replay/drop and "reconcile now", each a POST
that carries a CSRF token derived from the admin token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request

from ragsync.door import bearer, charge_search, client_key, current_engine, current_ops, https, same
from ragsync.errors import Rejected
from ragsync.fingerprint import short
from ragsync.index import describe
from ragsync.mcp import TOOLS
from ragsync.metrics import quantiles
from ragsync.snapshot import SNAPSHOT_AGE_S
from ragsync.times import ago
from ragsync.openapi import document

status_page = Blueprint("status_page", __name__)

COOKIE = "ragsync_session"
DAY, HOUR = 86400.0, 3600.0
DLQ_SHOWN = 50                          # the newest parked keys listed (the count shows them all)
SESSION_S = 12 * HOUR                   # a login lasts a working day
LOGIN_PER_CLIENT = (1 / 12, 5)          # (tokens per second, burst): 5 guesses, then one per 12 s
LOGIN_IN_ALL = (1.0, 30)                # every client together



def _derived(purpose: str) -> str | None:
    """A value derived from the admin token (never the token itself in a cookie or a form)."""
    token = current_engine().config.admin_token()
    return hmac.new(token.encode(), purpose.encode("utf-8", "replace"), hashlib.sha256).hexdigest() if token else None


def _session() -> str | None:
    """The request's session cookie when it is one this token issued within SESSION_S."""
    value = request.cookies.get(COOKIE, "")
    issued, _, mac = value.rpartition(".")
    when, _, _nonce = issued.partition(".")
    expected = _derived(f"ragsync session {issued}")
    if not expected or not when.isdigit() or not same(mac, expected):
        return None
    return value if 0 <= time.time() - int(when) <= SESSION_S else None


def _is_admin() -> bool:
    token = current_engine().config.admin_token()
    return bool(token) and (_session() is not None or same(bearer(), token or ""))


def _csrf() -> str:
    """The forms' token, bound to this session (or to the bearer, for API clients)."""
    return _derived(f"ragsync csrf {_session() or ''}") or ""


def _require_admin_post() -> None:
    """Every action: an admin session and the page's own CSRF token (SameSite cookies too)."""
    csrf = _csrf()
    if not _is_admin() or not csrf or not same(request.form.get("csrf", ""), csrf):
        raise Rejected(403, "not allowed: log in on the status page first (admin token)")


@status_page.get("/")
@status_page.get("/status")
def show():
    nonce = secrets.token_urlsafe(16)
    started = time.perf_counter()
    body = _render(nonce, request.args.get("q", "").strip())
    resp = Response(body, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; "
                                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    return resp


@status_page.get("/openapi.json")
def openapi():
    return jsonify(document(current_engine()))


@status_page.post("/status/login")
def login():
    """Guesses are limited per client and in all; each login gets its own session value, with
    an issue time and a maximum age, Secure when the page was reached over HTTPS."""
    config, limiter = current_engine().config, current_app.extensions["ragsync.limiter"]
    limiter.charge(f"login {client_key(config)}", *LOGIN_PER_CLIENT, "too many logins from this address")
    limiter.charge("login", *LOGIN_IN_ALL, "too many logins")
    token = config.admin_token()
    if not token or not same(request.form.get("token", ""), token):
        raise Rejected(403, "wrong admin token")
    issued = f"{int(time.time())}.{secrets.token_urlsafe(16)}"
    resp = redirect("/", 303)
    resp.set_cookie(COOKIE, f"{issued}.{_derived(f'ragsync session {issued}')}", max_age=int(SESSION_S),
                    httponly=True, samesite="Strict", secure=https(config), path="/")
    return resp


@status_page.post("/status/logout")
def logout():
    _require_admin_post()
    resp = redirect("/", 303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@status_page.post("/status/dlq/<action>")
def dlq(action: str):
    _require_admin_post()
    if action not in ("replay", "drop"):
        raise Rejected(404, "action must be replay or drop")
    source, _, doc_id = request.form.get("key", "").partition("/")
    if not source or not doc_id:
        raise Rejected(400, "'key' must name one parked key as source/doc_id")
    getattr(current_ops(), action)([[source, doc_id]])
    return redirect("/", 303)


@status_page.post("/status/reconcile")
def reconcile():
    _require_admin_post()
    current_ops().reconcile(request.form.get("source") or None)
    return redirect("/", 303)


# -- rendering (templates/status.html) ------------------------------------------------------------

def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, size in (("d", DAY), ("h", HOUR), ("min", 60.0), ("s", 1.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value * 1000:.0f} ms"


def _pair(q: tuple[float, float] | None) -> str:
    return " / ".join(map(_seconds, q)) if q else "–"


def _row(name: str, state: dict[str, Any], status: dict[str, Any], now: float) -> dict[str, Any]:
    """One source's line: its figures, its clocks and its freshness chart (p50 and p95 per hour)."""
    metrics = current_engine().metrics
    polls, rec = status["polling"].get(name, {}), status["reconcile"].get(name, {})
    samples = metrics.freshness_by_hour(name, now)
    hours = [quantiles(values) for values in samples]
    top = max((q[1] for q in hours if q), default=0.0) or 1.0
    caught = metrics.catch_rate(name)
    return {**state, "name": name, "webhook": ago(metrics.webhook_at.get(name)),
            "clocks": " / ".join(ago(polls.get(c, {}).get("ok_at")) for c in ("poll", "audit")),
            "reconcile": rec and {"ago": ago(rec.get("at")), "listed": f'{rec.get("listed", 0):.0f}',
                                  "caught": f'{rec.get("caught_total", 0):.0f}', "error": rec.get("error")},
            "hour": _pair(hours[-1]), "day": _pair(quantiles([v for values in samples for v in values])),
            "caught": "–" if caught is None else f"{caught:.0%}",
            "chart": [[(h * 10 + 5, 58 - 54 * q[i] / top) for h, q in enumerate(hours) if q] for i in (0, 1)],
            "chart_top": _seconds(top)}


def _render(nonce: str, query: str) -> str:
    engine, now = current_engine(), time.time()
    status = engine.snapshot(max_age_s=SNAPSHOT_AGE_S).as_dict()
    collection, admin = status["collection"], _is_admin()
    parked = [{"key": f"{p.source}/{p.doc_id}", "attempts": p.attempts, "failed": ago(p.failed_at), "error": p.error}
              for p in engine.queue.dead(limit=DLQ_SHOWN)]
    return render_template(
        "status.html", nonce=nonce, csrf=_csrf(), admin=admin, status=status, collection=collection,
        oldest=_seconds(status["oldest_pending_s"]), embedder=engine.embedder.ready() or "ready",
        fingerprint=short(collection["fingerprint"]) if collection["fingerprint"] else "–",
        store=describe(collection["store"]), tools=TOOLS, parked=parked, query=query,
        rows=[_row(name, state, status, now) for name, state in status["sources"].items()],
        results=_results(query, admin) if query else None, login_offered=bool(engine.config.admin_token()))


def _results(query: str, admin: bool) -> dict[str, Any]:
    config = current_engine().config
    if config.search_token() and not admin:
        return {"refused": "search needs the search key: log in with the admin token"}
    try:
        charge_search(config)
        pages = current_ops().search(query, 10, group="page")
    except Rejected as exc:
        return {"refused": str(exc), "bad": True}
    return {"pages": [{"url": p["url"], "title": p["title"], "score": p["score"], "source": p["source"],
                       "where": " › ".join(p["chunks"][0].get("heading_path") or []),
                       "snippet": " ".join(str(p["chunks"][0]["text"]).split())[:240]} for p in pages]}
