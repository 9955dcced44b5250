"""The reconciler: list what each CMS has published, compare it with what Qdrant actually
holds (page records *and* the chunk points themselves), and feed every difference through
the same pass the webhooks use. Unchanged pages cost no body fetch and no embedding.

Deletions go through the pass too, so the CMS's own fetch confirms each one; and if a run
would remove more than the source's deletion budget (guard.py) allows, it removes nothing
unless forced, and the held deletions show in status and metrics.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from tqdm import tqdm

from ragsync.errors import RagsyncError

if TYPE_CHECKING:
    from ragsync.engine import Engine
    from ragsync.index import PageRecord, Store

CAUGHT = ("added", "updated", "repaired", "tombstoned")      # the kinds of difference a plan finds


@dataclass
class SourceReport:
    source: str
    listed: int = 0
    unchanged: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    tombstoned: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    newest: str = ""                    # the latest modified time the listing showed

    @property
    def keys(self) -> list[str]:
        return self.added + self.updated + self.repaired + self.tombstoned

    def summary(self) -> str:
        text = (f"{self.source}: listed {self.listed}, unchanged {self.unchanged}, added {len(self.added)}, "
                f"updated {len(self.updated)}, repaired {len(self.repaired)}, tombstoned {len(self.tombstoned)}, "
                f"errors {len(self.errors)} in {self.duration_s:.2f}s")
        return text + (f" — {self.errors[0]}" if self.errors else "")

    def as_dict(self) -> dict:
        return asdict(self)


def changed(record: PageRecord | None, modified: str) -> str | None:
    """How a listed document differs from what its page record says: "added", "updated", or
    None when the record is current (live at that revision, or known not public at it)."""
    if record is not None and record.state == "gone" and record.modified == modified:
        return None
    if record is None or record.state != "live":
        return "added"
    return "updated" if record.modified != modified else None


def plan(engine: Engine, source: str, force: bool = False, store: Store | None = None,
         points: bool = True) -> SourceReport:
    """Work out the differences for one source without changing anything (against `store`,
    by default the live one; a reindex checks its new collection the same way). `points`
    False compares the listing with the page records only (O(pages), the daemon's audit):
    lost or orphaned chunk points are then left to the full run."""
    store = store or engine.store
    started = time.monotonic()
    report = SourceReport(source)
    try:
        listed = {entry.doc_id: entry.modified for entry in engine.connectors[source].list()}
    except Exception as exc:             # a failed listing is never read as "everything was deleted"
        detail = str(exc) if isinstance(exc, RagsyncError) else f"malformed listing ({type(exc).__name__}: {exc})"
        report.errors.append(f"listing failed, nothing changed: {detail}")
        report.duration_s = time.monotonic() - started
        return report
    report.listed, report.newest = len(listed), max(listed.values(), default="")
    held = _held(store, source) if points else {}
    records, drifted = {}, set()
    for rec in store.iter_pages(source, ids=points):          # read once; kept without the id lists
        if points and rec.state == "live" and _digest(rec.live_ids) != held.get(rec.doc_id, _digest([])):
            drifted.add(rec.doc_id)
        records[rec.doc_id] = replace(rec, live_ids=[], previous_ids=[])

    for doc_id, modified in listed.items():
        rec = records.get(doc_id)
        kind = changed(rec, modified)
        if kind is None and points and rec is not None:
            if rec.state == "gone" and doc_id in held:
                kind = "added"                      # known not public, yet points remain
            elif doc_id in drifted:
                kind = "repaired"                   # points lost, orphaned or duplicated in Qdrant
        if kind is None:
            report.unchanged += 1
        else:
            getattr(report, kind).append(doc_id)
    live = {d for d, rec in records.items() if rec.state == "live"}
    report.tombstoned = sorted((live | set(held)) - set(listed))

    if report.tombstoned and not force:
        room, peak = engine.guard.room(source, len(live))
        if len(report.tombstoned) > room or len(report.tombstoned) >= len(live):
            report.errors.append(
                f"mass-deletion guard: would remove {len(report.tombstoned)} of {len(live)} pages; its deletion budget "
                f"has {max(room, 0)} left (max({engine.config.delete_floor}, "
                f"{engine.config.max_delete_share:.0%} of {peak}) per {engine.config.delete_window_s:.0f}s, never all in one run); "
                f"nothing deleted — `ragsync reconcile --force --source {source}` applies them if this is right")
            if store is engine.store:
                engine.guard.hold(source, report.tombstoned)
            report.tombstoned = []
    report.duration_s = time.monotonic() - started
    return report


def _digest(ids: Iterable[str], start: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """A set of point ids as (count, XOR of their hashes): equal sets, equal digests; a lost,
    orphaned or duplicated point changes it. Two ints per page instead of every id."""
    count, acc = start
    for pid in ids:
        count += 1
        acc ^= int.from_bytes(hashlib.blake2b(pid.encode(), digest_size=8).digest(), "big")
    return count, acc


def _held(store: Store, source: str) -> dict[str, tuple[int, int]]:
    """doc_id → digest of the chunk points Qdrant holds for it, reading only their doc ids."""
    digests: dict[str, tuple[int, int]] = {}
    for pid, payload in store.iter_chunks({"metadata.source": source}, fields=["metadata.doc_id"]):
        doc_id = str(payload["metadata"].get("doc_id", ""))
        digests[doc_id] = _digest([pid], digests.get(doc_id, (0, 0)))
    return digests


def run(engine: Engine, sources: list[str], *, dry_run: bool = False, force: bool = False,
        wait_s: float = 3600.0, standalone: bool = False) -> list[SourceReport]:
    """Plan each source, queue the differences and wait until they are
    applied. `standalone`: no daemon runs, so this process works the queue itself."""
    reports = []
    for source in sources:
        started = time.monotonic()
        report = plan(engine, source, force=force)
        caught = 0
        if not dry_run and report.keys:
            keys = [(source, doc_id) for doc_id in report.keys]
            caught = enqueue(engine, report, force)
            left = len(_wait(engine, keys, wait_s, standalone, f"reconcile {source}"))
            if left:
                report.errors.append(f"{left} page(s) not applied yet (retrying; see `ragsync status`)")
            parked = {d.doc_id for d in engine.queue.dead() if d.source == source} & set(report.keys)
            if parked:
                report.errors.append(f"{len(parked)} page(s) failed and were parked (see `ragsync dlq list`)")
        report.duration_s = time.monotonic() - started
        if not dry_run:
            _record(engine, report, caught)
        reports.append(report)
    return reports


def enqueue(engine: Engine, report: SourceReport, force: bool = False) -> int:
    """Queue a plan's differences through the pass (each deletion is then confirmed by the
    pass's own fetch and counted against the budget, unless an operator forced the plan).
    Returns how many no webhook had announced (queue.add_unannounced)."""
    if force:
        engine.guard.allow((report.source, doc_id) for doc_id in report.tombstoned)
    return engine.queue.add_unannounced(report.source, list(report.keys))


def _record(engine: Engine, report: SourceReport, caught: int) -> None:
    """`caught`: the differences no webhook had announced (see enqueue)."""
    engine.metrics.reconciled(report.source, caught)
    before = engine.notes.get("reconcile").get(report.source, {}).get("caught_total", 0)
    engine.notes.put("reconcile", report.source, {    # `caught_total`: what reconcile found first, in all
        "at": time.time(), "listed": report.listed, "unchanged": report.unchanged,
        **{k: len(getattr(report, k)) for k in (*CAUGHT, "errors")},
        "duration_s": round(report.duration_s, 3), "caught_total": before + caught,
        "error": report.errors[0] if report.errors else None})


def _wait(engine: Engine, keys: list[tuple[str, str]], wait_s: float, standalone: bool, label: str) -> set[tuple[str, str]]:
    """Until the queued keys are applied (returns those still pending); a progress bar when
    stderr is a terminal."""
    bar = tqdm(total=len(keys), desc=label, unit="page", disable=not sys.stderr.isatty(), leave=False)
    deadline = time.monotonic() + wait_s
    left = set(keys)
    while left and time.monotonic() < deadline:
        if standalone:
            engine.queue.drain(limit=20)
        else:
            time.sleep(0.05)
        done = left - engine.queue.pending_keys()
        bar.update(len(done))
        left -= done
        if standalone and engine.queue.depth() == 0:
            break                        # what is left waits on a retry: the daemon runs it later
    bar.close()
    return left
