"""Notes and leases, kept where every process of a deployment reads the same ones (state.db
embedded, Redis in server mode): a note is a small JSON record per kind and name (a reconcile
run's figures, a poll cursor and its clock's last run); a lease makes one process of many do a
job (polling, the startup reconcile)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ragsync.pending import WriteTurn

_SCHEMA = """
create table if not exists notes (
    kind text not null, name text not null, value text not null, primary key (kind, name));
"""
_FROM_RECONCILES = """
insert or ignore into notes select 'reconcile', source, json_set(last, '$.caught_total', caught_total) from reconciles;
drop table reconciles;
"""
_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""


class Notes:
    def put(self, kind: str, name: str, value: dict[str, Any]) -> None:
        """Keep (replace) the note `kind`/`name`."""
        raise NotImplementedError

    def get(self, kind: str) -> dict[str, dict[str, Any]]:
        """name → value of every note of this kind."""
        raise NotImplementedError

    def lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew a named lease for `ttl_s`; False while another holder has it. The
        embedded data_dir has one process, so it always has the lease."""
        return True

    def close(self) -> None:
        pass


class SqliteNotes(Notes):
    """The `notes` table of data_dir's state.db."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.lock = threading.Lock()
        self.turn = WriteTurn(path)                       # the front writes state.db too
        with self.turn:
            self.db.executescript(_SCHEMA)
            if self.db.execute("select 1 from sqlite_master where name='reconciles'").fetchone():
                self.db.executescript(_FROM_RECONCILES)   # a state.db from before notes existed

    def put(self, kind, name, value):
        with self.lock, self.turn:
            self.db.execute("insert or replace into notes values (?,?,?)", (kind, name, json.dumps(value)))

    def get(self, kind):
        with self.lock:
            rows = self.db.execute("select name, value from notes where kind=?", (kind,)).fetchall()
        return {name: json.loads(value) for name, value in rows}

    def close(self):
        self.db.close()
        self.turn.close()


class RedisNotes(Notes):
    def __init__(self, url: str, prefix: str = "ragsync") -> None:
        import redis
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = f"{prefix}:p:"
        self._lease = self.r.register_script(_LEASE)
        old, caught = f"{self.prefix}reconcile", f"{self.prefix}caught"     # written before notes existed
        for source, last in self.r.hgetall(old).items():
            self.put("reconcile", source, {**json.loads(last), "caught_total": int(self.r.hget(caught, source) or 0)})
        self.r.delete(old, caught)

    def put(self, kind, name, value):
        self.r.hset(f"{self.prefix}note:{kind}", name, json.dumps(value))

    def get(self, kind):
        return {name: json.loads(v) for name, v in self.r.hgetall(f"{self.prefix}note:{kind}").items()}

    def lease(self, name, holder, ttl_s):
        return bool(self._lease([f"{self.prefix}lease:{name}"], [holder, int(ttl_s * 1000)]))

    def close(self):
        self.r.close()


def open_notes(data_dir: Path, redis_url: str | None) -> Notes:
    return RedisNotes(redis_url) if redis_url else SqliteNotes(data_dir / "state.db")
