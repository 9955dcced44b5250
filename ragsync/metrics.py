"""Prometheus metrics, one registry per engine (so tests can build many). Counters and the
freshness histogram move with traffic; everything with a source of truth elsewhere (the
queue, the dead-letter queue, Qdrant, reconcile records) is read from it at scrape time."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ragsync.snapshot import SNAPSHOT_AGE_S
from ragsync.times import epoch

if TYPE_CHECKING:
    from ragsync.pipeline import Outcome
    from ragsync.snapshot import Snapshot

disable_created_metrics()              # no `_created` twin for every counter: scrapes stay short
CHANGED = ("indexed", "updated", "tombstoned")
RECENT = 50_000                        # freshness samples kept for the status page's quantiles and chart
FRESHNESS_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, float("inf"))


class Metrics:
    def __init__(self, snapshot: Callable[[float], Snapshot]) -> None:
        """`snapshot(max_age_s)`: what a scrape reads for the values that have a source of truth."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("ragsync_webhooks_total", "Webhook deliveries accepted", ["source"], registry=r)
        self.rejected = Counter("ragsync_webhooks_rejected_total", "Webhook deliveries refused, by HTTP status",
                                ["source", "status"], registry=r)
        self.passes = Counter("ragsync_passes_total", "Passes by outcome", ["source", "outcome"], registry=r)
        self.chunks_embedded = Counter("ragsync_chunks_embedded_total", "Chunk texts sent to the model",
                                       ["source"], registry=r)
        self.chunks_reused = Counter("ragsync_chunks_reused_total", "Chunks a pass kept without embedding",
                                     ["source"], registry=r)
        self.caught = Counter("ragsync_reconcile_caught_total",
                              "Changes first found by reconcile (the webhooks missed them)", ["source"], registry=r)
        self.poll_caught = Counter("ragsync_poll_caught_total", "Changes first found by polling (clock poll) or the "
                                   "audit (clock audit): deliveries the webhooks lost", ["source", "clock"], registry=r)
        self.freshness = Histogram("ragsync_freshness_seconds", "CMS modified time → searchable, per indexed change "
                                   "made while this process ran", ["source"], buckets=FRESHNESS_BUCKETS, registry=r)
        self.backfill = Counter("ragsync_backfill_total", "Changes indexed that were made before this process started "
                                "(a first sync, a restart's catch-up): kept out of the freshness", ["source"], registry=r)
        self.started = float(int(time.time()))     # CMS times are to the second

        self.embed_seconds = Histogram("ragsync_embed_seconds", "Time to embed one batch of texts",
                                       ["provider"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
                                       registry=r)
        self.embed_texts = Counter("ragsync_embed_texts_total", "Texts embedded (rate() gives texts/s)",
                                   ["provider"], registry=r)
        self.embed_errors = Counter("ragsync_embed_errors_total", "Failed embedding requests, by kind",
                                    ["provider", "kind"], registry=r)

        self.changes: Tally[str] = Tally()           # passes that changed the index, per source
        self.caught_here: Tally[str] = Tally()       # of those, the ones reconcile queued
        self.webhook_at: dict[str, float] = {}       # source → when its last delivery was accepted
        self.changed_at: dict[str, float] = {}       # source → when a pass last changed the index
        self.recent: deque[tuple[float, str, float]] = deque(maxlen=RECENT)   # (when, source, freshness s)
        r.register(_Scraped(snapshot, self))

    def embedded_batch(self, provider: str, texts: int, seconds: float) -> None:
        self.embed_seconds.labels(provider).observe(seconds)
        self.embed_texts.labels(provider).inc(texts)

    def embed_error(self, provider: str, kind: str) -> None:
        self.embed_errors.labels(provider, kind).inc()

    def catch_rate(self, source: str) -> float | None:
        """The share of the changes applied since start that reconcile or polling found first
        (what the webhooks missed); None before any change."""
        changed = self.changes[source]
        return min(1.0, self.caught_here[source] / changed) if changed else None

    def webhook(self, source: str) -> None:
        self.webhooks.labels(source).inc()
        self.webhook_at[source] = time.time()

    def rejected_delivery(self, source: str, status: int) -> None:
        self.rejected.labels(source, str(status)).inc()

    def freshness_by_hour(self, source: str, now: float) -> list[list[float]]:
        """CMS change → searchable, in seconds, of the changes made searchable in each of the
        last 24 hours (oldest hour first), from one pass over the recent samples."""
        hours: list[list[float]] = [[] for _ in range(24)]
        for at, src, seconds in list(self.recent):
            if src == source and now - 86400 <= at <= now:
                hours[min(23, int((at - now + 86400) // 3600))].append(seconds)
        return hours

    def freshness_last_hour(self, source: str, now: float) -> tuple[float, float] | None:
        """p50 and p95 of CMS change → searchable over the last hour (None: no change)."""
        return quantiles(self.freshness_by_hour(source, now)[-1])

    def pass_done(self, source: str, outcome: str) -> None:
        self.passes.labels(source, outcome).inc()
        if outcome in CHANGED:
            self.changes[source] += 1
            self.changed_at[source] = time.time()

    def reconciled(self, source: str, caught: int) -> None:
        self.caught.labels(source).inc(caught)
        self.caught_here[source] += caught

    def polled(self, source: str, clock: str, caught: int) -> None:
        self.poll_caught.labels(source, clock).inc(caught)
        self.caught_here[source] += caught

    def pass_applied(self, source: str, outcome: Outcome, now: float) -> None:
        self.chunks_embedded.labels(source).inc(outcome.embedded)
        self.chunks_reused.labels(source).inc(outcome.reused)
        if not outcome.modified:
            return
        changed = epoch(outcome.modified)
        if changed < self.started:                  # a change this process could not have seen: backfill
            self.backfill.labels(source).inc()
            return
        seconds = max(0.0, now - changed)
        self.freshness.labels(source).observe(seconds)
        self.recent.append((now, source, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def quantiles(values: list[float]) -> tuple[float, float] | None:
    """p50 and p95, or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return pick(0.5), pick(0.95)


class _Scraped:
    """Values read from their source of truth at each scrape."""

    def __init__(self, snapshot: Callable[[float], Snapshot], metrics: Metrics) -> None:
        self.snapshot, self.metrics = snapshot, metrics

    def collect(self):
        snap, now = self.snapshot(SNAPSHOT_AGE_S), time.time()
        yield _gauge("ragsync_pending_keys", "Keys waiting for or in a pass", snap.pending)
        yield _gauge("ragsync_queue_depth", "Tasks in the huey queue (coalesced keys share one)", snap.queue_depth)
        yield _gauge("ragsync_oldest_pending_seconds", "Age of the oldest pending key", snap.oldest_pending_s)
        yield _gauge("ragsync_dead_letter_keys", "Keys parked in the dead-letter queue", snap.dead)
        yield _gauge("ragsync_points", "Chunk points in the collection", snap.points)
        writes = CounterMetricFamily("ragsync_qdrant_writes", "Write calls made to Qdrant since start")
        writes.add_metric([], snap.writes)
        yield writes
        pages = GaugeMetricFamily("ragsync_pages", "Page records by state (live: searchable; gone: tombstoned)",
                                  labels=["source", "state"])
        held = GaugeMetricFamily("ragsync_deletions_held", "Deletions the webhook-path mass-deletion guard "
                                 "holds back (pending until its window has room)", labels=["source"])
        rate = GaugeMetricFamily("ragsync_catch_rate", "Share of the changes applied since start that reconcile "
                                 "or polling found first (0: the webhooks caught everything)", labels=["source"])
        age = GaugeMetricFamily("ragsync_poll_age_seconds", "Seconds since the last successful poll or audit "
                                "(absent: never ran)", labels=["source", "clock"])
        for source, state in snap.sources.items():
            pages.add_metric([source, "live"], state.pages_live)
            pages.add_metric([source, "gone"], state.pages_gone)
            held.add_metric([source], state.deletions_held)
            rate.add_metric([source], self.metrics.catch_rate(source) or 0.0)
            for clock, note in snap.polling.get(source, {}).items():
                if note.get("ok_at"):
                    age.add_metric([source, clock], max(0.0, now - note["ok_at"]))
        last = GaugeMetricFamily("ragsync_reconcile_last", "The last reconcile run's figures", labels=["source", "result"])
        for source, figures in snap.reconcile.items():
            for result, value in figures.items():
                if isinstance(value, (int, float)):          # the figures, not the error text
                    last.add_metric([source, result], float(value))
        yield from (pages, held, rate, age, last)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
