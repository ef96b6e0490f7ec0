"""End to end: bin/geoq-worker as a subprocess against a private redis-server."""

from __future__ import annotations

import collections
import time

import pytest

import geoq
from tests.support.handlers import ledger_counts
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.handlers"
ROUTES = {
    "t.ok": {"handler": f"{H}:ok"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": {"base": "10ms", "max": "50ms"}},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 2, "backoff": {"base": "10ms", "max": "50ms"}},
}




def test_ten_thousand_mixed_jobs_are_all_accounted_for(redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 500})
    client = geoq.Client(redis_url)
    kinds = (["t.ok", {}], ["t.ok", {"sleep": 0.01}], ["t.flaky", {"failures": 2}], ["t.broken", {}])
    items = [(kinds[i % 4][0], kinds[i % 4][1]) for i in range(10_000)]
    jobs = client.enqueue_many(items)
    by_kind = collections.defaultdict(list)
    for (kind, payload), job in zip(items, jobs):
        by_kind["sleep" if payload.get("sleep") else kind].append(job.id)

    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        wait_until(lambda: places(redis_client, ["default"]).total("dead") == 2500, timeout=120,
                   message="the always-failing jobs did not all reach the dead list")
        wait_until(lambda: sum(ledger_counts(ledger_client, "succeeded").values()) == 7500, timeout=60,
                   message="not every succeeding job succeeded")
        assert worker.stop() == 0, worker.log()

    succeeded = ledger_counts(ledger_client, "succeeded")
    expected = set(by_kind["t.ok"]) | set(by_kind["sleep"]) | set(by_kind["t.flaky"])
    assert set(succeeded) == expected and all(n == 1 for n in succeeded.values())
    failed = ledger_counts(ledger_client, "failed")
    assert collections.Counter(failed[i] for i in by_kind["t.flaky"]) == {2: 2500}
    assert all(failed[i] == 3 for i in by_kind["t.broken"])
    settled = assert_settled(redis_client, ["default"])
    dead = {d["id"]: d for d in settled.dead["default"]}
    assert set(dead) == set(by_kind["t.broken"])
    sample = dead[by_kind["t.broken"][0]]
    assert sample["reason"] == "max_retries" and sample["attempts"] == 3
    assert [h[1] for h in sample["history"]] == ["RuntimeError: always broken"] * 3
    assert client.status(by_kind["t.flaky"][0]).state == "succeeded"
    assert client.result(by_kind["t.flaky"][0], timeout=1) == {"attempt": 3}
    with pytest.raises(geoq.JobDead):
        client.result(by_kind["t.broken"][0], timeout=1)


def test_a_delayed_job_does_not_start_before_its_delay(redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.started": {"handler": f"{H}:started"}})
    client = geoq.Client(redis_url)
    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        enqueued_at = time.time()
        job = client.enqueue("t.started", {}, delay=2)
        assert client.status(job.id).state == "scheduled"
        wait_until(lambda: ledger_client.hget("ledger:started_at", job.id), timeout=10)
        assert worker.stop() == 0, worker.log()
    started_at = float(ledger_client.hget("ledger:started_at", job.id))
    assert started_at - enqueued_at >= 2.0
    assert client.status(job.id).state == "succeeded"
    assert_settled(redis_client, ["default"])


def test_with_a_backlog_in_two_queues_the_higher_priority_queue_drains_first(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    routes = {"t.order": {"handler": f"{H}:record_order"}}
    config = write_config(tmp_path / "w.yaml", redis_url, routes,
                          worker={"concurrency": 5, "fetch_batch": 5, "queues": ["critical", "bulk"]})
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.order", {"queue": "bulk"}, {"queue": "bulk"}) for _ in range(200)])
    client.enqueue_many([("t.order", {"queue": "critical"}, {"queue": "critical"}) for _ in range(200)])
    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        wait_until(lambda: ledger_client.llen("ledger:order") == 400, timeout=60)
        assert worker.stop() == 0, worker.log()
    order = [x.decode() for x in ledger_client.lrange("ledger:order", 0, -1)]
    # Up to one batch of bulk may start while critical is still being swept in.
    assert order[:195].count("critical") >= 190, order[:200]
    assert order.index("bulk") >= 190
    assert_settled(redis_client, ["critical", "bulk"])
