"""Broker.fetch against a real Redis: a batch is one BLMOVE and one script call, in FIFO order."""

from __future__ import annotations

import pytest
import redis

from geoq.broker import keys
from geoq.broker.broker import Ack, Broker, Retention, Settlement
from geoq.broker.connection import connect
from geoq.config import default_config

K = keys.queue_keys("default")


@pytest.fixture
def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis, max_connections=4))


@pytest.fixture
def blocking(redis_url: str) -> redis.Redis:
    return connect(default_config(redis_url).redis, read_timeout=5, max_connections=2)


def ready(redis_client: redis.Redis, *envelopes: bytes) -> None:
    redis_client.rpush(K.ready, *envelopes)


@pytest.mark.parametrize("block", [None, 1.0])
def test_a_batch_takes_the_oldest_jobs_in_order_and_no_more_than_asked(broker, blocking, redis_client, block):
    ready(redis_client, *[b"j%d" % i for i in range(10)])
    client = blocking if block else broker.client
    assert broker.fetch(client, "default", "w1", 4, block) == [b"j0", b"j1", b"j2", b"j3"]
    assert redis_client.lrange(K.processing("w1"), 0, -1) == [b"j0", b"j1", b"j2", b"j3"]
    assert redis_client.lrange(K.ready, 0, -1) == [b"j%d" % i for i in range(4, 10)]


@pytest.mark.parametrize("block", [None, 1.0])
def test_a_batch_larger_than_the_ready_list_takes_what_is_there(broker, blocking, redis_client, block):
    ready(redis_client, b"a", b"b")
    assert broker.fetch(blocking if block else broker.client, "default", "w1", 50, block) == [b"a", b"b"]
    assert redis_client.lrange(K.processing("w1"), 0, -1) == [b"a", b"b"]
    assert redis_client.llen(K.ready) == 0


def test_an_empty_queue_gives_nothing_after_the_block_time(broker, blocking, redis_client):
    assert broker.fetch(blocking, "default", "w1", 10, 0.2) == []
    assert broker.fetch(broker.client, "default", "w1", 10, None) == []
    assert redis_client.exists(K.processing("w1"), K.ready) == 0


@pytest.mark.parametrize("block", [None, 1.0])
def test_a_redis_that_forgot_the_scripts_is_given_them_again_and_the_batch_is_whole(
        broker, blocking, redis_client, block):
    ready(redis_client, *[b"j%d" % i for i in range(5)])
    redis_client.script_flush()
    assert broker.fetch(blocking if block else broker.client, "default", "w1", 3, block) == [b"j0", b"j1", b"j2"]
    assert redis_client.lrange(K.processing("w1"), 0, -1) == [b"j0", b"j1", b"j2"]
    assert redis_client.lrange(K.ready, 0, -1) == [b"j3", b"j4"]


@pytest.mark.parametrize("block, n", [(None, 3), (1.0, 3), (1.0, 1)])
def test_every_job_fetched_is_marked_running_and_no_settled_or_running_one_is_written(
        broker, blocking, redis_client, block, n):
    redis_client.rpush(K.processing("w1"), b'{"i":"old","a":0,"t":"t","p":null}')   # an earlier fetch's job
    envelopes = [b'{"i":"fresh","a":0,"t":"t","p":null}', b'{"i":"again","a":2,"t":"t","p":null}',
                 b'{"i":"gone","a":0,"t":"t","p":null}']
    ready(redis_client, *envelopes[:n])
    redis_client.hset(K.state, mapping={"old": "r|1||x", "fresh": "q|0||", "again": "s|2|1.000|E: boom\nTrace"})
    client = blocking if block else broker.client
    assert broker.fetch(client, "default", "w1", n, block) == envelopes[:n]
    states = {k.decode(): v.decode() for k, v in redis_client.hgetall(K.state).items()}
    marked = {"old": "r|1||x", "fresh": "r|1||", "again": "r|3||"}   # "gone" has no state: none is written
    waiting = {"again": "s|2|1.000|E: boom\nTrace"} if n < 2 else {}
    assert states == {**marked, **waiting}


def envelope(job_id: str, runs: int = 0) -> bytes:
    return b'{"i":"%s","a":%d,"t":"t","p":null}' % (job_id.encode(), runs)


