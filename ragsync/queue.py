"""The work queue: huey moves keys to workers; the durable pending record (pending.py)
makes it at-least-once and stingy, the way client-go's workqueue is: a key added many times
while it waits is one pass, a key added while it runs runs once more afterwards, two
workers never run one key, and failures retry with backoff and jitter, then park in the DLQ.

Embedded: huey and the record on SQLite in data_dir. Server mode (`[queue] redis_url`):
both on Redis, for several processes.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from huey import Huey, RedisHuey
from huey.storage import SqliteStorage

from ragsync import retry
from ragsync.config import Config
from ragsync.errors import FetchError, StoreError, Waiting
from ragsync.pending import Key, Parked, Pending, RedisPending, Row, SqlitePending, WriteTurn

log = logging.getLogger("ragsync.queue")

WAIT_FOREVER = 2**31                              # a waiting key never runs out of attempts


class Tally:
    """A count that only rises, and a wait for it to pass what a caller saw: the caller notes
    the count before it looks, so a rise between its look and its wait is never missed."""

    def __init__(self) -> None:
        self.count = 0
        self._rose = threading.Condition()

    def rise(self) -> None:
        with self._rose:
            self.count += 1
            self._rose.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Until the count passes `seen` (or `timeout` seconds): the count then."""
        with self._rose:
            self._rose.wait_for(lambda: self.count > seen, timeout)
            return self.count


