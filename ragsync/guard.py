"""The deletion budget, one for every path (webhook, poll/audit, reconcile). A broken CMS (or one
that confirms a stream of deletions by mistake) must not empty a source, whether one webhook at
a time or in one plan. The budget measures the *net* loss of live pages against the most the
source had within the window: edits, unpublish and republish cycles cost nothing. Within a
window a source may always lose `max(floor, max_share × peak)` pages (and no plan may remove all
of a source's pages: that is an empty listing, not a site that retired its content); past
that, deletions wait (pending keys, or a held plan) and say so until the window has room or an
operator forces them. Each deletion is still confirmed by the CMS's own verdict on that page."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from ragsync.errors import Waiting

log = logging.getLogger("ragsync.guard")

RECHECK_S = 60.0                 # a held deletion is tried again this often


class Held(Waiting):
    """A deletion the guard holds back until its window has room."""


class DeletionGuard:
    def __init__(self, max_share: float, window_s: float, floor: int) -> None:
        self.max_share = max_share
        self.window_s = window_s
        self.floor = floor
        self._seen: dict[str, deque[tuple[float, int]]] = defaultdict(deque)   # (when, live pages) per deletion
        self._allowed: set[tuple[str, str]] = set()                           # reconcile's checked plan
        self.held: dict[str, set[str]] = defaultdict(set)
        self._inflight: dict[str, int] = defaultdict(int)     # admitted, not yet applied to the store
        self._lock = threading.Lock()

    def allow(self, keys: Iterable[tuple[str, str]]) -> None:
        """Deletions an operator's run already vetted (reconcile's own guard, or --force)."""
        with self._lock:
            self._allowed.update(keys)

    def release(self, source: str, doc_id: str) -> None:
        """The page turned out live (republished, or a hiccup): it is no longer held, and an
        operator's earlier word on it no longer stands."""
        with self._lock:
            self.held[source].discard(doc_id)
            self._allowed.discard((source, doc_id))

    def budget(self, peak: int) -> int:
        """How many of `peak` live pages a source may lose within a window: the floor or the
        share, whichever is more."""
        return max(self.floor, int(self.max_share * peak))

    def room(self, source: str, live: int) -> tuple[int, int]:
        """(pages the source may still lose in this window, its peak within the window)."""
        with self._lock:
            peak = self._peak(source, live, time.monotonic())
        return self.budget(peak) - (peak - live), peak

    def hold(self, source: str, doc_ids: Iterable[str]) -> None:
        """A plan's deletions that are past the budget: shown as held until a later plan has
        room for them, the pages turn out live, or an operator forces them."""
        with self._lock:
            self.held[source].update(doc_ids)

    def _peak(self, source: str, live: int, now: float) -> int:
        seen = self._seen[source]
        while seen and seen[0][0] <= now - self.window_s:
            seen.popleft()
        return max([live, *(n for _, n in seen)])

    def admit(self, source: str, doc_id: str, live_pages: Callable[[], int]) -> None:
        """Let one live page be tombstoned, or raise Held when that would take the source's
        net loss within the window past its budget."""
        now = time.monotonic()
        with self._lock:
            if (source, doc_id) in self._allowed:
                self._allowed.discard((source, doc_id))
                self.held[source].discard(doc_id)
                self._inflight[source] += 1
                return
            live = live_pages() - self._inflight[source]
            peak = self._peak(source, live, now)
            if peak - (live - 1) > self.budget(peak):
                if doc_id not in self.held[source]:
                    log.warning("deletion guard: %s is down to %d of the %d live pages it had within %.0fs; "
                                "holding the deletion of %s (run `ragsync reconcile --force --source %s` if this "
                                "is right)", source, live, peak, self.window_s, doc_id, source)
                self.held[source].add(doc_id)
                raise Held(f"deletion guard: {source} is down to {live} of {peak} live pages within "
                           f"{self.window_s:.0f}s; held", retry_after=min(RECHECK_S, self.window_s))
            self._seen[source].append((now, live))
            self._inflight[source] += 1
            self.held[source].discard(doc_id)

    def applied(self, source: str) -> None:
        """An admitted deletion reached the store (or failed): the store's count is current."""
        with self._lock:
            self._inflight[source] -= 1
