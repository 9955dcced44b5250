"""A CMS outage is not a bad page: passes wait it out (backing off, never parked) until
`[queue] outage_horizon_s`; a page-specific failure parks at once or after max_attempts; and
any later pass that succeeds for a parked key clears its dead-letter entry, and says so."""

from __future__ import annotations

import logging

from tests.support import page_html, wait_for, wp_source

FAST = "[queue]\nmax_attempts = 3\nbackoff_base_s = 0.01\nbackoff_max_s = 0.05\n"


def test_a_cms_outage_is_waited_out_past_max_attempts(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), FAST)
    wp.publish(1, "Down", page_html(["Written while the CMS was answering 503."]))
    wp.fail_next(6, 503)
    wp.fail_next(6, 502, body="<html>Bad gateway</html>")
    daemon.wp_event(1, "post.published")
    wait_for(lambda: any(r.attempts > 3 for r in daemon.engine.queue.pending()), 60, "retries past max_attempts")
    assert daemon.engine.queue.dead() == []
    daemon.idle()
    assert daemon.doc_texts("blog", "1") == ["Written while the CMS was answering 503."]
    assert daemon.engine.queue.dead() == [] and not wp.failures


def test_past_the_horizon_an_outage_parks(daemon_factory, wp):
    daemon = daemon_factory(wp_source(wp), FAST + "outage_horizon_s = 0\n")
    wp.publish(2, "Down for long", page_html(["Parked once the horizon has passed."]))
    wp.fail_next(3, 503)
    daemon.wp_event(2, "post.published")
    daemon.idle()
    (parked,) = daemon.engine.queue.dead()
    assert parked.attempts == 3 and "HTTP 503" in parked.error


def test_a_later_pass_that_succeeds_clears_the_dead_letter_entry(daemon_factory, wp, caplog):
    daemon = daemon_factory(wp_source(wp), FAST)
    wp.publish(3, "Refused once", page_html(["Indexed by the next webhook."]))
    wp.fail_next(1, 400)                                 # page-specific and permanent: parked at once
    daemon.wp_event(3, "post.published")
    daemon.idle()
    assert [p.doc_id for p in daemon.engine.queue.dead()] == ["3"]
    with caplog.at_level(logging.INFO, logger="ragsync.queue"):
        daemon.wp_event(3)                               # no operator: the CMS sends the next change
        daemon.idle()
        # the worker logs just after it drops the pending record that idle() waits on
        wait_for(lambda: "blog/3: a pass succeeded; its dead-letter entry is cleared" in caplog.text,
                 10, "the cleared entry to be logged")
    assert daemon.engine.queue.dead() == []
    assert daemon.doc_texts("blog", "3") == ["Indexed by the next webhook."]
    assert daemon.http.get("/metrics").text.count('ragsync_dead_letter_keys 0.0') == 1
