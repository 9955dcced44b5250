"""The work queue: huey moves keys to workers; a durable `pending` table makes it
at-least-once, stingy and fair, the way client-go's workqueue is.

huey acknowledges a task *before* running it, so a worker killed mid-pass would lose it.
Every key therefore gets a row in `pending` before the webhook is acknowledged, and the row
is deleted only after its pass commits; on start, every row left behind is queued again.
The row also coalesces: a key added while queued is one pass; a key added while running
runs once more afterwards; two workers never run the same key (the claim is atomic).
Failures retry with exponential backoff and jitter, then park in `dead` (the DLQ).
"""

from __future__ import annotations

import logging
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from huey import SqliteHuey

from ragsync.errors import FetchError, StoreError

log = logging.getLogger("ragsync.queue")

Key = tuple[str, str]          # (source, doc_id)

_SCHEMA = """
create table if not exists pending (
    source text not null, doc_id text not null,
    state text not null,                  -- queued | running | retry
    again integer not null default 0,     -- re-added while running
    attempts integer not null default 0,
    origin text not null default 'webhook',
    added_at real not null,
    last_error text,
    primary key (source, doc_id));
create table if not exists dead (
    source text not null, doc_id text not null, error text not null,
    attempts integer not null, failed_at real not null,
    primary key (source, doc_id));
"""


@dataclass(frozen=True)
class Parked:
    source: str
    doc_id: str
    error: str
    attempts: int
    failed_at: float


