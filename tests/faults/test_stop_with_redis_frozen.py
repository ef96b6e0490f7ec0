"""A stop while Redis answers nothing: the worker still ends within its deadline and loses nothing.

A stop has one deadline, `shutdown_grace + redis.socket_timeout + 1 s` from the
signal: the grace for running jobs, then whatever is left for writing outcomes,
handing jobs back and deregistering. What it could not hand back stays in its
processing list, its registration stays too, and another worker's reaper returns
those jobs once its heartbeat has lapsed. The worker exits 3 and says so in one line.

Each test freezes (SIGSTOP) a redis-server of its own; the ledger stays on the
session server, so the handlers can record their runs while the queue's Redis is frozen.
"""

from __future__ import annotations

import signal
import time

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until

GRACE, SOCKET_TIMEOUT = 2.0, 1.0
# Allowance over the promised bound for what the worker does not control on a loaded machine:
# the signal reaching a busy process, and the interpreter's own exit after the stop is done.
ALLOWANCE = 0.5
BOUND = GRACE + SOCKET_TIMEOUT + 1.0 + ALLOWANCE
QUICK = {"shutdown_grace": f"{GRACE:g}s", "heartbeat": "1s", "dead_after": "3s"}


def _enqueue(url: str) -> tuple[list[str], list[str]]:
    """20 jobs that run for a minute (interrupted at the end of the grace, never finished) and
    10 that finish one second into the stop, while Redis is frozen (their outcomes cannot be written)."""
    client = geoq.Client(url)
    long_ids = [j.id for j in client.enqueue_many([("f.long", {"sleep": 60}) for _ in range(20)])]
    short_ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 1.0}) for _ in range(10)])]
    return long_ids, short_ids


def _stop_while_frozen(server, worker) -> float:
    """Freeze Redis, SIGTERM the worker; the seconds until it exited."""
    server.pause()
    worker.proc.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()
    try:
        worker.proc.wait(timeout=BOUND + 60)  # waited for longer, so a failure says how long it took
    finally:
        took = time.monotonic() - signalled_at
    return took


def test_a_stop_while_redis_is_frozen_ends_within_the_deadline_exits_3_and_leaves_the_jobs_to_the_reaper(
        private_redis, ledger, workers):
    url, admin = private_redis.url, private_redis.client()
    long_ids, short_ids = _enqueue(url)
    worker = workers.start(url, redis={"socket_timeout": f"{SOCKET_TIMEOUT:g}s"},
                           worker={"concurrency": 50, **QUICK})
    worker_id = workers.id_of(admin, worker)
    ledger.wait_for(30, "started", timeout=30)

    took = _stop_while_frozen(private_redis, worker)
    log = worker.log()
    assert took < BOUND, f"the stop took {took:.1f}s, more than {BOUND:g}s:\n{log}"
    assert worker.proc.returncode == 3, log
    assert "30 jobs left in its processing lists for the reaper" in log, log
    assert "10 of them finished but their outcomes were not written: they will run again" in log, log
    assert ledger.started() == {i: 1 for i in long_ids + short_ids}

    private_redis.resume()
    # Still registered: its heartbeat lapses and a reaper finds the jobs. A short job's outcome
    # sent just before the freeze may have been applied once Redis woke up (done), never lost.
    assert admin.hexists("geoq:workers", worker_id)
    held = workers.holding(admin, "default", worker_id)
    assert set(long_ids) <= set(held) and set(held) <= set(long_ids + short_ids), held
    done = set(short_ids) - set(held)
    client = geoq.Client(url)
    assert all(client.status(i).state == "succeeded" for i in done)
    assert places(admin, ["default"]).total("ready") == 0

    ledger.set("fast")
    second = workers.start(url, worker=QUICK)
    wait_until(lambda: not admin.exists(f"geoq:{{default}}:processing:{worker_id}"), timeout=30,
               message="the second worker's reaper returned the stopped worker's jobs")
    ledger.wait_for_ids(long_ids + short_ids, timeout=30, message="every job ran to the end")
    assert second.stop() == 0, second.log()
    ledger.assert_accounted_for(long_ids + short_ids, in_flight_at_fault=len(short_ids))
    assert_settled(admin, ["default"])
    assert not admin.hexists("geoq:workers", worker_id)
    print(f"stop with Redis frozen took {took:.2f}s (bound {BOUND:g}s)")


def test_with_two_processes_the_parent_exits_3_when_its_children_leave_jobs_to_the_reaper(
        private_redis, ledger, workers):
    url, admin = private_redis.url, private_redis.client()
    ids = [j.id for j in geoq.Client(url).enqueue_many([("f.long", {"sleep": 60}) for _ in range(20)])]
    parent = workers.start(url, args=["--processes", "2"], redis={"socket_timeout": f"{SOCKET_TIMEOUT:g}s"},
                           worker={"concurrency": 10, **QUICK})
    ledger.wait_for(20, "started", timeout=30)
    children = set(admin.hkeys("geoq:workers"))
    assert len(children) == 2, children

    took = _stop_while_frozen(private_redis, parent)
    log = parent.log()
    # The parent notices its children's exits on its next tick (0.2 s).
    assert took < BOUND + 0.2, f"the stop took {took:.1f}s, more than {BOUND + 0.2:g}s:\n{log}"
    assert parent.proc.returncode == 3, log
    assert log.count("has stopped, leaving jobs for the reaper (exit status 3)") == 2, log

    private_redis.resume()
    assert places(admin, ["default"]).total("processing") == 20
    ledger.set("fast")
    second = workers.start(url, worker=QUICK)
    ledger.wait_for_ids(ids, timeout=30, message="the reaper returned every job and it ran")
    assert second.stop() == 0, second.log()
    ledger.assert_accounted_for(ids, in_flight_at_fault=0)
    assert_settled(admin, ["default"])
    assert set(admin.hkeys("geoq:workers")) == set()
    print(f"stop of two processes with Redis frozen took {took:.2f}s (bound {BOUND + 0.2:g}s)")
