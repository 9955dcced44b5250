"""Exceptions that carry a one-line message a user can act on (never a traceback)."""

from __future__ import annotations


class RagsyncError(Exception):
    """Base: the message is the whole story, printed as one line. `public` is what a caller
    without the admin token is told instead (Qdrant's own text, paths and URLs stay in the log)."""

    public = "temporarily unavailable, retry later"


class ConfigError(RagsyncError):
    """The config file or the environment it names is wrong."""


class Rejected(RagsyncError):
    """A webhook delivery refused before anything was queued; `status` is the HTTP answer,
    `retry_after` (seconds) becomes a Retry-After header."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class FetchError(RagsyncError):
    """The CMS could not answer a fetch or listing. `transient` errors are retried with
    backoff (5xx, 429, timeouts); permanent ones go to the dead-letter queue at once.
    `outage`: the CMS itself is unreachable or failing (no answer, 429, 5xx), not this page:
    waited out up to `[queue] outage_horizon_s` before anything parks."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None,
                 outage: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.outage = outage


class StoreError(RagsyncError):
    """Qdrant refused or could not be reached; always transient from the queue's view."""

    public = "the index is unavailable, retry later"


class Waiting(RagsyncError):
    """A pass that cannot run yet for a reason outside the page (the embedding server is down,
    the deletion guard's window is full): the key stays pending and is retried after
    `retry_after` seconds (or the queue's backoff), without ever parking in the DLQ."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