def test_a_batch_of_thousands_is_taken_in_order_in_one_call_and_each_job_marked(broker, redis_client):
    # fetch.lua reads and moves the ready list 1,000 jobs at a time: marking 4,500 at once would
    # pass Lua's unpack() 9,000 values, past its limit of 8,000. Still one call, in order.
    jobs = [envelope(f"j{i}", i % 3) for i in range(4_500)]
    ready(redis_client, *jobs, envelope("left"))
    redis_client.hset(K.state, mapping={f"j{i}": "q|0||" for i in range(4_500)} | {"left": "q|0||"})
    assert broker.fetch(broker.client, "default", "w1", 4_500, None) == jobs
    assert redis_client.lrange(K.processing("w1"), 0, -1) == jobs
    assert redis_client.lrange(K.ready, 0, -1) == [envelope("left")]
    states = {k.decode(): v.decode() for k, v in redis_client.hgetall(K.state).items()}
    assert states == {f"j{i}": f"r|{i % 3 + 1}||" for i in range(4_500)} | {"left": "q|0||"}


def test_a_job_met_twice_in_one_chunk_is_marked_once_by_its_first_sight(broker, redis_client):
    first, stale = envelope("twice", 0), envelope("twice", 4)
    ready(redis_client, first, envelope("other"), stale)
    redis_client.hset(K.state, mapping={"twice": "q|0||", "other": "q|0||"})
    assert broker.fetch(broker.client, "default", "w1", 3, None) == [first, envelope("other"), stale]
    assert redis_client.hget(K.state, "twice") == b"r|1||"   # the stale copy met a running job: left as it is
    assert redis_client.lrange(K.processing("w1"), 0, -1) == [first, envelope("other"), stale]


def test_cancelled_jobs_among_queued_ones_are_dropped_and_a_long_run_of_them_over_several_calls(
        broker, redis_client):
    # At most 1,000 drops a call: 1,500 cancelled jobs, then two queued ones, then the rest.
    cancelled = [envelope(f"c{i}") for i in range(1_500)]
    ready(redis_client, envelope("a"), *cancelled, envelope("b"), envelope("c"))
    redis_client.hset(K.state, mapping={f"c{i}": "c|0||" for i in range(1_500)}
                      | {"a": "q|0||", "b": "q|0||", "c": "q|0||"})
    # A batch of 1,200 pops 1,000 then 1,000 more, meets the 1,000th drop first in the second
    # chunk, and puts the 999 after it back at the head, in order.
    assert broker.fetch(broker.client, "default", "w1", 1_200, None) == [envelope("a")]
    assert redis_client.lrange(K.ready, 0, -1) == [*cancelled[1_000:], envelope("b"), envelope("c")]
    assert broker.fetch(broker.client, "default", "w1", 2, None) == [envelope("b"), envelope("c")]
    assert redis_client.llen(K.ready) == 0
    assert redis_client.lrange(K.processing("w1"), 0, -1) == [envelope("a"), envelope("b"), envelope("c")]
    states = {k.decode(): v.decode() for k, v in redis_client.hgetall(K.state).items()}
    assert states == {"a": "r|1||", "b": "r|1||", "c": "r|1||"}   # every cancelled id forgotten


def test_a_settle_of_thousands_of_acks_forgets_every_id_and_keeps_every_record(broker, redis_client):
    # ack.lua forgets the settled ids 1,000 to an HDEL: 8,500 in one would pass unpack() too many.
    jobs = [envelope(f"j{i}") for i in range(8_500)]
    ready(redis_client, *jobs)
    redis_client.hset(K.state, mapping={f"j{i}": "q|0||" for i in range(8_500)})
    assert len(broker.fetch(broker.client, "default", "w1", 8_500, None)) == 8_500
    acks = [Ack(env, f"j{i}", b'{"s":"succeeded"}') for i, env in enumerate(jobs)]
    result = broker.settle("w1", [Settlement("default", acks=acks)], Retention(60, 1000, 86400))
    assert result.fenced == 0 and not result.refused
    assert redis_client.exists(K.state, K.processing("w1")) == 0
    assert redis_client.get(K.done("j8499")) == b'{"s":"succeeded"}'
    assert sum(1 for _ in redis_client.scan_iter(K.done("*"), count=1000)) == 8_500