class WorkQueue:
    def __init__(self, data_dir: Path, handler: Callable[[str, str], object], *, redis_url: str | None = None,
                 max_attempts: int = 6, backoff_base_s: float = 1.0, backoff_max_s: float = 300.0,
                 lease_s: float = 60.0, outage_horizon_s: float = 3 * 86400.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.handler = handler
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.outage_horizon_s = outage_horizon_s
        self.shared = redis_url is not None            # several processes may work this queue
        if redis_url:
            self._huey = RedisHuey("ragsync", url=redis_url, results=False)
            self._record: Pending = RedisPending(redis_url)
        else:
            # no fsync: the record (state.db, fsynced) is what a 202 promises, and a start
            # queues every pending key again, so the queue file may lose its last writes
            self._huey = Huey("ragsync", storage_class=_Storage, filename=str(data_dir / "queue.db"), results=False,
                              fsync=False)
            self._record = SqlitePending(data_dir / "state.db")
        self._task = self._huey.task(name="ragsync.pass")(self._run)
        self._running: set[Key] = set()                 # keys this process is working on (lease renewal)
        self._running_lock = threading.Lock()
        self._consumer = None
        self._stop = threading.Event()
        self.on_outcome: Callable[[str, str], None] = lambda source, outcome: None   # per pass, e.g. metrics
        # where accept() sends the keys it recorded: tasks here, or (the front process) to its daemon
        self.hand_off: Callable[[str, list[str]], None] = self.enqueue

    @classmethod
    def for_config(cls, config: Config, handler: Callable[[str, str], object]) -> WorkQueue:
        return cls(config.data_dir, handler, redis_url=config.redis_url, max_attempts=config.max_attempts,
                   backoff_base_s=config.backoff_base_s, backoff_max_s=config.backoff_max_s, lease_s=config.lease_s,
                   outage_horizon_s=config.outage_horizon_s)

    # -- intake -----------------------------------------------------------------------------

    def add(self, source: str, doc_id: str) -> bool:
        """Record the key durably, then queue it unless it already waits. True when a new
        pass was queued (False: coalesced into one that is queued or running)."""
        return bool(self.accept(source, None, [doc_id]))

    def accept(self, source: str, delivery_id: str | None, doc_ids: list[str], ttl_s: float = 0) -> list[str] | None:
        """A delivery's keys and id recorded in one commit, then handed off (`hand_off`) for
        the keys that do not already wait; None for a replayed delivery id. If the hand-off
        fails the record is undone, so the sender's retry is neither coalesced nor deduplicated away."""
        new = self._record.accept(source, delivery_id, doc_ids, ttl_s)
        try:
            if new:
                self.hand_off(source, new)
        except Exception:
            with self._record.batch():
                for doc_id in new or []:
                    self._record.forget((source, doc_id))
                if delivery_id:
                    self._record.forget_delivery(source, delivery_id)
            raise
        return new

    def enqueue(self, source: str, doc_ids: list[str]) -> None:
        """A task for each of a source's recorded keys (an idle worker takes it at once)."""
        for doc_id in doc_ids:
            self._task(source, doc_id)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """While inside, no transaction of this process is open on the queue's SQLite files and
        none starts. The embedded engine holds the GIL for seconds when it optimizes: a thread of
        ours caught inside a transaction would keep the file's write lock that long, and the
        front process's 202 would wait on it (or fail past SQLite's busy timeout)."""
        if self.shared:
            yield
            return
        with self._record.lock, self._huey.storage.lock:      # huey's one lock around its connection
            yield

    def recover(self) -> int:
        """On start, and when a front process died: queue again what a dead process left
        behind (a front's last keys may be recorded but never handed off). Embedded, every
        record is ours; shared, only keys whose worker's lease ran out. Duplicate tasks are no-ops."""
        keys = self._record.stale(waiting=True, running=not self.shared)
        for source, doc_id in keys:
            self._task(source, doc_id)
        if keys:
            log.info("recovered %d pending key(s)", len(keys))
        return len(keys)

    # -- the worker side --------------------------------------------------------------------

    def _run(self, source: str, doc_id: str) -> None:
        key = (source, doc_id)
        if not self._record.claim(key, self.lease_s):
            return                                    # a duplicate task, or the key runs elsewhere
        with self._running_lock:
            self._running.add(key)
        try:
            outcome = self.handler(source, doc_id)
        except Exception as exc:
            self._failed(key, exc)
            return
        finally:
            with self._running_lock:
                self._running.discard(key)
        again, cleared = self._record.finish(key)
        if again:
            self._task(source, doc_id)
        if cleared:
            log.info("%s/%s: a pass succeeded; its dead-letter entry is cleared", source, doc_id)
        self.on_outcome(source, str(outcome))

    def _failed(self, key: Key, exc: Exception) -> None:
        if isinstance(exc, Waiting):                  # not the page's fault: wait, never park
            attempts, _ = self._record.fail(key, f"{type(exc).__name__}: {exc}", True, WAIT_FOREVER)
            delay = exc.retry_after if exc.retry_after is not None else self.backoff(attempts)
            log.info("%s/%s waits %.1fs: %s", *key, delay, exc)
            self._task.schedule(key, delay=delay)
            self.on_outcome(key[0], "waiting")
            return
        transient = isinstance(exc, StoreError) or (isinstance(exc, FetchError) and exc.transient)
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (FetchError, StoreError)):
            log.exception("pass failed for %s/%s", *key)
        outage = isinstance(exc, FetchError) and exc.outage and self._within_outage_horizon(key)
        attempts, parked = self._record.fail(key, error, transient, WAIT_FOREVER if outage else self.max_attempts)
        if parked:
            log.warning("parked %s/%s in the dead-letter queue after %d attempt(s): %s", *key, attempts, error)
            self.on_outcome(key[0], "dead")
        else:
            delay = self.backoff(attempts, getattr(exc, "retry_after", None))
            log.info("retrying %s/%s in %.1fs (attempt %d): %s", *key, delay, attempts, error)
            self._task.schedule(key, delay=delay)
            self.on_outcome(key[0], "retry")

    def _within_outage_horizon(self, key: Key) -> bool:
        """A CMS outage is waited out (never parked) for `outage_horizon_s` from when the key
        started waiting: Stripe retries a webhook for three days; minutes would page an
        operator for a CMS that is back by morning."""
        since = self._record.since(key)
        return since is None or time.time() - since < self.outage_horizon_s

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Exponential with jitter around it, never sooner than the CMS asked."""
        return retry.backoff(attempts, self.backoff_base_s, self.backoff_max_s, retry_after)

    def _heartbeat(self) -> None:
        """Renew the leases of the keys this process runs; take over keys whose worker died."""
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self._running_lock:
                    running = list(self._running)
                self._record.renew(running, self.lease_s)
                if self.shared:
                    for source, doc_id in self._record.stale():
                        self._task(source, doc_id)
            except Exception:
                log.exception("queue heartbeat failed")

    # -- inspection and the dead-letter queue -----------------------------------------------

    def pending(self) -> list[Row]:
        return self._record.rows()

    def depth(self) -> int:
        """Tasks waiting in huey (retries scheduled for later are not counted)."""
        return self._huey.pending_count()

    def pending_keys(self) -> set[Key]:
        return {(r.source, r.doc_id) for r in self._record.rows()}

    def dead(self, limit: int | None = None) -> list[Parked]:
        """Parked keys, oldest first (the newest `limit` of them when given)."""
        return self._record.dead(limit)

    def summary(self) -> tuple[int, float | None, int]:
        return self._record.summary()

    def add_unannounced(self, source: str, doc_ids: list[str]) -> int:
        """Queue keys that polling, the audit or reconcile found changed; returns how many no
        webhook (or earlier pass) had announced: not pending in any state, not parked. What a
        webhook announced and a failed fetch left retrying or parked is not a lost webhook."""
        known = self._record.known((source, d) for d in doc_ids)
        for doc_id in doc_ids:
            self.add(source, doc_id)
        return sum((source, d) not in known for d in doc_ids)

    def replay(self, keys: Iterable[Key] | None = None) -> list[Key]:
        """Move parked keys (all when none are named) back into the queue."""
        chosen = self._record.take_dead(keys)
        for source, doc_id in chosen:
            self.add(source, doc_id)
        return chosen

    def drop(self, keys: Iterable[Key] | None = None) -> list[Key]:
        return self._record.take_dead(keys)

    def drain(self, limit: int | None = None) -> None:
        """Run tasks that are due, here and now (for CLI commands when no daemon runs).
        Retries scheduled for later stay pending for the daemon."""
        done = 0
        while (limit is None or done < limit) and (task := self._huey.dequeue()) is not None:
            self._huey.execute(task)
            done += 1

    # -- running the consumer in this process -----------------------------------------------

    def start(self, workers: int) -> None:
        """huey's consumer as threads in this process. Embedded, its workers wait for work in
        the storage (_Storage.dequeue); on Redis, huey's blocking pop does the same."""
        if not self.shared:
            self._huey.storage.blocking = True
        # the delays: how huey's worker backs off after a dequeue that failed (it never polls now)
        self._consumer = self._huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                                   initial_delay=0.01, backoff=1.3, max_delay=0.05,
                                                   scheduler_interval=1, check_worker_health=False)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self._consumer.start()
        for sig, handler in saved.items():          # huey installs its own; the daemon owns signals
            signal.signal(sig, handler)
        self._stop.clear()
        threading.Thread(target=self._heartbeat, daemon=True, name="queue-heartbeat").start()

    def stop(self) -> None:
        """Finish the passes in flight, then stop; keys not started stay pending for next start."""
        self._stop.set()
        if not self.shared:
            self._huey.storage.blocking = False       # no worker waits for work again
            self._huey.storage.wake()                 # and none is left waiting
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None

    def close(self) -> None:
        self.stop()
        self._record.close()
        self._huey.storage.close()


