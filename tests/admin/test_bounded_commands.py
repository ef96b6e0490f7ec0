"""No command geoq sends holds Redis for long, whatever the backlog (issue 11, item 8).

Each test moves 20,000 jobs the way geoq does (the worker's promote and trim, the
CLI's purge, dead retry --all and dead purge), with Redis's SLOWLOG recording every
command over 10 ms, and asserts that none ran over a generous 50 ms and that every
job is where it should be, exactly once.

At 20,000 one unbounded ZREMRANGEBYRANK takes about 10 ms, too little for the 50 ms
bound to tell a bounded trim from an unbounded one; the trims and dead purges are
also run against 500,000 records, where the single command of old took 80-90 ms here.
The SLOWLOG is reset after each test's setup, so only the moves themselves are judged.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import pytest
import redis

import geoq
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.broker.liveness import Registry
from geoq.worker.scheduler import Scheduler
from tests.support.keyspace import places

N = 20_000
HUGE = 500_000
BOUND_US = 50_000           # the bound on any one command: 50 ms
K = keys.queue_keys("default")

Slowlog = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def slowlog(redis_client: redis.Redis) -> Iterator[Slowlog]:
    """Record every command over 10 ms; the call returns the records. Tests reset it after their setup."""
    saved = redis_client.config_get("slowlog-*")
    redis_client.config_set("slowlog-log-slower-than", 10_000)
    redis_client.config_set("slowlog-max-len", 1000)
    redis_client.slowlog_reset()
    yield lambda: redis_client.slowlog_get(1000)
    redis_client.slowlog_reset()
    for name, value in saved.items():
        redis_client.config_set(name, value)


def assert_no_long_command(slowlog: Slowlog) -> None:
    long = [(e["duration"], e["command"][:60]) for e in slowlog() if e["duration"] > BOUND_US]
    assert not long, f"commands over {BOUND_US} us: {long}"


def dead_ids(client: redis.Redis) -> list[str]:
    return [json.loads(m)["id"] for m in client.zrange(K.dead, 0, -1)]


def seed_dead(client: redis.Redis, n: int, died_at: float) -> None:
    """n small dead records, oldest first, one a millisecond: what a trim or a purge measures."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, n, 1000):
        pipe.zadd(K.dead, {json.dumps({"id": f"d{i}", "reason": "fail"}): died_at + i / 1000
                           for i in range(start, min(n, start + 1000))})
    pipe.execute()


def test_promoting_20000_due_jobs_goes_in_short_steps_each_job_once(redis_url, redis_client, now, slowlog):
    client = geoq.Client(redis_url)
    stored = client.enqueue_many([("t.a", {"n": i}, {"at": now() - 1}) for i in range(N)])
    assert redis_client.zcard(K.scheduled) == N
    redis_client.slowlog_reset()

    moved = Scheduler(Broker(redis_client), ["default"]).promote_all("default")

    assert_no_long_command(slowlog)
    ready = [json.loads(e)["i"] for e in redis_client.lrange(K.ready, 0, -1)]
    assert moved == N and sorted(ready) == sorted(j.id for j in stored)
    assert redis_client.zcard(K.scheduled) == 0 and redis_client.hlen(K.state) == N


def test_purging_a_queue_of_20000_goes_in_short_steps(cli, redis_url, redis_client, now, slowlog):
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.a", {"n": i}) for i in range(N)])
    client.enqueue_many([("t.a", {"n": i}, {"delay": 3600}) for i in range(N)])
    redis_client.slowlog_reset()

    done = cli("purge", "default", "--yes")

    assert_no_long_command(slowlog)
    assert done.returncode == 0 and done.stdout.strip() == (
        f"purged {2 * N} waiting jobs of default ({N} ready, {N} scheduled)")
    p = places(redis_client, ["default"])
    assert (p.total("ready"), p.total("scheduled"), p.total("live_states"), p.total("dead")) == (0, 0, 0, 0)


def test_retrying_20000_dead_jobs_goes_in_short_steps_each_job_once(cli_json, redis_client, bury_many, now, slowlog):
    buried = bury_many(N, died_at=now() - 100)
    redis_client.slowlog_reset()

    out = cli_json("dead", "retry", "--all")

    assert_no_long_command(slowlog)
    assert out["retried"] == N and sorted(out["ids"]) == sorted(j.id for j in buried)
    assert out["skipped"] == [] and out["gone"] == 0
    ready = [json.loads(e)["i"] for e in redis_client.lrange(K.ready, 0, -1)]
    assert sorted(ready) == sorted(j.id for j in buried)
    assert redis_client.zcard(K.dead) == 0 and redis_client.hlen(K.state) == N


@pytest.mark.parametrize("n", [N, HUGE])
def test_a_burial_trims_a_dead_set_far_past_its_bound_in_short_steps(redis_client, now, slowlog, n):
    seed_dead(redis_client, n, now() - 1000)    # then dead.max_jobs is lowered to 100
    broker = Broker(redis_client)
    redis_client.rpush(K.processing("w1"), b"not a job")
    redis_client.slowlog_reset()

    result = broker.settle("w1", [Settlement("default", burials=[
        Bury(b"not a job", b'{"id":"last","reason":"not_a_job"}', True, "", b"")])], Retention(0, 100, 30 * 86400))

    assert_no_long_command(slowlog)
    assert result.fenced == 0 and not result.refused
    assert dead_ids(redis_client) == [f"d{i}" for i in range(n - 99, n)] + ["last"]
    assert int(redis_client.get(K.dead_trimmed)) == n + 1 - 100
    assert redis_client.llen(K.processing("w1")) == 0


@pytest.mark.parametrize("n", [N, HUGE])
def test_a_reap_trims_a_dead_set_past_its_age_in_short_steps(redis_client, now, slowlog, n):
    seed_dead(redis_client, n, now() - 2 * 86400)   # all older than dead.max_age (1 day here)
    redis_client.zadd(K.dead, {json.dumps({"id": "young", "reason": "fail"}): now() - 60})
    redis_client.rpush(K.processing("w1"), b'{"i":"x","a":1,"d":2,"t":"t.a","p":{}}')
    redis_client.sadd(K.workers, "w1")
    redis_client.slowlog_reset()

    reaped = Registry(redis_client, Broker(redis_client).scripts).reap(
        "default", "w1", 3, Retention(0, 100_000, 86400))

    assert_no_long_command(slowlog)
    assert (reaped.returned, reaped.buried, reaped.left) == (0, ("t.a",), 0)
    assert sorted(dead_ids(redis_client)) == ["x", "young"]
    assert int(redis_client.get(K.dead_trimmed)) == n


@pytest.mark.parametrize("n", [N, HUGE])
def test_dead_purge_all_and_older_than_go_in_short_steps(cli_json, redis_client, now, slowlog, n):
    seed_dead(redis_client, n, now() - 8 * 86400)
    redis_client.zadd(K.dead, {json.dumps({"id": "young", "reason": "fail"}): now() - 60})
    redis_client.slowlog_reset()

    older = cli_json("dead", "purge", "--older-than", "7d")
    assert_no_long_command(slowlog)
    assert older == {"purged": n, "queues": {"default": n}, "missing": []}
    assert dead_ids(redis_client) == ["young"]

    seed_dead(redis_client, n, now() - 100)
    redis_client.slowlog_reset()
    everything = cli_json("dead", "purge", "--all")
    assert_no_long_command(slowlog)
    assert everything == {"purged": n + 1, "queues": {"default": n + 1}, "missing": []}
    assert redis_client.zcard(K.dead) == 0 and redis_client.get(K.dead_trimmed) is None
