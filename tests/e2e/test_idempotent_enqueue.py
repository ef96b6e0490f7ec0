"""An enqueue with the id of a live job stores nothing and returns the job stored under it,
wherever that job is: ready, scheduled, or running on a worker."""

from __future__ import annotations

import geoq
from geoq.broker import keys
from tests.support.admin_handlers import RELEASE
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

ROUTES = {"t.hold": {"handler": "tests.support.admin_handlers:hold"}}
K = keys.queue_keys("default")


def test_a_queued_id_returns_the_stored_job_and_writes_nothing(redis_url, redis_client):
    with geoq.Client(redis_url) as client:
        first = client.enqueue("t.hold", {"n": 1}, id="order-1")
        before = redis_client.lrange(K.ready, 0, -1)
        again = client.enqueue("t.hold", {"n": 2}, id="order-1", priority="high")
        assert (again.id, again.payload, again.enqueued_at) == ("order-1", {"n": 1}, first.enqueued_at)
        assert redis_client.lrange(K.ready, 0, -1) == before


def test_enqueue_many_returns_the_stored_job_in_place_of_each_live_id(redis_url, redis_client):
    with geoq.Client(redis_url) as client:
        # Deeper than one page of the ready list, with the live id far from its tail.
        client.enqueue("t.hold", {"n": "original"}, id="deep")
        client.enqueue_many([("t.hold", {"n": i}) for i in range(1_200)])
        jobs = client.enqueue_many([("t.hold", {"n": "new"}), ("t.hold", {"n": "again"}, {"id": "deep"}),
                                    ("t.hold", {"n": "fresh"}, {"id": "fresh"})])
        assert [(j.id == "deep", j.payload) for j in jobs] == [
            (False, {"n": "new"}), (True, {"n": "original"}), (False, {"n": "fresh"})]
        assert redis_client.llen(K.ready) == 1 + 1_200 + 2


def test_a_scheduled_id_returns_the_scheduled_job_with_its_due_time(redis_url, redis_client):
    with geoq.Client(redis_url) as client:
        first = client.enqueue("t.hold", {"n": 1}, id="later", delay=3600)
        again = client.enqueue("t.hold", {"n": 2}, id="later")
        assert (again.payload, again.due_at) == ({"n": 1}, first.due_at)
        assert again.due_at is not None and again.due_at > first.enqueued_at + 3500
        assert (redis_client.zcard(K.scheduled), redis_client.llen(K.ready)) == (1, 0)


def test_a_running_id_returns_the_running_job_and_a_finished_id_may_be_used_again(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES)
    with geoq.Client(redis_url) as client, WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        client.enqueue("t.hold", {"n": 1}, id="once")
        wait_until(lambda: client.status("once").state == "running", timeout=20, message="the job never started")
        again = client.enqueue("t.hold", {"n": 2}, id="once")
        assert again.payload == {"n": 1}
        assert (redis_client.llen(K.ready), redis_client.zcard(K.scheduled)) == (0, 0)

        ledger_client.set(RELEASE, 1)
        wait_until(lambda: client.status("once").state == "succeeded", timeout=20)
        reused = client.enqueue("t.hold", {"n": 3}, id="once")
        assert reused.payload == {"n": 3}
        wait_until(lambda: ledger_client.llen("ledger:succeeded") == 2, timeout=20,
                   message="the reused id did not run")
        assert worker.stop() == 0, worker.log()
    assert [i.decode() for i in ledger_client.lrange("ledger:succeeded", 0, -1)] == ["once", "once"]
    assert_settled(redis_client, ["default"])
