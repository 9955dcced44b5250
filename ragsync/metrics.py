"""Prometheus metrics, one registry per engine (so tests can build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("ragsync_webhooks_total", "Webhook deliveries accepted", ["source"], registry=r)
        self.rejected = Counter("ragsync_webhooks_rejected_total", "Webhook deliveries refused",
                                ["source", "status"], registry=r)
        self.passes = Counter("ragsync_passes_total", "Passes by outcome", ["source", "outcome"], registry=r)
        self.chunks_embedded = Counter("ragsync_chunks_embedded_total", "Chunk texts sent to the model",
                                       ["source"], registry=r)
        self.pending = Gauge("ragsync_pending_keys", "Keys waiting for or in a pass", registry=r)
        self.oldest = Gauge("ragsync_oldest_pending_seconds", "Age of the oldest pending key", registry=r)
        self.dead = Gauge("ragsync_dead_letter_keys", "Keys parked in the dead-letter queue", registry=r)
        self.points = Gauge("ragsync_points", "Chunk points in the collection", registry=r)

    def pass_done(self, source: str, doc_id: str, outcome: str) -> None:
        self.passes.labels(source, outcome).inc()

    def render(self, engine) -> bytes:
        """Gauges are read from their source of truth at scrape time."""
        self.pending.set(len(engine.queue.pending()))
        self.oldest.set(engine.queue.oldest_pending_age())
        self.dead.set(len(engine.queue.dead()))
        self.points.set(engine.store.count_chunks())
        return generate_latest(self.registry)
