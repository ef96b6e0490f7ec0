"""Workers that die or stall: their jobs come back in bounded time, and a stall short of dead_after costs nothing."""

from __future__ import annotations

import json
import time

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until

FAST_LIVENESS = {"heartbeat": "1s", "dead_after": "3s"}


def test_a_sigkilled_workers_500_jobs_are_all_done_by_another_worker_within_30s_of_the_kill(
        redis_url, redis_client, ledger, workers):
    client = geoq.Client(redis_url)
    ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 1}) for _ in range(500)])]
    # The default heartbeat (5s) and dead_after (15s): the 30 s bound under test is the default one.
    first = workers.start(redis_url)
    first_id = workers.id_of(redis_client, first)
    ledger.wait_for(500, "started", timeout=30)
    first.kill()
    killed_at = time.monotonic()
    in_flight = workers.holding(redis_client, "default", first_id)
    assert ledger.count() == 0 and len(in_flight) == 500, "the worker did not hold all 500 jobs when it died"

    second = workers.start(redis_url)
    job_time = 1.0
    wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=30 + job_time - (time.monotonic() - killed_at),
               interval=0.1, message="every job of the killed worker done within 30 s + job time of the kill")
    assert second.stop() == 0, second.log()

    assert f"worker {first_id} is dead: 500 jobs of queue default returned" in second.log_path.read_text()
    ledger.assert_accounted_for(ids, in_flight_at_fault=len(in_flight))
    assert_settled(redis_client, ["default"])
    assert redis_client.hget("geoq:workers", first_id) is None
    assert client.status(ids[0]).attempts == 2  # the run cut short by the kill counts


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_deliveries_while_the_others_complete(
        redis_url, redis_client, ledger, workers):
    client = geoq.Client(redis_url)
    others = [j.id for j in client.enqueue_many([("f.sleep", {}) for _ in range(100)])]
    poison = client.enqueue("f.poison", {}).id
    others += [j.id for j in client.enqueue_many([("f.sleep", {}) for _ in range(100)])]
    # One job at a time: every job in flight when a worker dies is charged a delivery, so with a
    # bigger pool the poison's neighbours would share its fate. Here at most the one job before it,
    # run but not yet acked, comes back with it.
    sections = {"worker": {**FAST_LIVENESS, "concurrency": 1, "fetch_batch": 1, "max_deliveries": 3}}

    def poison_is_dead() -> bool:
        return any(d["id"] == poison for d in places(redis_client, ["default"]).dead["default"])

    deaths, in_flight, deadline = 0, 0, time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"poison job not dead-listed after {deaths} worker deaths"
        worker = workers.start(redis_url, **sections)
        worker_id = workers.id_of(redis_client, worker)
        wait_until(lambda: worker.proc.poll() is not None or poison_is_dead(), timeout=30,
                   message="the worker died or the poison job was dead-listed")
        if worker.proc.poll() is None:
            break
        assert worker.proc.returncode == 1, worker.log()
        deaths += 1
        in_flight += len(workers.holding(redis_client, "default", worker_id))

    ledger.wait_for(len(others), timeout=30)
    assert worker.stop() == 0, worker.log()

    assert deaths == 3 and ledger.started()[poison] == 3
    settled = assert_settled(redis_client, ["default"])
    (record,) = settled.dead["default"]
    assert (record["id"], record["reason"], record["attempts"]) == (poison, "max_deliveries", 3)
    ledger.assert_accounted_for(others, in_flight_at_fault=in_flight, never_complete=[poison])
    status = client.status(poison)  # a job dead-listed by the reaper has a status, like any dead job
    assert status is not None and (status.state, status.reason) == ("dead", "max_deliveries"), status
    assert json.loads(redis_client.get(f"geoq:{{default}}:done:{poison}"))["t"] == record["type"] == "f.poison"


def test_a_handler_blocking_the_hub_for_2s_gets_its_worker_neither_reaped_nor_duplicated(
        redis_url, redis_client, ledger, workers):
    # Worker A alone serves the "cpu" queue, where the hub-blocking jobs go; B shares "default"
    # with A, so B's reaper watches A and would return A's default jobs if A looked dead.
    busy = workers.start(redis_url, worker={**FAST_LIVENESS, "queues": ["cpu", "default"]})
    watcher = workers.start(redis_url, worker={**FAST_LIVENESS, "queues": ["default"]})
    busy_id = workers.id_of(redis_client, busy)
    workers.id_of(redis_client, watcher)  # registered, so its reaper is watching
    client = geoq.Client(redis_url)
    ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 0.5}) for _ in range(400)])]
    # Two 2 s blocks, 1 s apart (each job sleeps "after" seconds cooperatively first).
    ids += [client.enqueue("f.hog", {"after": after, "busy": 2}, queue="cpu").id for after in (0, 3)]

    lapses: list[str] = []

    def all_done() -> bool:
        if not redis_client.hexists("geoq:workers", busy_id):
            lapses.append("unregistered")
        if not redis_client.exists(f"geoq:heartbeat:{busy_id}"):
            lapses.append("heartbeat expired")
        return set(ledger.succeeded()) >= set(ids)

    wait_until(all_done, timeout=30, interval=0.05, message="every job done")
    assert ledger.count("blocking") == 2
    assert not lapses, lapses
    assert busy.stop() == 0 and watcher.stop() == 0
    for log in (busy.log_path.read_text(), watcher.log_path.read_text()):
        assert " is dead: " not in log and "declared dead" not in log, log
    assert ledger.assert_accounted_for(ids, in_flight_at_fault=0) == 0
    assert_settled(redis_client, ["cpu", "default"])
