"""The mass-deletion guard of the webhook path. Reconcile checks a whole plan before it deletes;
webhook passes arrive one page at a time, so a broken CMS (or a forged stream of deletions
that the CMS confirms by mistake) could empty a source one webhook at a time. Within any
window, at most `max_share` of a source's live pages (never fewer than FLOOR) are tombstoned;
past that, deletions wait in the queue until the window has room, and say so."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from ragsync.errors import Waiting

log = logging.getLogger("ragsync.guard")

FLOOR = 5                        # a small site may always lose this many pages per window


class Held(Waiting):
    """A deletion the guard holds back until its window has room."""


class DeletionGuard:
    def __init__(self, max_share: float, window_s: float) -> None:
        self.max_share = max_share
        self.window_s = window_s
        self._done: dict[str, deque[float]] = defaultdict(deque)     # tombstone times per source
        self._base: dict[str, tuple[int, float]] = {}                # live pages at the window's start
        self._allowed: set[tuple[str, str]] = set()                   # reconcile's checked plan
        self.held: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def allow(self, keys: Iterable[tuple[str, str]]) -> None:
        """Deletions an operator's run already vetted (reconcile's own guard, or --force)."""
        with self._lock:
            self._allowed.update(keys)

    def release(self, source: str, doc_id: str) -> None:
        """The page turned out live (republished, or a hiccup): it is no longer held."""
        with self._lock:
            self.held[source].discard(doc_id)

    def admit(self, source: str, doc_id: str, live_pages: Callable[[], int]) -> None:
        """Count one tombstone of a live page, or raise Held when the window is full."""
        now = time.monotonic()
        with self._lock:
            if (source, doc_id) in self._allowed:
                self._allowed.discard((source, doc_id))
                self.held[source].discard(doc_id)
                return
            done = self._done[source]
            while done and done[0] <= now - self.window_s:
                done.popleft()
            live, since = self._base.get(source, (0, float("-inf")))
            if since <= now - self.window_s:
                live, since = live_pages(), now
                self._base[source] = (live, since)
            budget = max(FLOOR, int(self.max_share * live))
            if len(done) >= budget:
                wait = done[0] + self.window_s - now
                if doc_id not in self.held[source]:
                    log.warning("deletion guard: %s has lost %d of %d live pages in %.0fs; holding the deletion "
                                "of %s for %.0fs (run `ragsync reconcile --force --source %s` if this is right)",
                                source, len(done), live, self.window_s, doc_id, wait, source)
                self.held[source].add(doc_id)
                raise Held(f"deletion guard: {len(done)} of {source}'s {live} live pages deleted within "
                           f"{self.window_s:.0f}s; held", retry_after=max(1.0, wait))
            done.append(now)
            self.held[source].discard(doc_id)
