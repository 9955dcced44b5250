"""Fuzzing the only door from the internet: ≥ 10,000 random and mutated requests (methods,
paths, headers, encodings, signed and forged deliveries, deep nesting, huge and empty bodies)
against a real daemon over HTTP. Only 2xx/4xx may come back, the server stays up, and the
indexed points are exactly what they were."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support import page_html, signed, words

BATCH = 20
EXAMPLES = 500                      # × BATCH = 10,000 requests
MAX_BODY = 1024 * 1024

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
header_values = printable.map(str.strip)          # what an HTTP client can send at all
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | printable,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(printable, inner, max_size=4),
                           max_leaves=12)
events = st.fixed_dictionaries({
    "type": st.one_of(st.sampled_from(["post.published", "post.updated", "post.deleted", "post.trashed", "nonsense",
                                       ""]), json_values),             # after a valid signature: any JSON type
    "id": st.one_of(st.integers(-5, 12), st.sampled_from(["1", "2", "-1", "1e3", "", "../etc/passwd", "²", "١٢",
                                                          "1" * 400]), json_values),
    "post_type": st.sampled_from(["post", "page", "attachment"]),
})
bodies = st.one_of(
    events.map(lambda e: json.dumps(e).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"null", b"[]", b'{"id": 1}' * 3, "{\"id\": \"\u00e9\"}".encode("utf-16"),
                     b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000]),
    st.integers(1, 3).map(lambda k: b" " * (MAX_BODY + k)),
)
timestamps = st.one_of(st.sampled_from(["9" * 400, "-" + "9" * 40, "1e400", "+1700000000", "", "0x10",
                                         "NaN", "inf", "1700000000.5"]),
                       st.integers(-(10 ** 30), 10 ** 30).map(str), header_values)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", "application/vnd.ragsync+json",
                                 "application/json; charset=utf-16", "", "multipart/form-data; boundary=x"])


@st.composite
def requests(draw) -> tuple[str, str, dict[str, str], bytes]:
    body = draw(bodies)
    method = draw(st.sampled_from(["POST"] * 10 + ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    path = draw(st.sampled_from(["/webhooks/blog"] * 8 + ["/webhooks/other", "/webhooks/", "/webhooks/blog/x",
                                                           "/admin/status", "/admin/dlq/replay", "/metrics", "/"])
                | printable.map(lambda p: "/webhooks/" + quote(p, safe=""))
                | printable.map(lambda q: "/search?q=" + quote(q) + "&limit=" + quote(q[:3])))
    _, headers = signed(body)
    how = draw(st.sampled_from(["signed", "signed", "mutated-body", "mutated-sig", "random", "none", "stale",
                                "odd-time", "signed-odd-time"]))
    if how == "mutated-body" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
    elif how == "mutated-sig":
        headers["webhook-signature"] = headers["webhook-signature"][:-3] + "AA="
    elif how == "random":
        headers = {k: draw(header_values) for k in headers}
    elif how == "none":
        headers = {}
    elif how == "stale":
        _, headers = signed(body, timestamp=1_600_000_000)
    elif how == "odd-time":
        headers["webhook-timestamp"] = draw(timestamps)
    elif how == "signed-odd-time":                          # correctly signed, absurd timestamps
        _, headers = signed(body, timestamp=draw(st.sampled_from([10 ** 400, -5, 0, 2 ** 63, 10 ** 17])))
    headers["content-type"] = draw(content_types)
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["x-forwarded-for", "webhook-id", "content-encoding", "transfer-encoding-x"]))] = \
            draw(header_values)
    return method, path, headers, body


def test_ten_thousand_hostile_requests_get_only_2xx_or_4xx_and_change_nothing(daemon, wp):
    for post_id in (1, 2):
        wp.publish(post_id, f"Page {post_id}", page_html([words(post_id, 120)]))
        daemon.wp_event(post_id)
    daemon.idle()
    before = sorted(json.dumps(p, sort_keys=True) for _, p in daemon.engine.store.iter_chunks())
    assert before
    statuses: dict[int, int] = {}
    client = httpx.Client(base_url=daemon.url, timeout=30)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(requests(), min_size=BATCH, max_size=BATCH))
    def storm(batch):
        for method, path, headers, body in batch:
            resp = client.request(method, path, headers=headers, content=body if method not in ("GET", "HEAD") else None)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            assert 200 <= resp.status_code < 300 or 400 <= resp.status_code < 500, (method, path, resp.status_code,
                                                                                    resp.text[:200])
    try:
        storm()
    finally:
        client.close()
    assert sum(statuses.values()) >= 10_000, statuses
    assert daemon.http.get("/healthz").status_code == 200
    daemon.idle()
    after = sorted(json.dumps(p, sort_keys=True) for _, p in daemon.engine.store.iter_chunks())
    assert after == before
    print(f"\n{sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
