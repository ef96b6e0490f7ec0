"""run_now.lua: a scheduled job moves to the head of its ready list once, keeping its runs and last error."""

from __future__ import annotations

import redis

from geoq import records
from geoq.broker import keys
from geoq.broker.admin import AdminBroker
from geoq.broker.connection import connect
from geoq.config import default_config

K = keys.queue_keys("mail")


def _admin(redis_url: str) -> AdminBroker:
    return AdminBroker(connect(default_config(redis_url).redis, max_connections=4))


def test_a_scheduled_job_runs_next_with_its_runs_and_last_error_kept(redis_url: str,
                                                                     redis_client: redis.Redis) -> None:
    waiting, later = b'{"i":"mail:a","a":0,"t":"t","p":1}', b'{"i":"mail:b","a":2,"t":"t","p":2}'
    redis_client.rpush(K.ready, waiting)
    redis_client.zadd(K.scheduled, {later: 5000.0})
    redis_client.hset(K.state, "mail:b", records.encode_state("scheduled", 2, 5000.0, "RuntimeError: boom", "Tb"))
    admin = _admin(redis_url)
    assert admin.scheduled_page("mail", 0, 10) == [(later, 5000.0)]
    assert admin.scheduled_at("mail", 5000.0) == [later] and admin.scheduled_at("mail", 5000.5) == []
    assert admin.run_now("mail", later)
    assert redis_client.lrange(K.ready, 0, -1) == [later, waiting]
    assert redis_client.zcard(K.scheduled) == 0
    status = records.decode_state("mail:b", redis_client.hget(K.state, "mail:b"), now=0.0)
    assert (status.state, status.attempts, status.due_at, status.last_error, status.traceback) == \
        ("queued", 2, None, "RuntimeError: boom", "Tb")
    assert not admin.run_now("mail", later)   # no longer scheduled: nothing doubled
    assert redis_client.llen(K.ready) == 2


def test_a_job_promoted_meanwhile_is_left_where_it_is(redis_url: str, redis_client: redis.Redis) -> None:
    envelope = b'{"i":"mail:c","a":0,"t":"t","p":3}'
    redis_client.rpush(K.ready, envelope)
    redis_client.hset(K.state, "mail:c", records.encode_state("queued", 0))
    assert not _admin(redis_url).run_now("mail", envelope)
    assert redis_client.lrange(K.ready, 0, -1) == [envelope]
    assert redis_client.hget(K.state, "mail:c") == records.encode_state("queued", 0).encode()
