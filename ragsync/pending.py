"""The durable record of work between a webhook's 202 and a committed pass.

huey acknowledges a task *before* running it (SQLite and Redis alike), so a worker killed
mid-pass would lose it. Each key therefore has a record here, written before the 202 and
removed only after its pass commits. The record is also what makes the queue stingy:

    add:     no record → queued (queue a task) · queued → nothing · running → again=1 ·
             retry (waiting on a backoff) → queued (queue a task now)
    claim:   queued|retry → running, with a lease; anything else → someone else has it
    finish:  again=1 → queued (queue a task) · else the record is removed
    fail:    transient and attempts left → retry · else parked in the dead-letter queue

Two implementations with the same state machine: SQLite in data_dir (embedded, one
process) and Redis (several processes; leases let a survivor take over a dead worker's key).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

Key = tuple[str, str]          # (source, doc_id)


@dataclass(frozen=True)
class Parked:
    source: str
    doc_id: str
    error: str
    attempts: int
    failed_at: float


@dataclass(frozen=True)
class Row:
    source: str
    doc_id: str
    state: str
    attempts: int
    added_at: float


class Pending:
    """The contract; see the module docstring for the state machine."""

    def add(self, key: Key) -> bool:
        """Record the key; True when the caller must queue a task for it."""
        raise NotImplementedError

    def forget(self, key: Key) -> None:
        """Undo an add whose task could not be queued (so the sender's retry is not coalesced away):
        a new key goes, a key that was waiting on a retry goes back to waiting, its work kept."""
        raise NotImplementedError

    def claim(self, key: Key, lease_s: float) -> bool:
        raise NotImplementedError

    def renew(self, keys: Iterable[Key], lease_s: float) -> None:
        raise NotImplementedError

    def finish(self, key: Key) -> tuple[bool, bool]:
        """A pass succeeded: (added again while it ran — queue it once more, a dead-letter entry
        it had was cleared — whatever got it through: a webhook, polling, reconcile, a replay)."""
        raise NotImplementedError

    def known(self, keys: Iterable[Key]) -> set[Key]:
        """Of these keys, those a webhook or an earlier pass already announced: pending in any
        state, or parked in the dead-letter queue."""
        raise NotImplementedError

    def since(self, key: Key) -> float | None:
        """When the key was first recorded in its current pending spell (None: not pending)."""
        raise NotImplementedError

    def fail(self, key: Key, error: str, transient: bool, max_attempts: int) -> tuple[int, bool]:
        """Count the attempt; returns (attempts, parked)."""
        raise NotImplementedError

    def stale(self, waiting: bool = False, running: bool = False) -> list[Key]:
        """Mark queued again, and return, the keys whose task may be lost: always those
        running on an expired lease; with `waiting`, queued and retrying ones too (at start:
        huey may have handed their task to a worker that died); with `running`, running ones
        whatever their lease (only when this process is the one worker: embedded, at start)."""
        raise NotImplementedError

    def rows(self) -> list[Row]:
        raise NotImplementedError

    def summary(self) -> tuple[int, float | None, int]:
        """(pending keys, when the oldest arrived or None, parked keys), counted in the store:
        a status page or a scrape never loads every record into Python."""
        raise NotImplementedError

    def dead(self, limit: int | None = None) -> list[Parked]:
        raise NotImplementedError

    def take_dead(self, keys: Iterable[Key] | None) -> list[Key]:
        """Remove parked keys (all when None) and return them."""
        raise NotImplementedError

    def seen_delivery(self, source: str, delivery_id: str, ttl_s: float) -> bool:
        """Whether this delivery id was accepted within the last ttl_s (replay protection)."""
        raise NotImplementedError

    def remember_delivery(self, source: str, delivery_id: str, ttl_s: float) -> None:
        raise NotImplementedError

    def forget_delivery(self, source: str, delivery_id: str) -> None:
        raise NotImplementedError

    def batch(self) -> AbstractContextManager:
        """Group calls into one commit where the backend has commits (SQLite: one fsync)."""
        return nullcontext()

    def accept(self, source: str, delivery_id: str | None, doc_ids: list[str], ttl_s: float) -> list[str] | None:
        """A webhook's whole intake at once: None when the delivery id was seen (a replay),
        else record its keys and its id, and return the doc ids that need a task queued."""
        with self.batch():
            if delivery_id and self.seen_delivery(source, delivery_id, ttl_s):
                return None
            new = [doc_id for doc_id in doc_ids if self.add((source, doc_id))]
            if delivery_id:
                self.remember_delivery(source, delivery_id, ttl_s)
            return new

    def close(self) -> None:
        pass


_SCHEMA = """
create table if not exists pending (
    source text not null, doc_id text not null,
    state text not null,                  -- queued | running | retry
    again integer not null default 0,     -- re-added while running
    attempts integer not null default 0,
    added_at real not null,
    lease_until real not null default 0,
    last_error text,
    primary key (source, doc_id));
create table if not exists deliveries (
    source text not null, id text not null, at real not null, primary key (source, id));
create table if not exists dead (
    source text not null, doc_id text not null, error text not null,
    attempts integer not null, failed_at real not null,
    primary key (source, doc_id));
"""


def _wanted(keys: Iterable[Key] | None) -> set[Key]:
    """The named keys, read once (an iterator is consumed here, not per parked key)."""
    return set() if keys is None else {tuple(k) for k in keys}


class WriteTurn:
    """Writers of one SQLite file take turns through an flock beside it, so that two processes
    (the daemon and its front) never meet SQLite's own lock: SQLite's busy handler sleeps 1, 2,
    5, 10 … ms before it tries again, which put an idle webhook flood's p99 at 93–144 ms; an
    flock wakes its waiter as soon as the holder lets go. Held per process: the caller's
    thread lock must be held around it."""

    def __init__(self, db_path: Path | str) -> None:
        self.path = f"{db_path}.writer"
        self.fd: int | None = None

    def __enter__(self) -> None:
        if self.fd is None:                   # opened on first use, and again after close()
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class SqlitePending(Pending):
    """`state.db` in data_dir. One process owns the embedded store, so at start every record
    is that process's to recover."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("pragma journal_mode=wal")
        self.turn = WriteTurn(path)
        with self.turn:
            self.db.executescript(_SCHEMA)
        self.lock = threading.RLock()
        self.depth = 0                        # open _tx() levels of the thread holding the lock
        self.arrivals: list[_Ticket] = []     # deliveries waiting for the next group commit
        self.arrivals_lock = threading.Lock()

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    batch = _tx

    def accept(self, source, delivery_id, doc_ids, ttl_s):
        """Group commit: deliveries that arrive while a commit is on disk wait for the lock,
        and the first to get it commits all of them in one transaction, one fsync. Every
        caller still returns only after its own rows are durable."""
        ticket = _Ticket((source, delivery_id, doc_ids, ttl_s))
        with self.arrivals_lock:
            self.arrivals.append(ticket)
        with self.lock:
            if not ticket.done:
                with self.arrivals_lock:
                    group, self.arrivals = self.arrivals, []
                try:
                    with self._tx():
                        for t in group:
                            t.result = super().accept(*t.args)
                except BaseException as exc:
                    for t in group:
                        t.error = exc
                    raise
                finally:
                    for t in group:
                        t.done = True
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def add(self, key):
        with self._tx() as db:
            row = db.execute("select state from pending where source=? and doc_id=?", key).fetchone()
            if row is None:
                db.execute("insert into pending (source, doc_id, state, added_at) values (?,?,?,?)",
                           (*key, "queued", time.time()))
                return True
            if row[0] == "running":
                db.execute("update pending set again=1 where source=? and doc_id=?", key)
                return False
            if row[0] == "queued":
                return False
            db.execute("update pending set state='queued' where source=? and doc_id=?", key)
            return True

    def forget(self, key):
        with self._tx() as db:
            db.execute("update pending set state='retry' where source=? and doc_id=? and state='queued' "
                       "and attempts > 0", key)
            db.execute("delete from pending where source=? and doc_id=? and state='queued'", key)

    def claim(self, key, lease_s):
        with self._tx() as db:
            return db.execute("update pending set state='running', again=0, lease_until=? where source=? "
                              "and doc_id=? and state in ('queued','retry')", (time.time() + lease_s, *key)).rowcount == 1

    def renew(self, keys, lease_s):
        with self._tx() as db:
            db.executemany("update pending set lease_until=? where source=? and doc_id=? and state='running'",
                           [(time.time() + lease_s, *k) for k in keys])

    def finish(self, key):
        with self._tx() as db:
            cleared = db.execute("delete from dead where source=? and doc_id=?", key).rowcount > 0
            again = db.execute("select again from pending where source=? and doc_id=?", key).fetchone()
            if again and again[0]:
                db.execute("update pending set state='queued', again=0, attempts=0 where source=? and doc_id=?", key)
                return True, cleared
            db.execute("delete from pending where source=? and doc_id=?", key)
            return False, cleared

    def known(self, keys):
        with self.lock:
            return {k for k in _wanted(keys) if self.db.execute(
                "select 1 from pending where source=? and doc_id=? union all "
                "select 1 from dead where source=? and doc_id=?", (*k, *k)).fetchone()}

    def since(self, key):
        with self.lock:
            row = self.db.execute("select added_at from pending where source=? and doc_id=?", key).fetchone()
        return row[0] if row else None

    def fail(self, key, error, transient, max_attempts):
        with self._tx() as db:
            (attempts,) = db.execute("update pending set attempts=attempts+1, last_error=? where source=? "
                                     "and doc_id=? returning attempts", (error, *key)).fetchone()
            if transient and attempts < max_attempts:
                db.execute("update pending set state='retry' where source=? and doc_id=?", key)
                return attempts, False
            db.execute("insert or replace into dead values (?,?,?,?,?)", (*key, error, attempts, time.time()))
            db.execute("delete from pending where source=? and doc_id=?", key)
            return attempts, True

    def stale(self, waiting=False, running=False):
        cond = "(state='running' and (? or lease_until < ?)) or (? and state != 'running')"
        args = (running, time.time(), waiting)
        with self._tx() as db:
            keys = db.execute(f"select source, doc_id from pending where {cond}", args).fetchall()
            db.execute(f"update pending set state='queued', again=0 where {cond}", args)
        return [tuple(k) for k in keys]

    def rows(self):
        with self.lock:
            return [Row(*r) for r in self.db.execute(
                "select source, doc_id, state, attempts, added_at from pending order by added_at").fetchall()]

    def summary(self):
        with self.lock:
            pending, oldest = self.db.execute("select count(*), min(added_at) from pending").fetchone()
            (dead,) = self.db.execute("select count(*) from dead").fetchone()
        return pending, oldest, dead

    def dead(self, limit=None):
        with self.lock:
            rows = self.db.execute("select * from (select source, doc_id, error, attempts, failed_at from dead "
                                   "order by failed_at desc limit ?) order by failed_at",
                                   (-1 if limit is None else limit,)).fetchall()
        return [Parked(*r) for r in rows]

    def take_dead(self, keys):
        with self._tx() as db:
            if keys is None:
                chosen = [tuple(r) for r in db.execute("select source, doc_id from dead").fetchall()]
                db.execute("delete from dead")
                return chosen
            return [k for k in sorted(_wanted(keys))
                    if db.execute("delete from dead where source=? and doc_id=?", k).rowcount]

    def seen_delivery(self, source, delivery_id, ttl_s):
        with self.lock:
            return self.db.execute("select 1 from deliveries where source=? and id=? and at > ?",
                                   (source, delivery_id, time.time() - ttl_s)).fetchone() is not None

    def remember_delivery(self, source, delivery_id, ttl_s):
        now = time.time()
        with self._tx() as db:
            db.execute("insert or replace into deliveries values (?,?,?)", (source, delivery_id, now))
            if random.random() < 0.01:                 # prune now and then, not on every request
                db.execute("delete from deliveries where at < ?", (now - ttl_s,))

    def forget_delivery(self, source, delivery_id):
        with self._tx() as db:
            db.execute("delete from deliveries where source=? and id=?", (source, delivery_id))

    def close(self):
        self.db.close()
        self.turn.close()


@dataclass
class _Ticket:
    """One delivery in a group commit (set under SqlitePending.lock, read after it)."""
    args: tuple
    result: list[str] | None = None
    error: BaseException | None = None
    done: bool = False


class _Transaction:
    """One immediate SQLite transaction under the in-process lock (threads share a connection);
    nested ones join the outer one, which commits once."""

    def __init__(self, owner: SqlitePending) -> None:
        self.owner = owner

    def __enter__(self) -> sqlite3.Connection:
        self.owner.lock.acquire()
        if self.owner.depth == 0:
            self.owner.turn.__enter__()
            try:
                self.owner.db.execute("begin immediate")
            except BaseException:
                self.owner.turn.__exit__()
                self.owner.lock.release()
                raise
        self.owner.depth += 1
        return self.owner.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.owner.depth -= 1
            if self.owner.depth == 0:
                try:
                    self.owner.db.execute("rollback" if exc_type else "commit")
                finally:
                    self.owner.turn.__exit__()
        finally:
            self.owner.lock.release()


# Redis: one hash per key, a sorted set of keys by arrival, a hash for the DLQ. Each state
# change is one Lua script, so it is atomic across processes.
_ADD = """
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'again', 0, 'attempts', 0, 'added_at', ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
  return 1
elseif st == 'running' then redis.call('HSET', KEYS[1], 'again', 1) return 0
elseif st == 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued') return 1
"""
_CLAIM = """
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' or st == 'retry' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'again', 0, 'lease_until', ARGV[1]) return 1 end
return 0
"""
_FINISH = """
local cleared = redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'again') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'again', 0, 'attempts', 0) return {1, cleared} end
redis.call('DEL', KEYS[1]) redis.call('ZREM', KEYS[2], ARGV[1]) return {0, cleared}
"""
_FAIL = """
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2])
if ARGV[3] == '1' and attempts < tonumber(ARGV[4]) then redis.call('HSET', KEYS[1], 'state', 'retry') return {attempts, 0} end
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode({ARGV[2], attempts, tonumber(ARGV[5])}))
redis.call('DEL', KEYS[1]) redis.call('ZREM', KEYS[2], ARGV[1]) return {attempts, 1}
"""
_STALE = """
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = ARGV[3] .. member
  local st = redis.call('HGET', h, 'state')
  local lease = tonumber(redis.call('HGET', h, 'lease_until') or '0')
  if st and ((st == 'running' and (ARGV[4] == '1' or lease < tonumber(ARGV[1]))) or (ARGV[2] == '1' and st ~= 'running')) then
    redis.call('HSET', h, 'state', 'queued', 'again', 0) table.insert(out, member) end
end
return out
"""
_SEP = "\x1f"


class RedisPending(Pending):
    """Redis, for several web and worker processes. A running key carries a lease that its
    worker renews; a key whose worker died is taken over when the lease runs out."""

    def __init__(self, url: str, prefix: str = "ragsync") -> None:
        import redis
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.index, self.dead_key, self.prefix = f"{prefix}:pending", f"{prefix}:dead", f"{prefix}:p:"
        self._add, self._claim, self._finish, self._fail, self._stale = (
            self.r.register_script(s) for s in (_ADD, _CLAIM, _FINISH, _FAIL, _STALE))

    def _h(self, key: Key) -> str:
        return self.prefix + _SEP.join(key)

    def add(self, key):
        return bool(self._add([self._h(key), self.index], [time.time(), _SEP.join(key)]))

    def forget(self, key):
        state, attempts = self.r.hmget(self._h(key), "state", "attempts")
        if state == "queued" and int(attempts or 0) > 0:
            self.r.hset(self._h(key), "state", "retry")
        elif state == "queued":
            self.r.delete(self._h(key))
            self.r.zrem(self.index, _SEP.join(key))

    def claim(self, key, lease_s):
        return bool(self._claim([self._h(key)], [time.time() + lease_s]))

    def renew(self, keys, lease_s):
        pipe = self.r.pipeline()
        for key in keys:
            pipe.hset(self._h(key), "lease_until", time.time() + lease_s)
        pipe.execute()

    def finish(self, key):
        again, cleared = self._finish([self._h(key), self.index, self.dead_key], [_SEP.join(key)])
        return bool(again), bool(cleared)

    def known(self, keys):
        wanted = sorted(_wanted(keys))
        pipe = self.r.pipeline()
        for key in wanted:
            pipe.exists(self._h(key))
            pipe.hexists(self.dead_key, _SEP.join(key))
        found = pipe.execute()
        return {k for i, k in enumerate(wanted) if found[2 * i] or found[2 * i + 1]}

    def since(self, key):
        added = self.r.hget(self._h(key), "added_at")
        return float(added) if added is not None else None

    def fail(self, key, error, transient, max_attempts):
        attempts, parked = self._fail([self._h(key), self.index, self.dead_key],
                                      [_SEP.join(key), error, int(transient), max_attempts, time.time()])
        return int(attempts), bool(parked)

    def stale(self, waiting=False, running=False):
        found = self._stale([self.index], [time.time(), int(waiting), self.prefix, int(running)])
        return [tuple(m.split(_SEP, 1)) for m in found]

    def rows(self):
        out = []
        for member, added in self.r.zrange(self.index, 0, -1, withscores=True):
            h = self.r.hgetall(self.prefix + member)
            if h:
                out.append(Row(*member.split(_SEP, 1), h["state"], int(h.get("attempts", 0)), added))
        return out

    def summary(self):
        oldest = self.r.zrange(self.index, 0, 0, withscores=True)
        return self.r.zcard(self.index), oldest[0][1] if oldest else None, self.r.hlen(self.dead_key)

    def dead(self, limit=None):
        entries = self.r.hscan_iter(self.dead_key, count=500)
        if limit is not None:
            entries = itertools.islice(entries, limit)
        rows = [Parked(*k.split(_SEP, 1), *json.loads(v)) for k, v in entries]
        return sorted(rows, key=lambda p: p.failed_at)

    def take_dead(self, keys):
        if keys is None:
            chosen = [tuple(k.split(_SEP, 1)) for k in self.r.hkeys(self.dead_key)]
            if chosen:
                self.r.hdel(self.dead_key, *[_SEP.join(k) for k in chosen])
            return chosen
        wanted = sorted(_wanted(keys))
        pipe = self.r.pipeline()
        for key in wanted:
            pipe.hdel(self.dead_key, _SEP.join(key))
        return [k for k, gone in zip(wanted, pipe.execute()) if gone]

    def seen_delivery(self, source, delivery_id, ttl_s):
        return bool(self.r.exists(f"{self.prefix}delivery:{source}{_SEP}{delivery_id}"))

    def remember_delivery(self, source, delivery_id, ttl_s):
        self.r.set(f"{self.prefix}delivery:{source}{_SEP}{delivery_id}", 1, ex=max(1, int(ttl_s)))

    def forget_delivery(self, source, delivery_id):
        self.r.delete(f"{self.prefix}delivery:{source}{_SEP}{delivery_id}")

    def close(self):
        self.r.close()
