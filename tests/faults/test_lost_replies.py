"""A fetch whose reply is lost after Redis moved the jobs, or an ack Redis took and then lost:
the worker finds the jobs in its processing list that it does not run, and runs them."""

from __future__ import annotations

import re

import geoq
from geoq.broker import keys
from geoq.worker.fetcher import CHECK_EVERY
from tests.support.keyspace import assert_settled
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until


def test_jobs_moved_by_a_fetch_whose_reply_was_cut_midway_are_still_run_and_no_other_job_runs_twice(
        redis_server, redis_db, redis_url, redis_client, ledger, workers):
    client = geoq.Client(redis_url)
    # 16 kB each: the processing list of 2000 running jobs, which reconciliation reads back,
    # is some 32 MB. Run times spread over a second keep outcomes being written meanwhile.
    ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": (i % 50) / 50, "pad": "x" * 16_000})
                                              for i in range(3000)])]
    with TcpProxy(redis_server.port) as proxy:
        worker = workers.start(proxy.url_for(redis_db))
        ledger.wait_for(1500, "started", timeout=30)
        # The next fetch (a batch of up to 100, ~1.6 MB) gets 1 kB of its reply, then the connection drops.
        proxy.cut_reply(after=1000, request_contains=b"LMOVE")
        assert proxy.wait_cut(timeout=15), worker.log()
        wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=60, interval=0.1, message="every job ran")
        assert worker.stop() == 0, worker.log()

    assert proxy.cuts == 1
    log = worker.log_path.read_text()
    assert "fetch failed" in log
    # Redis runs the batch's moves as their bytes arrive, and the cut also drops the rest of the
    # request: anywhere from one job to the whole batch was moved before it.
    found = re.search(r"found (\d+) jobs in this worker's processing list of queue default that it does not run", log)
    assert found, log
    # The cut lost only the reply of jobs that had not started: no job may run twice.
    ledger.assert_accounted_for(ids, in_flight_at_fault=0)
    assert 1 <= int(found[1]) <= 100, found[0]
    assert_settled(redis_client, ["default"])


def test_a_job_moved_by_a_fetch_left_blocked_in_redis_after_its_connection_dropped_is_still_run(
        redis_server, redis_db, redis_url, redis_client, ledger, workers):
    # A long block, so that Redis still holds the orphaned fetch when the job arrives.
    with TcpProxy(redis_server.port) as proxy:
        # The idle worker's first fetch reaches Redis, then its connection drops on the worker's side only.
        # The BLMOVE command as sent (RESP), not the fetch script's text, which names it too.
        proxy.drop_client(request_contains=b"$6\r\nBLMOVE\r\n")
        worker = workers.start(proxy.url_for(redis_db), worker={"block_timeout": "5s"})
        worker_id = workers.id_of(redis_client, worker)
        assert proxy.wait_cut(timeout=15), worker.log()
        # The worker saw the error, reconciled and blocks again, next to the fetch Redis still holds.
        wait_until(lambda: len(workers.blocked_fetches(redis_client)) == 2, message="orphaned and new fetch both blocked")
        job = geoq.Client(redis_url).enqueue("f.sleep", {})
        wait_until(lambda: ledger.succeeded()[job.id] >= 1, timeout=15,
                   message=f"the job the orphaned fetch moved into {worker_id}'s processing list ran")
        assert worker.stop() == 0, worker.log()
    assert "found 1 jobs in this worker's processing list of queue default" in worker.log()
    assert ledger.assert_accounted_for([job.id], in_flight_at_fault=0) == 0
    assert_settled(redis_client, ["default"])


def test_a_job_whose_ack_redis_lost_without_an_error_is_found_in_the_processing_list_and_run(
        redis_url, redis_client, ledger, workers):
    """What a failover does to acks the old master took last: the new master still has the jobs in
    the worker's processing list, and the worker saw no error that would make it look."""
    client = geoq.Client(redis_url)
    worker = workers.start(redis_url)
    worker_id = workers.id_of(redis_client, worker)
    job = client.enqueue("f.sleep", {}, delay=3600)
    k = keys.queue_keys("default")
    (envelope,) = redis_client.zrange(k.scheduled, 0, -1)
    with redis_client.pipeline(transaction=True) as undo:  # as if fetched, run, and its ack undone
        undo.zrem(k.scheduled, envelope)
        undo.rpush(k.processing(worker_id), envelope)
        undo.execute()
    wait_until(lambda: ledger.succeeded()[job.id] == 1, timeout=CHECK_EVERY + 20,
               message="the job left in the processing list was not run")
    assert worker.stop() == 0, worker.log()
    assert "found 1 jobs in this worker's processing list of queue default" in worker.log()
    assert ledger.assert_accounted_for([job.id], in_flight_at_fault=0) == 0
    assert_settled(redis_client, ["default"])


def test_more_jobs_found_in_the_processing_list_than_free_slots_all_run_as_slots_free_up(
        redis_url, redis_client, ledger, workers):
    """A failover can undo more acks than the pool holds: the worker runs what fits, the rest as
    slots free up, and goes on fetching."""
    client = geoq.Client(redis_url)
    worker = workers.start(redis_url, worker={"concurrency": 4})
    worker_id = workers.id_of(redis_client, worker)
    jobs = client.enqueue_many([("f.sleep", {"sleep": 0.3}, {"delay": 3600}) for _ in range(10)])
    k = keys.queue_keys("default")
    envelopes = redis_client.zrange(k.scheduled, 0, -1)
    with redis_client.pipeline(transaction=True) as undo:  # as if fetched, run, and their acks undone
        undo.zrem(k.scheduled, *envelopes)
        undo.rpush(k.processing(worker_id), *envelopes)
        undo.execute()
    ids = [j.id for j in jobs]
    wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=CHECK_EVERY + 20,
               message="the jobs left in the processing list were not all run")
    later = client.enqueue("f.sleep", {})
    wait_until(lambda: ledger.succeeded()[later.id] == 1, timeout=15, message="the worker fetches again")
    assert worker.stop() == 0, worker.log()
    log = worker.log()
    assert "found 10 jobs in this worker's processing list of queue default" in log, log
    assert "running 4 of them now, the rest as slots free up" in log, log
    assert ledger.assert_accounted_for(ids + [later.id], in_flight_at_fault=0) == 0
    assert_settled(redis_client, ["default"])
