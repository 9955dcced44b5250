"""What the index holds and owes, read once from each source of truth (the store, the
pending record, the notes, the deletion guard): `ragsync status`, the status page, the MCP
tools and /metrics all read one Snapshot, so they never disagree."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragsync.config import Config
    from ragsync.guard import DeletionGuard
    from ragsync.index import Store
    from ragsync.notes import Notes

SNAPSHOT_AGE_S = 1.0                   # a scrape (or a status page) reuses a snapshot this young


@dataclass(frozen=True)
class SourceState:
    pages_live: int
    pages_gone: int
    points: int
    deletions_held: int


@dataclass(frozen=True)
class Snapshot:
    """What the engine holds and owes, read once from each source of truth."""
    points: int
    pending: int
    oldest_pending_s: float
    queue_depth: int
    dead: int
    chunks_embedded: int
    writes: int
    sources: dict[str, SourceState]
    reconcile: dict[str, dict[str, float]]
    polling: dict[str, dict[str, dict[str, Any]]]        # source → {"poll": ..., "audit": ...}: the last runs
    collection: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def take(config: Config, store: Store, summary: tuple[int, float | None, int], queue_depth: int, notes: Notes,
         guard: DeletionGuard, chunks_embedded: int, physical: str | None, fingerprint: dict[str, Any]) -> Snapshot:
    """`summary`: the pending record's (pending, oldest added_at, dead); `fingerprint`: what this
    config would build, against the stamp the collection carries."""
    pending, oldest, dead = summary
    sources = {name: SourceState(pages_live=store.count_pages(name, "live"), pages_gone=store.count_pages(name, "gone"),
                                 points=store.count_chunks({"metadata.source": name}),
                                 deletions_held=len(guard.held[name]))
               for name in config.sources}
    stamp = store.fingerprint()
    polls = {clock: notes.get(clock) for clock in ("poll", "audit")}
    return Snapshot(
        points=store.count_chunks(), pending=pending,
        oldest_pending_s=round(time.time() - oldest if oldest else 0.0, 3), queue_depth=queue_depth, dead=dead,
        chunks_embedded=chunks_embedded, writes=store.writes, sources=sources, reconcile=notes.get("reconcile"),
        polling={name: {clock: kept[name] for clock, kept in polls.items() if name in kept} for name in config.sources},
        collection={"name": config.collection, "physical": physical, "fingerprint": stamp,
                    "config_matches": stamp in (None, fingerprint), "store": store.layout()})
