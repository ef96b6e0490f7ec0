"""Four workers, one every: 1s schedule: one job per tick, none missed, and a SIGKILL changes nothing."""

from __future__ import annotations

import collections

from geoq import records
from geoq.broker import keys
from tests.admin.helpers import redis_now
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, run_worker_once, write_config

ROUTES = {"t.ok": {"handler": "tests.support.handlers:ok"}}


def tick_of(job_id: str) -> int:
    """default:sched:beat:1800000000 -> 1800000000"""
    return int(job_id.rsplit(":", 1)[1])


def test_four_workers_give_one_job_per_tick_for_twenty_seconds_through_a_sigkill(
        redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 20},
                          schedules={"beat": {"every": "1s", "type": "t.ok"}})
    workers = [WorkerProcess(config, env=ledger.env, log=tmp_path / f"w{i}.log") for i in range(4)]
    try:
        wait_until(lambda: redis_client.hlen(keys.WORKERS) == 4, timeout=60, message="4 workers registered")
        start = int(redis_now(redis_client)) + 1    # the first tick every worker was up for
        end = start + 20

        def ran_tick(at: int) -> bool:
            return any(tick_of(i) >= at for i in ledger.succeeded())

        wait_until(lambda: ran_tick(start + 10), timeout=60, message="ten ticks ran")
        workers[1].kill()                            # between ticks: it holds no job
        wait_until(lambda: ran_tick(end), timeout=60, message="twenty ticks ran")
        for i in (0, 2, 3):
            assert workers[i].stop() == 0, workers[i].log()
    finally:
        for w in workers:
            w.kill()
    ran = collections.Counter(tick_of(i) for i in ledger.succeeded())
    window = {t: n for t, n in ran.items() if start <= t < end}
    assert sorted(window) == list(range(start, end))     # 20 ticks, none missed
    assert set(window.values()) == {1}                   # one job (and run) per tick
    assert set(ran.values()) == {1}
    # A tick claimed while the last workers stopped waits in the queue for the next worker.
    waiting = [records.peek_id(e) or "" for e in redis_client.lrange(keys.queue_keys("default").ready, 0, -1)]
    assert all(tick_of(i) >= end and i not in ledger.succeeded() for i in waiting), waiting
    redis_client.delete(keys.queue_keys("default").ready, keys.queue_keys("default").state)
    assert_settled(redis_client, ["default"])


def test_a_worker_refuses_a_schedule_of_no_route_in_one_line_and_exits_2(redis_url, redis_client, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES,
                          schedules={"beat": {"every": "1s", "type": "t.nope"}})
    done = run_worker_once(config)
    assert done.returncode == 2, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert lines[0] == (f"geoq-worker: {config}: schedules.beat.type (line 13): expected the type of a route "
                        f"under routes, got 't.nope', which no route names")
    assert redis_client.dbsize() == 0
