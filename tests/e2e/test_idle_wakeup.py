"""An idle worker blocks in Redis on all its queues at once: a job in any of them starts at once."""

from __future__ import annotations

import time

import geoq
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config


def test_a_job_pushed_to_the_lowest_priority_idle_queue_starts_without_waiting_for_a_block_timeout(
        redis_server, redis_url, redis_client, tmp_path):
    ledger = redis_server.client(0)
    ledger.flushdb()
    routes = {"t.started": {"handler": "tests.support.handlers:started"}}
    # A block timeout far longer than the deadline below: only a fetch already blocked on the
    # queue the job lands in can start it in time, whichever queue that is.
    config = write_config(tmp_path / "w.yaml", redis_url, routes,
                          worker={"queues": ["critical", "default", "bulk"], "block_timeout": "5s"})
    client = geoq.Client(redis_url)
    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": redis_server.url_for(0)}) as worker:
        wait_until(lambda: redis_client.hlen("geoq:workers") == 1, timeout=10)
        jobs = []
        for queue in ("bulk", "default", "critical", "bulk"):
            time.sleep(0.3)  # let the worker go idle and block again before each job
            job = client.enqueue("t.started", {}, queue=queue)
            jobs.append(job)
            wait_until(lambda: ledger.hexists("ledger:started_at", job.id), timeout=2,
                       message=f"a job in idle queue {queue} did not start")
        assert worker.stop(timeout=20) == 0, worker.log()
    assert all(client.status(j.id).state == "succeeded" for j in jobs)
    assert_settled(redis_client, ["critical", "default", "bulk"])
    ledger.close()
