"""Times as ragsync stores them: ISO 8601 UTC with a 'Z', to the second, so that they
compare correctly as strings (in Python and in Qdrant payload filters alike)."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def iso_utc(value: str | float | datetime) -> str:
    """Normalise a CMS time (text, epoch seconds or datetime) to 'YYYY-MM-DDTHH:MM:SSZ';
    a time without a zone is read as UTC. Raises ValueError for anything else (years past
    either end of the calendar included)."""
    try:
        return _iso_utc(value)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"time out of range: {value!r}") from exc


def _iso_utc(value: str | float | datetime) -> str:
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    else:
        text = value.strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> str:
    return iso_utc(datetime.now(timezone.utc))


def epoch(iso: str) -> float:
    """Seconds since the epoch of a time written by iso_utc."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def ago(at: float | None) -> str:
    """How long ago an epoch time was, for people: "never", "12 s ago", "3 min ago", "1.5 h ago"."""
    if not at:
        return "never"
    s = max(0.0, time.time() - at)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"
