"""Retrying, written once for every caller (the queue, the embedding client, reindex and the
connectors): how long to wait, what a server's Retry-After says, which answers are worth
another try."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 86400.0           # a Retry-After further off than a day is a mistake, not a plan


def backoff(attempt: int, base_s: float, max_s: float, retry_after: float | None = None) -> float:
    """Exponential from `base_s`, capped at `max_s`, with jitter around it (×0.5–1.5, so a herd of
    failures spreads out), never sooner than the server asked."""
    delay = min(max_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
    return max(delay, retry_after or 0.0)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a Retry-After header asks for, in either of its forms (seconds, or an HTTP date);
    None when absent or unreadable."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds)) if math.isfinite(seconds) else None


def transient(status: int) -> bool:
    """An HTTP status worth retrying: throttled or the server's own trouble."""
    return status == 429 or status >= 500
