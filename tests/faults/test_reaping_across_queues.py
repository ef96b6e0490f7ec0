"""A dead worker's jobs come back in every queue it served, whichever queues the reaping worker serves.

Jobs are held in flight with f.hold (they run until the ledger's release flag is set), so
"back" is seen plainly: every job of the dead workers in its queue's ready list. The live
workers that serve those queues run one held job each (concurrency 1), so they cannot take
the returned jobs before the test has seen them back; then the release lets them run.
"""

from __future__ import annotations

import json
import time
from typing import Iterable, Sequence

import redis

import geoq
from tests.faults.conftest import Workers
from tests.faults.test_worker_death import FAST_LIVENESS
from tests.support.keyspace import assert_settled, places
from tests.support.ledger import Ledger
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess

# dead_after (3 s) + the grace (heartbeat + 1 s) + one pass (0.75 s at most) is under 6 s; the rest
# is room for a loaded machine. The default settings' bound (30 s) is test_worker_death's.
BOUND = 15.0


def serving(workers: Workers, url: str, client: redis.Redis, *queues: str, **worker: object) -> tuple[WorkerProcess, str]:
    process = workers.start(url, worker={**FAST_LIVENESS, "queues": list(queues), **worker})
    return process, workers.id_of(client, process)


def busy(workers: Workers, url: str, client: redis.Redis, queue: str) -> tuple[WorkerProcess, str, list[str]]:
    """A worker of one queue whose pool (of one) is full with a held job: it takes no other job."""
    process, worker_id = serving(workers, url, client, queue, concurrency=1)
    blocker = hold(url, queue, 1)
    wait_held(client, queue, [worker_id], blocker)
    return process, worker_id, blocker


def hold(url: str, queue: str, n: int) -> list[str]:
    """Enqueue n jobs that run until the ledger's release flag is set."""
    with geoq.Client(url) as producer:
        return [j.id for j in producer.enqueue_many([("f.hold", {}, {"queue": queue})] * n)]


def reaper_lock_held_by(client: redis.Redis, worker_id: str) -> None:
    wait_until(lambda: client.get("geoq:reaper") == worker_id.encode(), timeout=10,
               message=f"worker {worker_id} holds the reaper lock")


def held(client: redis.Redis, queue: str, worker_ids: Iterable[str]) -> set[str]:
    return {i for w in worker_ids for i in Workers.holding(client, queue, w)}


def wait_held(client: redis.Redis, queue: str, worker_ids: Sequence[str], ids: list[str]) -> None:
    wait_until(lambda: held(client, queue, worker_ids) == set(ids), timeout=15,
               message=f"the jobs of {queue} taken by {worker_ids}")


def ready_ids(client: redis.Redis, queue: str) -> list[str]:
    return [json.loads(e)["i"] for e in client.lrange(f"geoq:{{{queue}}}:ready", 0, -1)]


def wait_back(client: redis.Redis, jobs: dict[str, list[str]], since: float, bound: float = BOUND) -> float:
    """Until every job is in its queue's ready list; the seconds it took since `since`."""
    wait_until(lambda: all(sorted(ready_ids(client, q)) == sorted(ids) for q, ids in jobs.items()),
               timeout=bound - (time.monotonic() - since), interval=0.05,
               message=f"every job back in its ready list within {bound:g}s")
    took = time.monotonic() - since
    print(f"\nall {sum(map(len, jobs.values()))} jobs back in {took:.2f}s")
    return took


def assert_only_ready(client: redis.Redis, queue: str, ids: list[str]) -> None:
    """Every job of the queue is in its ready list, once, queued; nothing anywhere else."""
    p = places(client, [queue])
    assert sorted(ready_ids(client, queue)) == sorted(ids)
    assert (p.scheduled[queue], p.processing[queue], p.dead[queue], p.live_states[queue]) == (0, 0, [], len(ids))


def assert_forgotten(client: redis.Redis, worker_id: str, queues: Iterable[str]) -> None:
    assert client.hget("geoq:workers", worker_id) is None
    assert not any(client.sismember(f"geoq:{{{q}}}:workers", worker_id) for q in queues)


def assert_all_done(client: redis.Redis, ledger: Ledger, queues: list[str], ids: Iterable[str]) -> None:
    ledger.wait_for_ids(list(ids), timeout=30, message="every returned job run")
    assert_settled(client, queues)


