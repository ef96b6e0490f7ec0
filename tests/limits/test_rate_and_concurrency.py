"""Fleet-wide limits across real worker processes (bin/geoq-worker) on one redis-server.

Runs are recorded by tests/support/limit_handlers.py in the ledger, outside the queue, with
their start and end times; every test ends asserting where every job is.
"""

from __future__ import annotations

import os
import signal
import time

import geoq
from tests.support.keyspace import assert_settled
from tests.support.limit_runs import by_key, most_at_once, most_in_window, runs
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.limit_handlers"


def start_workers(tmp_path, redis_url, ledger, routes, n, **sections):
    config = write_config(tmp_path / "w.yaml", redis_url, routes, **sections)
    return [WorkerProcess(config, env=ledger.env, log=tmp_path / f"w{i}.log") for i in range(n)]


def stop_all(workers):
    for w in workers:
        assert w.stop() == 0, w.log()


def test_three_workers_hold_a_route_to_its_rate_together(redis_url, redis_client, ledger, tmp_path):
    routes = {"l.rate": {"handler": f"{H}:record", "limits": {"rate": "100/s"}}}
    jobs = geoq.Client(redis_url).enqueue_many([("l.rate", {"n": i}) for i in range(3000)])
    workers = start_workers(tmp_path, redis_url, ledger, routes, 3, worker={"concurrency": 500})
    try:
        wait_until(lambda: ledger.client.llen("ledger:runs") >= 3000, timeout=120, interval=0.2,
                   message="3,000 rate-limited jobs to finish")
    finally:
        stop_all(workers)
    found = runs(ledger.client)
    ends = sorted(r.end for r in found)
    rate = (len(ends) - 1) / (ends[-1] - ends[0])
    per_second = [sum(1 for e in ends if ends[0] + i <= e < ends[0] + i + 1) for i in range(int(ends[-1] - ends[0]) + 1)]
    print(f"rate {rate:.1f}/s, most in 1 s {most_in_window(ends)}")
    assert 90 <= rate <= 110, f"{rate:.1f} jobs/s over the run; per second: {per_second}"
    assert most_in_window(ends) <= 120, f"{most_in_window(ends)} runs ended within one second"
    assert sorted(r.job_id for r in found) == sorted(j.id for j in jobs)   # each job once
    assert_settled(redis_client, ["default"])
