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
from tests.support.limit_runs import most_at_once, most_in_window, runs
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
    # 15 s of runs at the rate: its burst (a tenth of a second's worth) moves the rate over the run by 0.7 %.
    jobs = geoq.Client(redis_url).enqueue_many([("l.rate", {"n": i}) for i in range(1500)])
    workers = start_workers(tmp_path, redis_url, ledger, routes, 3, worker={"concurrency": 500})
    try:
        wait_until(lambda: ledger.client.llen("ledger:runs") >= 1500, timeout=120, interval=0.2,
                   message="1,500 rate-limited jobs to finish")
    finally:
        stop_all(workers)
    found = runs(ledger.client)
    ends = sorted(r.end for r in found)
    rate = (len(ends) - 1) / (ends[-1] - ends[0])
    per_second = [sum(1 for e in ends if ends[0] + i <= e < ends[0] + i + 1)
                  for i in range(int(ends[-1] - ends[0]) + 1)]
    assert 90 <= rate <= 110, f"{rate:.1f} jobs/s over the run; per second: {per_second}"
    assert most_in_window(ends) <= 120, f"{most_in_window(ends)} runs ended within one second"
    assert sorted(r.job_id for r in found) == sorted(j.id for j in jobs)   # each job once
    client = geoq.Client(redis_url)
    assert {client.status(j.id).attempts for j in jobs[::10]} == {1}   # waiting spent no attempt
    assert_settled(redis_client, ["default"])


QUICK = {"heartbeat": "1s", "dead_after": "3s"}
# The reaper's bound: dead_after, its grace (a heartbeat and a second), one pass (0.75 s at most).
# A lease lasts dead_after and a heartbeat past its last renewal, which came before the kill.
SLOT_BOUND = 3 + (1 + 1) + 0.75


def live_leases(client, route: str) -> list[str]:
    """Lease members ("worker|job|n") of a route not yet expired, by Redis's clock."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    return [m.decode() for m in client.zrangebyscore(f"geoq:{{limit:{route}}}:leases", now_ms, "+inf")]


def pid_of(client, worker_id: str) -> int:
    import json
    return int(json.loads(client.hget("geoq:workers", worker_id))["pid"])


def test_a_route_runs_at_most_its_concurrency_across_workers_and_a_killed_workers_slots_come_back(
        redis_url, redis_client, ledger, tmp_path):
    routes = {"l.slots": {"handler": f"{H}:record", "limits": {"concurrency": 20}}}
    jobs = geoq.Client(redis_url).enqueue_many([("l.slots", {"sleep": 0.2, "n": i}) for i in range(600)])
    workers = start_workers(tmp_path, redis_url, ledger, routes, 3, worker={"concurrency": 500, **QUICK})
    try:
        holders = wait_until(lambda: {m.split("|")[0] for m in live_leases(redis_client, "l.slots")} or None,
                             timeout=30, message="runs holding slots")
        victim_id = sorted(holders)[0]
        victim = next(w for w in workers if w.pid == pid_of(redis_client, victim_id))
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: not [m for m in live_leases(redis_client, "l.slots") if m.startswith(victim_id + "|")],
                   timeout=SLOT_BOUND, message="the killed worker's slots to come back")
        slots_back = time.monotonic() - killed_at
        wait_until(lambda: {r.job_id for r in runs(ledger.client)} >= {j.id for j in jobs}, timeout=120,
                   interval=0.2, message="every job to run")
        assert len(live_leases(redis_client, "l.slots")) == 0   # every slot given back
    finally:
        stop_all([w for w in workers if w is not victim])
        victim.kill()
    found = runs(ledger.client)
    assert most_at_once(found) <= 20, f"{most_at_once(found)} runs at once"
    assert most_at_once(found) >= 15   # and the limit is used, not starved
    assert slots_back <= SLOT_BOUND
    done = {r.job_id for r in found}
    assert done == {j.id for j in jobs} and len(found) - len(done) <= 20   # a rerun only for a killed run
    assert_settled(redis_client, ["default"])
