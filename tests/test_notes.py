"""Notes and leases beside the queue, on SQLite (embedded) and Redis (server mode): the latest
note wins per kind and name, figures from before notes existed are kept, and a lease admits one
holder at a time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ragsync.notes import RedisNotes, SqliteNotes


@pytest.fixture(params=["sqlite", "redis"])
def notes(request, tmp_path):
    if request.param == "sqlite":
        kept = SqliteNotes(tmp_path / "state.db")
    else:
        kept = RedisNotes(request.getfixturevalue("redis_url"), prefix=f"t{time.monotonic_ns()}")
    yield kept
    kept.close()


def test_notes_are_kept_per_kind_and_name_the_latest_winning(notes):
    notes.put("reconcile", "blog", {"listed": 10, "caught_total": 4})
    notes.put("reconcile", "blog", {"listed": 12, "caught_total": 5})
    notes.put("poll", "blog", {"cursor": "2026-11-27T10:00:00Z"})
    assert notes.get("reconcile") == {"blog": {"listed": 12, "caught_total": 5}}
    assert notes.get("poll") == {"blog": {"cursor": "2026-11-27T10:00:00Z"}}
    assert notes.get("audit") == {}


def test_reconcile_figures_written_before_notes_existed_are_kept(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript("create table reconciles (source text primary key, last text not null, caught_total integer "
                     "not null); insert into reconciles values ('blog', '{\"listed\": 7}', 3);")
    db.commit()
    db.close()
    notes = SqliteNotes(tmp_path / "state.db")
    assert notes.get("reconcile") == {"blog": {"listed": 7, "caught_total": 3}}
    notes.close()


def test_a_lease_has_one_holder_until_it_runs_out(redis_url):
    notes = RedisNotes(redis_url, prefix=f"t{time.monotonic_ns()}")
    try:
        assert notes.lease("poller", "a", 0.3) and notes.lease("poller", "a", 0.3)   # taken, renewed
        assert not notes.lease("poller", "b", 0.3)
        deadline = time.monotonic() + 5
        while not notes.lease("poller", "b", 0.3):                                   # a's runs out
            assert time.monotonic() < deadline, "the lease never ran out"
            time.sleep(0.05)
        assert not notes.lease("poller", "a", 0.3)
    finally:
        notes.close()
