"""SIGTERM: running jobs get the grace to finish, the rest go back to the head of their queue uncounted.

The "60 s" jobs use the f.long handler: it sleeps its payload's 60 s unless the
ledger's "fast" flag is set, and then only 0.1 s. The flag is set once the
first worker is gone, so the worker that receives the jobs back finishes them
at once instead of keeping the test waiting a minute.
"""

from __future__ import annotations

import json
import signal
import time

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until


def _ready(client, queue="default"):
    return [json.loads(e) for e in client.lrange(f"geoq:{{{queue}}}:ready", 0, -1)]


def test_sigterm_lets_short_jobs_finish_hands_long_ones_back_uncounted_and_exits_0_within_grace(
        redis_url, redis_client, ledger, workers):
    client = geoq.Client(redis_url)
    long_ids = [j.id for j in client.enqueue_many([("f.long", {"sleep": 60}) for _ in range(50)])]
    short_ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 0.2}) for _ in range(200)])]
    grace = 2.0
    worker = workers.start(redis_url, worker={"concurrency": 300, "shutdown_grace": f"{grace}s"})
    ledger.wait_for(250, "started", timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    wait_until(lambda: "stopping: no new jobs" in worker.log(), message="the worker saw SIGTERM")
    # The fetch blocked in Redis when the signal came would still take new jobs (and keep them
    # until the end of the grace): wait until it has returned. Jobs enqueued after that stay
    # in the ready list, behind the jobs handed back.
    wait_until(lambda: not workers.blocked_fetches(redis_client), message="the blocked fetch returned")
    later_ids = [j.id for j in client.enqueue_many([("f.sleep", {}) for _ in range(20)])]

    assert worker.proc.wait(timeout=grace + 2 - (time.monotonic() - signalled_at)) == 0, worker.log()
    assert "waiting up to 2s for 250 running jobs" in worker.log_path.read_text()
    assert "50 unfinished jobs handed back" in worker.log_path.read_text()
    assert "could not" not in worker.log_path.read_text()
    assert ledger.succeeded() == {i: 1 for i in short_ids}
    ready = _ready(redis_client)
    assert [e["i"] for e in ready] == long_ids + later_ids  # at the head, in their order
    assert all(e["a"] == 0 and "d" not in e for e in ready[:50])  # a handback is not a run
    assert all((s.state, s.attempts) == ("queued", 0) for s in map(client.status, long_ids))
    assert places(redis_client, ["default"]).total("processing") == 0
    assert redis_client.hlen("geoq:workers") == 0  # everything handed back: nothing left for a reaper

    ledger.set("fast")
    second = workers.start(redis_url)
    wait_until(lambda: set(ledger.succeeded()) >= set(long_ids + later_ids), timeout=30,
               message="the second worker ran the jobs handed back")
    assert second.stop() == 0, second.log()
    assert ledger.assert_accounted_for(long_ids + short_ids + later_ids, in_flight_at_fault=0) == 0
    assert ledger.started()[long_ids[0]] == 2
    assert_settled(redis_client, ["default"])
    assert client.status(long_ids[0]).attempts == 1  # the run cut short by the shutdown did not count


def test_a_second_sigterm_skips_the_rest_of_the_grace_but_still_hands_jobs_back(
        redis_url, redis_client, ledger, workers):
    client = geoq.Client(redis_url)
    ids = [j.id for j in client.enqueue_many([("f.long", {"sleep": 60}) for _ in range(50)])]
    worker = workers.start(redis_url, worker={"shutdown_grace": "60s"})
    ledger.wait_for(50, "started", timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping: no new jobs" in worker.log(), message="the worker saw the first SIGTERM")
    worker.proc.send_signal(signal.SIGTERM)
    second_at = time.monotonic()

    # Well inside the 60 s grace: interrupting the jobs, writing and handing back take moments.
    assert worker.proc.wait(timeout=10) == 0, worker.log()
    assert time.monotonic() - second_at < 10
    log = worker.log_path.read_text()
    assert "second stop signal" in log and "50 unfinished jobs handed back" in log
    ready = _ready(redis_client)
    assert [e["i"] for e in ready] == ids and all(e["a"] == 0 for e in ready)
    assert ledger.count() == 0

    ledger.set("fast")
    second = workers.start(redis_url)
    ledger.wait_for(50, timeout=30)
    assert second.stop() == 0, second.log()
    assert ledger.assert_accounted_for(ids, in_flight_at_fault=0) == 0
    assert_settled(redis_client, ["default"])