class WorkQueue:
    def __init__(self, data_dir: Path, handler: Callable[[str, str], object], *, max_attempts: int = 6,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 300.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.handler = handler
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.huey = SqliteHuey("ragsync", filename=str(data_dir / "queue.db"), results=False)
        self._task = self.huey.task(name="ragsync.pass")(self._run)
        self._db = sqlite3.connect(data_dir / "state.db", check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("pragma journal_mode=wal")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._consumer = None
        self.on_outcome: Callable[[str, str, str], None] = lambda source, doc_id, outcome: None

    # -- intake -----------------------------------------------------------------------------

    def add(self, source: str, doc_id: str, origin: str = "webhook") -> bool:
        """Record the key durably and queue it, unless it is already waiting. Returns True
        when a new pass was queued (False: coalesced into one that is queued or running)."""
        with self._tx() as db:
            row = db.execute("select state from pending where source=? and doc_id=?", (source, doc_id)).fetchone()
            if row is None:
                db.execute("insert into pending (source, doc_id, state, origin, added_at) values (?,?,?,?,?)",
                           (source, doc_id, "queued", origin, time.time()))
            elif row[0] == "running":
                db.execute("update pending set again=1 where source=? and doc_id=?", (source, doc_id))
                return False
            elif row[0] == "queued":
                return False
            else:                                    # waiting on a backoff: a new event runs it now
                db.execute("update pending set state='queued' where source=? and doc_id=?", (source, doc_id))
        try:
            self._task(source, doc_id)
        except Exception:
            if row is None:                          # undo, so the sender's retry is not coalesced away
                with self._tx() as db:
                    db.execute("delete from pending where source=? and doc_id=? and state='queued'", (source, doc_id))
            raise
        return True

    def recover(self) -> int:
        """On start: whatever a dead process left pending (queued, running or waiting on a
        retry) is queued again. huey may still hold some of those tasks; the claim makes
        the duplicates no-ops."""
        with self._tx() as db:
            keys = db.execute("select source, doc_id from pending").fetchall()
            db.execute("update pending set state='queued', again=0")
        for source, doc_id in keys:
            self._task(source, doc_id)
        if keys:
            log.info("recovered %d pending key(s)", len(keys))
        return len(keys)

    # -- the worker side --------------------------------------------------------------------

    def _run(self, source: str, doc_id: str) -> None:
        with self._tx() as db:
            claimed = db.execute("update pending set state='running', again=0 where source=? and doc_id=? "
                                 "and state in ('queued','retry')", (source, doc_id)).rowcount
        if not claimed:
            return                                    # a duplicate task, or the key runs elsewhere
        try:
            outcome = self.handler(source, doc_id)
        except Exception as exc:
            self._failed(source, doc_id, exc)
            return
        with self._tx() as db:
            again = db.execute("select again from pending where source=? and doc_id=?", (source, doc_id)).fetchone()
            if again and again[0]:
                db.execute("update pending set state='queued', again=0, attempts=0 where source=? and doc_id=?",
                           (source, doc_id))
            else:
                db.execute("delete from pending where source=? and doc_id=?", (source, doc_id))
        if again and again[0]:
            self._task(source, doc_id)
        self.on_outcome(source, doc_id, str(outcome))

    def _failed(self, source: str, doc_id: str, exc: Exception) -> None:
        transient = isinstance(exc, StoreError) or (isinstance(exc, FetchError) and exc.transient)
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (FetchError, StoreError)):
            log.exception("pass failed for %s/%s", source, doc_id)
        with self._tx() as db:
            (attempts,) = db.execute("update pending set attempts=attempts+1, last_error=? where source=? and doc_id=? "
                                     "returning attempts", (error, source, doc_id)).fetchone()
            if transient and attempts < self.max_attempts:
                db.execute("update pending set state='retry' where source=? and doc_id=?", (source, doc_id))
                delay = self.backoff(attempts, getattr(exc, "retry_after", None))
            else:
                db.execute("insert or replace into dead values (?,?,?,?,?)", (source, doc_id, error, attempts, time.time()))
                db.execute("delete from pending where source=? and doc_id=?", (source, doc_id))
                delay = None
        if delay is None:
            log.warning("parked %s/%s in the dead-letter queue after %d attempt(s): %s", source, doc_id, attempts, error)
            self.on_outcome(source, doc_id, "dead")
        else:
            log.info("retrying %s/%s in %.1fs (attempt %d): %s", source, doc_id, delay, attempts, error)
            self._task.schedule((source, doc_id), delay=delay)
            self.on_outcome(source, doc_id, "retry")

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Exponential with full jitter around it, never sooner than the CMS asked."""
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)) * random.uniform(0.5, 1.5)
        return max(delay, retry_after or 0.0)

    # -- inspection and the dead-letter queue -----------------------------------------------

    def pending(self) -> list[tuple[str, str, str, int]]:
        with self._lock:
            return self._db.execute("select source, doc_id, state, attempts from pending order by added_at").fetchall()

    def is_pending(self, keys: Iterable[Key]) -> bool:
        with self._lock:
            return any(self._db.execute("select 1 from pending where source=? and doc_id=?", k).fetchone()
                       for k in keys)

    def oldest_pending_age(self) -> float:
        with self._lock:
            (oldest,) = self._db.execute("select min(added_at) from pending").fetchone()
        return time.time() - oldest if oldest else 0.0

    def dead(self) -> list[Parked]:
        with self._lock:
            rows = self._db.execute("select source, doc_id, error, attempts, failed_at from dead order by failed_at")
            return [Parked(*r) for r in rows.fetchall()]

    def replay(self, keys: Iterable[Key] | None = None) -> list[Key]:
        """Move parked keys (all when none are named) back into the queue."""
        chosen = self._take_dead(keys)
        for source, doc_id in chosen:
            self.add(source, doc_id, origin="replay")
        return chosen

    def drop(self, keys: Iterable[Key] | None = None) -> list[Key]:
        return self._take_dead(keys)

    def _take_dead(self, keys: Iterable[Key] | None) -> list[Key]:
        with self._tx() as db:
            parked = [tuple(r) for r in db.execute("select source, doc_id from dead").fetchall()]
            chosen = parked if keys is None else [k for k in parked if k in set(map(tuple, keys))]
            db.executemany("delete from dead where source=? and doc_id=?", chosen)
        return chosen

    def drain(self) -> None:
        """Run every task that is due, here and now (for CLI commands when no daemon runs).
        Retries scheduled for later stay pending for the daemon."""
        while (task := self.huey.dequeue()) is not None:
            self.huey.execute(task)

    # -- running the consumer in this process -----------------------------------------------

    def start(self, workers: int) -> None:
        """huey's consumer as threads in this process, polling at most every 50 ms so that
        a webhook is picked up well inside the freshness budget."""
        self._consumer = self.huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                                   initial_delay=0.01, backoff=1.3, max_delay=0.05,
                                                   scheduler_interval=1, check_worker_health=False)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self._consumer.start()
        for sig, handler in saved.items():          # huey installs its own; the daemon owns signals
            signal.signal(sig, handler)

    def stop(self) -> None:
        """Finish the passes in flight, then stop; keys not started stay pending for next start."""
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None

    def close(self) -> None:
        self.stop()
        self._db.close()
        self.huey.storage.close()

    def _tx(self):
        return _Transaction(self._db, self._lock)


class _Transaction:
    """One immediate SQLite transaction under the in-process lock (threads share a connection)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute("begin immediate")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("rollback" if exc_type else "commit")
        finally:
            self.lock.release()
