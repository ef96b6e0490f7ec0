"""Redis killed and restarted while a worker admits jobs under fleet-wide limits: permits asked
for and slots given back wait out the outage; nothing runs without its permit, nothing is lost."""

from __future__ import annotations

import geoq
from tests.faults.conftest import H
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until

ROUTES = {"f.limited": {"handler": f"{H}:sleeper", "limits": {"rate": "200/s", "concurrency": 10}}}


def test_a_limited_route_resumes_after_redis_restarts_and_every_job_runs(private_redis, ledger, workers):
    url = private_redis.url
    ids = [j.id for j in geoq.Client(url).enqueue_many([("f.limited", {"sleep": 0.02}) for _ in range(1000)])]
    worker = workers.start(url, routes=ROUTES, worker={"concurrency": 200, "heartbeat": "1s", "dead_after": "3s"})
    ledger.wait_for(200, timeout=60)
    private_redis.kill()
    assert ledger.count() < 1000, "the run was over before the crash"
    wait_until(lambda: "fetch failed" in worker.log(), message="the worker noticed Redis was gone")
    private_redis.restart()
    wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=90, interval=0.1,
               message="every job done after the restart")
    assert worker.proc.poll() is None and worker.stop() == 0, worker.log()
    assert "Traceback" not in worker.log_path.read_text()
    ledger.assert_accounted_for(ids, in_flight_at_fault=10)   # at most the runs holding a slot at the crash
    client = private_redis.client()
    assert_settled(client, ["default"])
    assert client.zcard("geoq:{limit:f.limited}:leases") == 0   # every slot given back
