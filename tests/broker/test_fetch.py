"""Broker.fetch against a real Redis: a batch is one BLMOVE and one script call, in FIFO order."""

from __future__ import annotations

import pytest
import redis

from geoq.broker import keys
from geoq.broker.broker import Broker
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
