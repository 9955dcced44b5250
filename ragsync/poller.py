"""Polling inside the daemon: webhooks are hints, and hints get lost (a CMS that sends once,
a network blip, ragsync restarting). Two clocks per source bound the damage:

* the poll (`[reconcile] poll_interval_s`) asks the CMS only for what was modified since its
  cursor, so it costs O(changes), and queues what differs from the page records;
* the audit (`[reconcile] audit_interval_s`) compares the id-only listing with the page
  records: the only way to see unpublished, trashed and deleted pages, which a modified-since
  query cannot show. (The nightly `ragsync reconcile` also audits the chunk points.)

Both feed the same pass as the webhooks, so each deletion is confirmed by a fetch, a failed
or truncated listing deletes nothing, and the deletion guards apply. The cursor is the newest
modified time the CMS itself reported (never this machine's clock) and is asked again with
OVERLAP_S to spare, for equal timestamps and CMS clocks that step back. Cursors and the last
run of each clock are notes beside the queue, so they survive restarts and are shared in
server mode, where a lease makes exactly one process poll at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ragsync import reconcile
from ragsync.errors import RagsyncError
from ragsync.times import epoch, iso_utc

if TYPE_CHECKING:
    from ragsync.engine import Engine

log = logging.getLogger("ragsync.poller")

OVERLAP_S = 300          # ask again this far before the cursor; what was seen is not queued again
TICK_S = 1.0             # how often the clocks are looked at
LEASE_S = 30.0           # server mode: a poller that dies hands over after this long
POLL, AUDIT = "poll", "audit"


class Poller:
    def __init__(self, engine: Engine, holder: str) -> None:
        """`holder`: this process's name for the lease."""
        self.engine, self.holder = engine, holder
        config = engine.config
        self.intervals = {POLL: config.poll_interval_s, AUDIT: config.audit_interval_s}
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="poller")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:
                log.exception("polling failed")

    def tick(self) -> None:
        """Run whatever clock is due, if this process holds the lease."""
        if not self.engine.notes.lease("poller", self.holder, LEASE_S):
            return
        now = time.time()
        for clock, interval in self.intervals.items():
            if not interval:
                continue
            notes = self.engine.notes.get(clock)
            for source in self.engine.config.sources:
                last = notes.get(source, {}).get("at", self.started)   # first run: one interval after start
                if now - last >= interval and not self._stop.is_set():
                    (self.poll if clock == POLL else self.audit)(source)

    def poll(self, source: str) -> int:
        """Queue the documents modified since the cursor whose page record differs; returns how
        many no webhook had announced. Without a cursor yet, the newest page record's time is
        one (what came before it was indexed or is the audit's); with no page at all, an audit."""
        note = self.engine.notes.get(POLL).get(source, {})
        cursor = note.get("cursor") or max((p.modified for p in self.engine.store.iter_pages(source, ids=False)), default="")
        if not cursor:
            self.audit(source)
            return 0
        started = time.monotonic()
        since = iso_utc(epoch(cursor) - OVERLAP_S)
        try:
            listed = {e.doc_id: e.modified for e in self.engine.connectors[source].list(since=since)}
        except Exception as exc:
            return self._failed(POLL, source, note, exc)
        records = self.engine.store.pages((source, doc_id) for doc_id in listed)
        keys = [doc_id for doc_id, modified in listed.items() if reconcile.changed(records.get((source, doc_id)), modified)]
        caught = self.engine.queue.add_unannounced(source, keys)
        newest = max([cursor, *listed.values()])
        self._done(POLL, source, {"cursor": newest, "listed": len(listed), "found": len(keys), "caught": caught},
                   started)
        return caught

    def audit(self, source: str) -> reconcile.SourceReport:
        """The listing against the page records (no chunk points): finds what was unpublished,
        trashed or deleted, and anything the poll missed."""
        started = time.monotonic()
        report = reconcile.plan(self.engine, source, points=False)
        if report.errors and not report.listed:
            self._failed(AUDIT, source, self.engine.notes.get(AUDIT).get(source, {}),
                         RagsyncError(report.errors[0]))
            return report
        caught = reconcile.enqueue(self.engine, report)
        if report.errors:                                # the mass-deletion guard held deletions back
            log.warning("audit of %s: %s", source, report.errors[0])
        self._done(AUDIT, source, {"listed": report.listed, "found": len(report.keys), "caught": caught,
                                   "error": report.errors[0] if report.errors else None}, started)
        poll = self.engine.notes.get(POLL).get(source, {})
        if report.newest and report.newest > poll.get("cursor", ""):   # the poll goes on from here
            self.engine.notes.put(POLL, source, {**poll, "cursor": report.newest})
        return report

    def _done(self, clock: str, source: str, figures: dict, started: float) -> None:
        now = time.time()
        self.engine.notes.put(clock, source, {**figures, "at": now, "ok_at": now, "error": figures.get("error"),
                                               "by": self.holder, "duration_s": round(time.monotonic() - started, 3)})
        self.engine.metrics.polled(source, clock, figures["caught"])
        if figures["found"]:
            log.info("%s of %s: %d changed, %d not announced by a webhook", clock, source, figures["found"],
                     figures["caught"], extra={"source": source})

    def _failed(self, clock: str, source: str, note: dict, exc: Exception) -> int:
        """A failed listing changes nothing; the clock tries again after its interval."""
        detail = str(exc) if isinstance(exc, RagsyncError) else f"{type(exc).__name__}: {exc}"
        self.engine.notes.put(clock, source, {**note, "at": time.time(), "error": detail})
        log.warning("%s of %s failed, nothing changed: %s", clock, source, detail, extra={"source": source})
        return 0
