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
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, redirect, request

from ragsync.door import bearer, charge_search, client_key, https, same
from ragsync.engine import Engine
from ragsync.errors import Rejected
from ragsync.fingerprint import short
from ragsync.index import describe
from ragsync.mcp import TOOLS
from ragsync.metrics import quantiles
from ragsync.snapshot import SNAPSHOT_AGE_S
from ragsync.openapi import document
from ragsync.operations import Local

status_page = Blueprint("status_page", __name__)

COOKIE = "ragsync_session"
DAY, HOUR = 86400.0, 3600.0
DLQ_SHOWN = 50                          # the newest parked keys listed (the count shows them all)
SESSION_S = 12 * HOUR                   # a login lasts a working day
LOGIN_PER_CLIENT = (1 / 12, 5)          # (tokens per second, burst): 5 guesses, then one per 12 s
LOGIN_IN_ALL = (1.0, 30)                # every client together


def _engine() -> Engine:
    return current_app.extensions["ragsync"]


def _ops() -> Local:
    return current_app.extensions["ragsync.operations"]


def _derived(purpose: str) -> str | None:
    """A value derived from the admin token (never the token itself in a cookie or a form)."""
    token = _engine().config.admin_token()
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
    token = _engine().config.admin_token()
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
    return jsonify(document(_engine()))


@status_page.post("/status/login")
def login():
    """Guesses are limited per client and in all; each login gets its own session value, with
    an issue time and a maximum age, Secure when the page was reached over HTTPS."""
    config, limiter = _engine().config, current_app.extensions["ragsync.limiter"]
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
    getattr(_ops(), action)([[source, doc_id]])
    return redirect("/", 303)


@status_page.post("/status/reconcile")
def reconcile():
    _require_admin_post()
    _ops().reconcile(request.form.get("source") or None)
    return redirect("/", 303)


# -- rendering ------------------------------------------------------------------------------------

def _ago(at: float | None) -> str:
    if not at:
        return "never"
    s = max(0.0, time.time() - at)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, size in (("d", DAY), ("h", HOUR), ("min", 60.0), ("s", 1.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value * 1000:.0f} ms"


def _chart(source: str, hours: list[tuple[float, float] | None]) -> str:
    """p50 (solid) and p95 (dashed) freshness per hour over the last day, as inline SVG."""
    top = max((q[1] for q in hours if q), default=0.0) or 1.0

    points = [[(h * 10 + 5, 58 - 54 * q[i] / top) for h, q in enumerate(hours) if q] for i in (0, 1)]
    shapes = []
    for (xy, color, dash) in ((points[1], "#d1242f", ' stroke-dasharray="3 2"'), (points[0], "#1f6feb", "")):
        shapes.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} '
                      f'points="{" ".join(f"{x},{y:.1f}" for x, y in xy)}"/>')
        shapes.extend(f'<circle cx="{x}" cy="{y:.1f}" r="2" fill="{color}"/>' for x, y in xy)
    return (f'<svg width="240" height="60" viewBox="0 0 240 60" role="img" aria-label="freshness, last 24 h">'
            f'<title>{escape(source)}: p50 (blue) and p95 (red) freshness per hour, last 24 h, '
            f'top {escape(_seconds(top))}</title><rect width="240" height="60" fill="#f6f6f6"/>{"".join(shapes)}</svg>')


