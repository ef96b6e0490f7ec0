"""Redis keeping the inside of its lists compressed (list-compress-depth 1, which the README offers
for deep backlogs): the fetch's chunked LPOP, the ack's LREM and the reaper's move all read and
write compressed nodes, and a worker killed mid-drain still loses no job."""

from __future__ import annotations

import geoq
from tests.support.keyspace import assert_settled
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

FAST_LIVENESS = {"heartbeat": "1s", "dead_after": "3s"}
READY = "geoq:{default}:ready"


def test_with_lists_compressed_a_killed_workers_jobs_are_all_done_by_another_worker(ledger, workers):
    with RedisServer(config={"list-compress-depth": 1}) as server:
        url, r = server.url_for(0), server.client()
        client = geoq.Client(url)
        jobs = [("f.sleep", {"sleep": 0.3, "to": f"user{i}@example.com", "subject": "your order shipped"})
                for i in range(3000)]
        ids = [j.id for j in client.enqueue_many(jobs)]
        stored = sum(len(envelope) for envelope in r.lrange(READY, 0, -1))
        assert r.memory_usage(READY, samples=0) < stored / 2, "Redis did not compress the ready list"

        # 300 in flight: the killed worker's processing list spans several nodes, compressed inside.
        worker = {**FAST_LIVENESS, "concurrency": 300}
        first = workers.start(url, worker=worker)
        first_id = workers.id_of(r, first)
        ledger.wait_for(600, "started", timeout=30)
        first.kill()
        in_flight = workers.holding(r, "default", first_id)
        assert len(in_flight) >= 100, "the worker held too few jobs when it died to test the reaper's move"

        second = workers.start(url, worker=worker)
        wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=60, interval=0.1,
                   message="every job done after the kill")
        assert second.stop() == 0, second.log()
        assert f"worker {first_id} is dead: {len(in_flight)} jobs of queue default returned" in second.log()
        ledger.assert_accounted_for(ids, in_flight_at_fault=len(in_flight))
        assert_settled(r, ["default"])
        client.close()
