"""Many workers promoting the same due jobs at once never run one twice or drop one."""

from __future__ import annotations

import collections
import time

import geoq
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config


def test_four_workers_promoting_ten_thousand_due_jobs_run_each_exactly_once(
        redis_server, redis_url, redis_client, tmp_path):
    ledger_db = 0
    ledger = redis_server.client(ledger_db)
    ledger.flushdb()
    routes = {"t.ok": {"handler": "tests.support.handlers:ok"}}
    config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"concurrency": 200})
    client = geoq.Client(redis_url)
    due = time.time() + 3  # all become due at the same moment, while every worker is up
    jobs = client.enqueue_many([("t.ok", {}, {"at": due}) for _ in range(10_000)])
    assert redis_client.zcard("geoq:{default}:scheduled") == 10_000
    env = {"GEOQ_TEST_LEDGER": redis_server.url_for(ledger_db)}
    workers = [WorkerProcess(config, env=env, log=tmp_path / f"w{i}.log") for i in range(4)]
    try:
        wait_until(lambda: ledger.llen("ledger:succeeded") >= 10_000, timeout=90)
        for w in workers:
            assert w.stop() == 0, w.log()
    finally:
        for w in workers:
            w.kill()
    ran = collections.Counter(x.decode() for x in ledger.lrange("ledger:succeeded", 0, -1))
    assert set(ran) == {j.id for j in jobs}
    assert max(ran.values()) == 1
    assert_settled(redis_client, ["default"])
    ledger.close()
