"""The mass-deletion guard of the webhook path. Reconcile checks a whole plan before it deletes;
webhook passes arrive one page at a time, so a broken CMS (or a CMS that confirms a stream of
deletions by mistake) could empty a source one webhook at a time. The guard measures the *net*
loss of live pages against the most the source had within the window: edits, unpublish and
republish cycles cost nothing; past `max_share` of that peak (and never fewer than FLOOR pages),
deletions wait in the queue, and say so, until the window has room or an operator forces them."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from ragsync.errors import Waiting

log = logging.getLogger("ragsync.guard")

FLOOR = 10                       # a source may always lose this many pages per window
RECHECK_S = 60.0                 # a held deletion is tried again this often


class Held(Waiting):
    """A deletion the guard holds back until its window has room."""


class DeletionGuard:
    def __init__(self, max_share: float, window_s: float) -> None:
        self.max_share = max_share
        self.window_s = window_s
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
        """The page turned out live (republished, or a hiccup): it is no longer held."""
        with self._lock:
            self.held[source].discard(doc_id)

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
            seen = self._seen[source]
            while seen and seen[0][0] <= now - self.window_s:
                seen.popleft()
            live = live_pages() - self._inflight[source]
            peak = max([live, *(n for _, n in seen)])
            budget = max(FLOOR, int(self.max_share * peak))
            if peak - (live - 1) > budget:
                if doc_id not in self.held[source]:
                    log.warning("deletion guard: %s is down to %d of the %d live pages it had within %.0fs; "
                                "holding the deletion of %s (run `ragsync reconcile --force --source %s` if this "
                                "is right)", source, live, peak, self.window_s, doc_id, source)
                self.held[source].add(doc_id)
                raise Held(f"deletion guard: {source} is down to {live} of {peak} live pages within "
                           f"{self.window_s:.0f}s; held", retry_after=min(RECHECK_S, self.window_s))
            seen.append((now, live))
            self._inflight[source] += 1
            self.held[source].discard(doc_id)

    def applied(self, source: str) -> None:
        """An admitted deletion reached the store (or failed): the store's count is current."""
        with self._lock:
            self._inflight[source] -= 1