def test_a_worker_serving_other_queues_returns_a_dead_workers_jobs(redis_url, redis_client, ledger, workers):
    mail, mail_id = serving(workers, redis_url, redis_client, "mail")
    reaper_lock_held_by(redis_client, mail_id)
    http, http_id = serving(workers, redis_url, redis_client, "http")
    ids = hold(redis_url, "http", 100)
    wait_held(redis_client, "http", [http_id], ids)

    http.kill()
    wait_back(redis_client, {"http": ids}, time.monotonic())

    assert mail.stop() == 0, mail.log()
    assert f"worker {http_id} is dead: 100 jobs of queue http returned" in mail.log()
    assert_only_ready(redis_client, "http", ids)
    assert_forgotten(redis_client, http_id, ["mail", "http"])


def test_a_dead_worker_of_two_queues_is_reaped_in_both_by_a_reaper_serving_one(
        redis_url, redis_client, ledger, workers):
    reaper, reaper_id, blocker = busy(workers, redis_url, redis_client, "mail")
    reaper_lock_held_by(redis_client, reaper_id)
    dead, dead_id = serving(workers, redis_url, redis_client, "mail", "http")
    mail, http = hold(redis_url, "mail", 50), hold(redis_url, "http", 50)
    wait_held(redis_client, "mail", [dead_id], mail)
    wait_held(redis_client, "http", [dead_id], http)

    dead.kill()
    wait_back(redis_client, {"mail": mail, "http": http}, time.monotonic())
    assert_forgotten(redis_client, dead_id, ["mail", "http"])

    ledger.set("release")
    assert_all_done(redis_client, ledger, ["mail"], blocker + mail)
    assert reaper.stop() == 0, reaper.log()
    assert_only_ready(redis_client, "http", http)


def test_a_reaper_restarted_after_the_death_still_returns_the_jobs_of_queues_it_does_not_serve(
        redis_url, redis_client, ledger, workers):
    first, first_id = serving(workers, redis_url, redis_client, "mail")
    reaper_lock_held_by(redis_client, first_id)
    http, http_id = serving(workers, redis_url, redis_client, "http")
    ids = hold(redis_url, "http", 100)
    wait_held(redis_client, "http", [http_id], ids)

    http.kill()
    killed_at = time.monotonic()
    assert first.stop() == 0, first.log()   # before its reaper could judge the http worker dead
    assert " is dead: " not in first.log()
    second, second_id = serving(workers, redis_url, redis_client, "mail")
    wait_back(redis_client, {"http": ids}, killed_at)

    assert second.stop() == 0, second.log()
    assert_only_ready(redis_client, "http", ids)
    assert_forgotten(redis_client, http_id, ["mail", "http"])


def test_two_of_four_workers_on_three_queues_die_and_every_job_of_theirs_comes_back(
        redis_url, redis_client, ledger, workers):
    # w1 [a] reaps; w2 [a, b] and w3 [b, c] die; w4 [c] lives. Nobody is left serving b.
    w1, w1_id, blocker_a = busy(workers, redis_url, redis_client, "a")
    reaper_lock_held_by(redis_client, w1_id)
    w4, _, blocker_c = busy(workers, redis_url, redis_client, "c")
    w2, w2_id = serving(workers, redis_url, redis_client, "a", "b")
    w3, w3_id = serving(workers, redis_url, redis_client, "b", "c")
    jobs = {q: hold(redis_url, q, 60) for q in ("a", "b", "c")}
    for queue, holders in (("a", [w2_id]), ("b", [w2_id, w3_id]), ("c", [w3_id])):
        wait_held(redis_client, queue, holders, jobs[queue])

    w2.kill()
    w3.kill()
    wait_back(redis_client, jobs, time.monotonic())
    for worker_id in (w2_id, w3_id):
        assert_forgotten(redis_client, worker_id, jobs)

    ledger.set("release")
    assert_all_done(redis_client, ledger, ["a", "c"], blocker_a + blocker_c + jobs["a"] + jobs["c"])
    assert w1.stop() == 0 and w4.stop() == 0
    assert_only_ready(redis_client, "b", jobs["b"])


def test_a_queue_nobody_serves_gets_its_orphans_back_when_any_worker_starts(
        redis_url, redis_client, ledger, workers):
    http, http_id = serving(workers, redis_url, redis_client, "http")
    ids = hold(redis_url, "http", 100)
    wait_held(redis_client, "http", [http_id], ids)
    http.kill()
    wait_until(lambda: not redis_client.exists(f"geoq:heartbeat:{http_id}"), timeout=10,
               message="the killed worker's heartbeat expired")

    started_at = time.monotonic()
    mail, _ = serving(workers, redis_url, redis_client, "mail")
    wait_back(redis_client, {"http": ids}, started_at)

    assert mail.stop() == 0, mail.log()
    assert_only_ready(redis_client, "http", ids)
    assert_forgotten(redis_client, http_id, ["mail", "http"])
