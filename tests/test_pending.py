"""The pending record's state machine, the same for SQLite (embedded) and Redis (server
mode, with a real redis-server started here), and a kill -9 recovery with huey on Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragsync.pending import RedisPending, SqlitePending
from tests.support import (ServeProcess, exported, free_port, page_html, published, wait_for, words, wp_source,
                           write_config)

K = ("blog", "42")


@pytest.fixture(params=["sqlite", "redis"])
def record(request, tmp_path):
    if request.param == "sqlite":
        rec = SqlitePending(tmp_path / "state.db")
    else:
        url = request.getfixturevalue("redis_url")
        rec = RedisPending(url, prefix=f"t{time.monotonic_ns()}")
    yield rec
    rec.close()


def test_add_coalesces_while_queued_and_reruns_when_added_while_running(record):
    assert record.add(K) is True
    assert record.add(K) is False                 # waiting: one pass
    assert [(r.state, r.attempts) for r in record.rows()] == [("queued", 0)]
    assert record.claim(K, 30) is True
    assert record.claim(K, 30) is False                      # never two workers on one key
    assert record.add(K) is False                 # added while running ...
    assert record.finish(K) == (True, False)                 # ... runs once more
    assert record.claim(K, 30) is True
    assert record.finish(K) == (False, False)
    assert record.rows() == []


def test_failures_retry_then_park_and_replay(record):
    record.add(K)
    record.claim(K, 30)
    assert record.fail(K, "FetchError: HTTP 503", True, 3) == (1, False)
    assert record.rows()[0].state == "retry"
    assert record.add(K) is True                  # a new event runs a retrying key now
    record.claim(K, 30)
    assert record.fail(K, "FetchError: HTTP 503", True, 3) == (2, False)
    record.claim(K, 30)
    assert record.fail(K, "FetchError: HTTP 503", True, 3) == (3, True)
    assert record.rows() == []
    (parked,) = record.dead()
    assert (parked.source, parked.doc_id, parked.error, parked.attempts) == ("blog", "42", "FetchError: HTTP 503", 3)
    assert record.take_dead([("blog", "nope")]) == []
    assert record.take_dead(None) == [K] and record.dead() == []


def test_permanent_errors_park_at_once(record):
    record.add(K)
    record.claim(K, 30)
    assert record.fail(K, "FetchError: HTTP 400", False, 6) == (1, True)


def test_expired_leases_are_taken_over_and_start_recovers_everything(record):
    record.add(K)
    record.add(("blog", "7"))
    record.claim(K, 0.05)
    assert record.stale() == []
    time.sleep(0.1)                                          # let the lease run out (it is the subject here)
    assert record.stale() == [K]
    assert record.claim(K, 30) is True
    record.renew([K], 30)
    assert record.stale() == []
    assert record.stale(waiting=True) == [("blog", "7")]     # a live lease is left alone ...
    assert record.rows()[0].state == "running"
    assert sorted(record.stale(waiting=True, running=True)) == [("blog", "42"), ("blog", "7")]  # ... unless sole owner


def test_kill_9_with_huey_and_the_record_on_redis(redis_url, tmp_path: Path, wp, embedder):
    from ragsync.chunk import Chunker
    cfg = write_config(tmp_path, wp_source(wp), f"reconcile_on_start = false\nworkers = 1\n[queue]\n"
                                                 f'redis_url = "{redis_url}"\nlease_s = 2', port=free_port())
    daemon = ServeProcess(cfg, tmp_path / "serve.log")
    wp.publish(1, "Big", page_html([words(i, 90) for i in range(60)]))
    wp.publish(2, "Small", page_html(["Queued behind the big one."]))
    for post_id in (1, 2):
        assert daemon.webhook("blog", {"type": "post.published", "id": post_id}).status_code == 202
    rec = RedisPending(redis_url)
    wait_for(lambda: any(r.state == "running" for r in rec.rows()), 60, "a pass to be running on Redis")
    daemon.kill()
    daemon = ServeProcess(cfg, tmp_path / "serve.log")
    daemon.idle()
    assert daemon.stop() == 0
    assert rec.rows() == []
    rec.close()
    assert exported(cfg) == published(wp, Chunker(embedder.tokenizer_file))


def test_delivery_ids_are_remembered_per_source(record):
    assert record.seen_delivery("blog", "msg_1", 600) is False
    record.remember_delivery("blog", "msg_1", 600)
    assert record.seen_delivery("blog", "msg_1", 600) is True
    assert record.seen_delivery("docs", "msg_1", 600) is False


def test_undoing_a_delivery_keeps_the_retry_it_moved(record):
    """A key waiting on a retry is moved to queued by a new delivery; if queueing that delivery
    fails, the undo puts the key back to its retry instead of dropping acknowledged work."""
    key = ("blog", "7")
    record.add(key)
    assert record.claim(key, 30)
    record.fail(key, "HTTP 503", True, 5)
    assert record.add(key)                             # a new delivery: retry → queued
    record.forget(key)                                 # its task could not be queued
    (row,) = record.rows()
    assert (row.state, row.attempts) == ("retry", 1)
    record.add(("blog", "8"))
    record.forget(("blog", "8"))                       # a brand-new key is simply undone
    assert [r.doc_id for r in record.rows()] == ["7"]


def test_take_dead_reads_the_named_keys_once(record):
    for doc in ("1", "2", "3"):
        record.add(("blog", doc))
        record.fail(("blog", doc), "gone wrong", False, 1)
    chosen = record.take_dead(iter([("blog", "1"), ("blog", "3")]))     # an iterator, as a generator gives
    assert sorted(chosen) == [("blog", "1"), ("blog", "3")]
    assert [(p.source, p.doc_id) for p in record.dead()] == [("blog", "2")]


def test_known_keys_are_the_pending_and_the_parked(record):
    record.add(K)
    record.add(("blog", "7"))
    record.claim(("blog", "7"), 30)
    record.fail(("blog", "7"), "FetchError: HTTP 400", False, 6)          # parked
    assert record.known([K, ("blog", "7"), ("blog", "8")]) == {K, ("blog", "7")}
    assert record.known(iter([("blog", "8")])) == set()


def test_a_pass_that_succeeds_clears_the_keys_dead_letter_entry(record):
    record.add(K)
    record.claim(K, 30)
    assert record.fail(K, "FetchError: HTTP 400", False, 6) == (1, True)       # parked
    record.add(K)                                                               # the next webhook
    record.claim(K, 30)
    assert record.finish(K) == (False, True) and record.dead() == [] and record.rows() == []