def _form(action: str, label: str, csrf: str, **fields: str) -> str:
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())
    return (f'<form method="post" action="{escape(action)}"><input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'{hidden}<button>{escape(label)}</button></form>')


def _render(nonce: str, query: str) -> str:
    engine = _engine()
    status = engine.snapshot(max_age_s=SNAPSHOT_AGE_S).as_dict()
    admin, csrf = _is_admin(), _csrf()
    metrics, now = engine.metrics, time.time()
    problem = engine.embedder.ready()
    collection = status["collection"]
    out: list[str] = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ragsync status</title>'
        f'<meta name="viewport" content="width=device-width"><style nonce="{nonce}">{CSS}</style></head><body>',
        '<h1>ragsync</h1><p class="facts">',
        f'<span>points <b id="points">{status["points"]}</b></span>',
        f'<span>pending <b id="pending">{status["pending"]}</b> (oldest {escape(_seconds(status["oldest_pending_s"]))})</span>',
        f'<span>dead-letter <b id="dead">{status["dead"]}</b></span>',
        f'<span>embedder <b>{escape(problem or "ready")}</b></span>',
        f'<span>collection <b>{escape(str(collection["name"]))}</b> → {escape(str(collection["physical"]))}, '
        f'fingerprint {escape(short(collection["fingerprint"]) if collection["fingerprint"] else "–")}'
        f'{"" if collection["config_matches"] else " <b class=bad>(built by other settings)</b>"}</span>',
        f'<span>store {escape(describe(collection["store"]))}</span>',
        f'<span>agents <b id="mcp">POST /mcp</b> (MCP: {", ".join(TOOLS)}; <code>ragsync mcp</code> for stdio)</span></p>',
        '<h2>Sources</h2><table><tr><th>source</th><th>live</th><th>gone</th><th>points</th><th>held</th>'
        '<th>last webhook</th><th>last poll / audit</th><th>last reconcile</th><th>freshness p50 / p95 (1 h)</th>'
        '<th>(24 h)</th><th>caught</th><th>last 24 h</th>' + ("<th></th>" if admin else "") + '</tr>']
    for name, s in status["sources"].items():
        polls, rec = status["polling"].get(name, {}), status["reconcile"].get(name, {})
        samples = metrics.freshness_by_hour(name, now)
        hours = [quantiles(values) for values in samples]
        hour, day = hours[-1], quantiles([s for values in samples for s in values])
        caught = metrics.catch_rate(name)
        clocks = " / ".join(_ago(polls.get(c, {}).get("ok_at")) for c in ("poll", "audit"))
        last = (f'{_ago(rec.get("at"))}, listed {rec.get("listed", 0):.0f}, caught {rec.get("caught_total", 0):.0f}'
                + (f' — <b class=bad>{escape(str(rec.get("error")))}</b>' if rec.get("error") else "")) if rec else "never"
        out.append(
            f'<tr id="source-{escape(name)}"><td>{escape(name)}</td><td>{s["pages_live"]}</td><td>{s["pages_gone"]}</td>'
            f'<td>{s["points"]}</td><td>{s["deletions_held"]}</td><td>{_ago(metrics.webhook_at.get(name))}</td>'
            f'<td>{clocks}</td><td>{last}</td>'
            f'<td>{" / ".join(map(_seconds, hour)) if hour else "–"}</td><td>{" / ".join(map(_seconds, day)) if day else "–"}</td>'
            f'<td>{"–" if caught is None else f"{caught:.0%}"}</td><td>{_chart(name, hours)}</td>'
            + (f'<td>{_form("/status/reconcile", "reconcile now", csrf, source=name)}</td>' if admin else "") + '</tr>')
    out.append('</table><h2>Dead-letter queue</h2>')
    parked = [p.__dict__ for p in engine.queue.dead(limit=DLQ_SHOWN)]
    if not parked:
        out.append('<p id="dlq-empty">empty</p>')
    else:
        out.append('<table id="dlq"><tr><th>key</th><th>attempts</th><th>failed</th><th>last error</th>'
                   + ("<th></th><th></th>" if admin else "") + '</tr>')
        for p in parked:
            key = f'{p["source"]}/{p["doc_id"]}'
            out.append(f'<tr><td>{escape(key)}</td><td>{p["attempts"]}</td><td>{_ago(p["failed_at"])}</td>'
                       f'<td>{escape(p["error"])}</td>'
                       + (f'<td>{_form("/status/dlq/replay", "replay", csrf, key=key)}</td>'
                          f'<td>{_form("/status/dlq/drop", "drop", csrf, key=key)}</td>' if admin else "") + '</tr>')
        out.append('</table>')
    out.append(f'<h2>Search</h2><form method="get" action="/"><input name="q" value="{escape(query)}" '
               'size="50" maxlength="1000"><button>search</button></form>')
    if query:
        out.append(_results(query, admin))
    if engine.config.admin_token():
        out.append(_form("/status/logout", "log out", csrf) if admin else
                   '<h2>Admin</h2><form method="post" action="/status/login"><input type="password" name="token" '
                   'placeholder="admin token" autocomplete="current-password"><button>log in</button></form>')
    out.append('</body></html>')
    return "".join(out)


def _results(query: str, admin: bool) -> str:
    config = _engine().config
    if config.search_token() and not admin:
        return '<p>search needs the search key: log in with the admin token</p>'
    try:
        charge_search(config)
        pages = _ops().search(query, 10, group="page")
    except Rejected as exc:
        return f'<p class="bad">{escape(str(exc))}</p>'
    if not pages:
        return '<p id="no-results">no results</p>'
    items = []
    for p in pages:
        best: dict[str, Any] = p["chunks"][0]
        where = " › ".join(best.get("heading_path") or [])
        snippet = " ".join(str(best["text"]).split())[:240]
        items.append(f'<li><a href="{escape(str(p["url"]))}">{escape(str(p["title"]))}</a> '
                     f'<small>{p["score"]:.3f} · {escape(str(p["source"]))} · {escape(where)}</small>'
                     f'<br>{escape(snippet)}</li>')
    return f'<ol id="results">{"".join(items)}</ol>'


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#1f2328}
h1{margin:0 0 .3em}h2{margin:1.4em 0 .4em;font-size:1.1em}
.facts span{display:inline-block;margin-right:1.5em}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
.bad{color:#d1242f}form{display:inline}li{margin:.4em 0}small{color:#59636e}
"""
