"""Registry.reap against a real Redis: a dead worker's list goes back in bounded steps, each atomic."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
import redis

import geoq
from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Broker, Retention
from geoq.broker.connection import connect
from geoq.broker.liveness import Registry
from geoq.config import default_config
from geoq.worker.reaper import Reaper
from tests.support.redis_server import RedisServer

K = keys.queue_keys("default")
RETENTION = Retention(keep=60, dead_max_jobs=1000, dead_max_age=86400)
LONGEST_COMMAND = 0.050  # seconds: what issue 11 allows any one command of geoq's


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own: its SLOWLOG and config are the test's to change."""
    with RedisServer() as s:
        yield s


def orphan(broker: Broker, redis_url: str, worker_id: str, n: int) -> list[str]:
    """Enqueue n jobs and move them all into a worker's processing list that nobody will settle."""
    with geoq.Client(redis_url) as producer:
        ids = [j.id for j in producer.enqueue_many([("t.ok", {"i": i}) for i in range(n)])]
    Registry(broker.client, broker.scripts).register(worker_id, "{}", ["default"], ttl=60)
    while len(broker.fetch(broker.client, "default", worker_id, 1000, None)) == 1000:
        pass
    return ids


def slowlog_during(client: redis.Redis) -> None:
    """Log every command from now on (slowlog-log-slower-than 0), in a log long enough for all."""
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()


def test_20000_orphans_go_back_with_no_redis_command_over_50ms_and_each_job_once(server: RedisServer) -> None:
    client = server.client()
    broker = Broker(connect(default_config(server.url).redis, max_connections=4))
    ids = orphan(broker, server.url, "w-dead", 20_000)
    assert client.llen(K.processing("w-dead")) == 20_000

    slowlog_during(client)
    reaped = Registry(broker.client, broker.scripts).reap("default", "w-dead", 3, RETENTION)
    log = client.slowlog_get(100_000)
    client.config_set("slowlog-log-slower-than", 10_000)

    longest = max(log, key=lambda entry: entry["duration"])
    print(f"\nlongest Redis command of the reap: {longest['duration'] / 1000:.1f} ms "
          f"({longest['command'][:40]!r}); {len(log)} commands")
    assert longest["duration"] < LONGEST_COMMAND * 1_000_000, longest
    assert (reaped.returned, reaped.buried, reaped.left) == (20_000, (), 0)
    ready = [json.loads(e) for e in client.lrange(K.ready, 0, -1)]
    assert sorted(e["i"] for e in ready) == sorted(ids)  # each job once, none lost
    assert {(e["a"], e["d"]) for e in ready} == {(1, 1)}  # a run and a delivery counted on each
    assert client.exists(K.processing("w-dead")) == 0
    assert client.sismember(K.workers, "w-dead") == 0
    assert client.zcard(K.dead) == 0 and client.hlen(K.state) == 20_000


def test_steps_bury_return_and_keep_order_across_their_boundaries(server: RedisServer) -> None:
    client = server.client()
    broker = Broker(connect(default_config(server.url).redis, max_connections=4))
    registry = Registry(broker.client, broker.scripts)
    ids = orphan(broker, server.url, "w1", 1200)
    assert registry.reap("default", "w1", 2, RETENTION).returned == 1200  # a first death each: d = 1
    registry.register("w2", "{}", ["default"], ttl=60)
    broker.fetch(broker.client, "default", "w2", 700, None)   # these die a second time: buried
    client.rpush(K.processing("w2"), b"not a job")             # bytes no script can read: back untouched
    assert client.llen(K.ready) == 500

    reaped = registry.reap("default", "w2", 2, RETENTION)

    assert (reaped.returned, reaped.buried, reaped.left) == (1, ("t.ok",) * 700, 0)
    assert client.lindex(K.ready, 0) == b"not a job" and client.llen(K.ready) == 501
    assert [json.loads(e)["i"] for e in client.lrange(K.ready, 1, -1)] == ids[700:]  # in their order
    dead = [json.loads(r) for r in client.zrange(K.dead, 0, -1)]
    assert sorted(r["id"] for r in dead) == sorted(ids[:700])
    assert {(r["reason"], r["attempts"]) for r in dead} == {("max_deliveries", 2)}
    assert all(json.loads(client.get(K.done(i)))["s"] == "dead" for i in ids[:700])
    assert client.hlen(K.state) == 500 and client.exists(K.processing("w2")) == 0
    assert client.smembers(K.workers) == set()


def test_a_worker_registered_before_the_known_queues_set_is_reaped_in_the_queues_its_description_names(
        redis_url: str, redis_client: redis.Redis) -> None:
    broker = Broker(connect(default_config(redis_url).redis, max_connections=4))
    registry = Registry(broker.client, broker.scripts)
    http = keys.queue_keys("http")
    with geoq.Client(redis_url) as producer:
        ids = [j.id for j in producer.enqueue_many([("t.ok", {}, {"queue": "http"})] * 30)]
    registry.register("w-old", json.dumps({"queues": ["http"]}), ["http"], ttl=60)
    broker.fetch(broker.client, "http", "w-old", 30, None)
    redis_client.delete(keys.QUEUES, keys.heartbeat("w-old"))  # as an older geoq registered it; then it died
    reaper = Reaper(registry, "w-live", ["mail"], interval=1.0, grace=0.0, max_deliveries=3, retention=RETENTION)

    assert reaper.pass_once() == 30

    assert sorted(json.loads(e)["i"] for e in redis_client.lrange(http.ready, 0, -1)) == sorted(ids)
    assert redis_client.exists(http.processing("w-old")) == 0 and redis_client.smembers(http.workers) == set()
    assert redis_client.hget(keys.WORKERS, "w-old") is None


def test_a_reaped_job_keeps_its_meta_whether_returned_or_buried(redis_url: str, redis_client: redis.Redis) -> None:
    broker = Broker(connect(default_config(redis_url).redis, max_connections=4))
    registry = Registry(broker.client, broker.scripts)
    with geoq.Client(redis_url) as producer:
        job = producer.enqueue("t.ok", {}, meta={"tenant": "acme"})
    for worker_id, max_deliveries in (("w1", 2), ("w2", 2)):  # returned after the first death, buried after the second
        registry.register(worker_id, "{}", ["default"], ttl=60)
        assert len(broker.fetch(broker.client, "default", worker_id, 10, None)) == 1
        registry.reap("default", worker_id, max_deliveries, RETENTION)
        if worker_id == "w1":
            assert records.decode(redis_client.lindex(K.ready, 0), "default").meta == {"tenant": "acme"}

    [member] = redis_client.zrange(K.dead, 0, -1)
    record = records.decode_dead("default", member, 0.0)
    assert record.body["reason"] == "max_deliveries" and record.envelope is not None
    assert records.decode(record.envelope.encode(), "default").meta == {"tenant": "acme"}
    assert redis_client.llen(K.ready) == 0 and redis_client.hlen(K.state) == 0
