"""The one retry module: Retry-After in both of its forms, which statuses are worth another
try, and backoff within its bounds (never sooner than the server asked)."""

from __future__ import annotations

import time
from email.utils import formatdate

from ragsync.retry import MAX_RETRY_AFTER_S, backoff, retry_after, transient


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after({"retry-after": "7"}) == 7.0
    assert retry_after({"retry-after": " 2.5 "}) == 2.5
    in_a_minute = retry_after({"retry-after": formatdate(time.time() + 60, usegmt=True)})
    assert 55 <= in_a_minute <= 61
    assert retry_after({"retry-after": formatdate(time.time() - 60, usegmt=True)}) == 0.0     # already past
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({"retry-after": "1e300"}) == MAX_RETRY_AFTER_S
    for junk in ("", "soon", "nan", "inf", "Mon, 99 Foo 2026"):
        assert retry_after({"retry-after": junk}) is None, junk
    assert retry_after({}) is None


def test_transient_statuses():
    assert [s for s in (200, 301, 400, 401, 403, 404, 410, 429, 500, 502, 503, 504) if transient(s)] == \
        [429, 500, 502, 503, 504]


def test_backoff_grows_with_jitter_within_its_cap_and_honours_the_server():
    for attempt in range(1, 12):
        delays = [backoff(attempt, 1.0, 300.0) for _ in range(200)]
        ideal = min(300.0, 2 ** (attempt - 1))
        assert all(0.5 * ideal <= d <= 1.5 * ideal for d in delays) and len(set(delays)) > 1
    assert backoff(1, 1.0, 300.0, retry_after=120.0) == 120.0