class _Storage(SqliteStorage):
    """huey's SQLite storage whose write transactions take their turn (pending.WriteTurn) with
    another process's (a CLI command's). While a consumer runs, an idle worker waits in
    dequeue() until an enqueue here wakes it, instead of huey's polling sleep: a webhook's pass
    starts at once, not up to a poll interval later (25 ms on average at the former 50 ms)."""

    WAIT_S = 1.0                                  # what the work of a process that wakes no one waits (a CLI's)

    def __init__(self, name: str, filename: str, **kwargs) -> None:
        self.turn = WriteTurn(filename)
        super().__init__(name, filename, create_tables=False, **kwargs)
        self.lock = threading.RLock()             # db() below holds it around huey's own db()
        self.arrivals = Tally()                   # enqueues seen by this process, and wakes
        self.initialize_schema()

    @contextlib.contextmanager
    def db(self, commit: bool = False, close: bool = False) -> Iterator[sqlite3.Cursor]:
        with self.lock, self.turn if commit else contextlib.nullcontext(), super().db(commit, close) as cursor:
            yield cursor

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        super().enqueue(data, priority)
        self.wake()

    def wake(self) -> None:
        self.arrivals.rise()

    def dequeue(self) -> bytes | None:
        """`blocking` (huey's flag: its worker then does not sleep) is set while a consumer runs;
        a CLI's drain() gets None at once."""
        seen = self.arrivals.count
        data = super().dequeue()
        if data is None and self.blocking:
            self.arrivals.wait(seen, self.WAIT_S)
        return data

    def close(self) -> bool:
        closed = super().close()
        self.turn.close()
        return closed
