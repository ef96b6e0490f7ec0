"""Client.enqueue puts each job where it was asked, and returns the Job exactly as stored."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

import geoq
from geoq import job as jobs
from geoq import records
from geoq.broker import keys
from geoq.config import default_config
from geoq.config.schema import RouteConfig

K = keys.queue_keys("default")


def stored(redis_client, job: geoq.Job, queue: str = "default") -> geoq.Job:
    """The Job decoded from wherever its envelope sits."""
    k = keys.queue_keys(queue)
    raw = [e for e in redis_client.lrange(k.ready, 0, -1) + redis_client.zrange(k.scheduled, 0, -1)
           if records.peek_id(e) == job.id]
    assert len(raw) == 1
    return records.decode(raw[0], queue)


def test_tail_head_delay_and_at_each_land_in_their_place(redis_url, redis_client):
    client = geoq.Client(redis_url)
    first = client.enqueue("t.a", {"n": 1})
    last = client.enqueue("t.a", {"n": 2})
    urgent = client.enqueue("t.a", {"n": 3}, priority="high")
    later = client.enqueue("t.a", {"n": 4}, delay=timedelta(seconds=90))
    at = time.time() + 3600.12345
    planned = client.enqueue("t.a", {"n": 5}, at=at)
    dated = client.enqueue("t.a", {"n": 6}, at=datetime.fromtimestamp(at, timezone.utc))

    assert [records.peek_id(e) for e in redis_client.lrange(K.ready, 0, -1)] == [urgent.id, first.id, last.id]
    assert first.due_at is None and urgent.due_at is None
    assert later.due_at == round(later.enqueued_at + 90, 3)
    assert planned.due_at == dated.due_at == round(at, 3)
    scheduled = dict(redis_client.zrange(K.scheduled, 0, -1, withscores=True))
    assert {records.peek_id(e) for e in scheduled} == {later.id, planned.id, dated.id}
    for job in (first, last, urgent, later, planned, dated):
        assert stored(redis_client, job) == job


def test_enqueue_many_gives_each_job_its_own_id_and_keeps_their_order(redis_url, redis_client):
    client = geoq.Client(redis_url)
    made = client.enqueue_many([("t.a", {"i": i}) for i in range(300)])
    assert len({j.id for j in made}) == 300
    assert all(jobs.queue_of_id(j.id) == "default" for j in made)
    assert [records.peek_id(e) for e in redis_client.lrange(K.ready, 0, -1)] == [j.id for j in made]


def test_enqueue_many_stores_an_item_without_options_as_it_stores_one_with_empty_options(
        tmp_config, redis_url, redis_client):
    """The short way for (type, payload) builds the Job and envelope the long way builds: each
    kind of type (routed to its queue, unrouted, made unique by its route), middleware or none."""
    path = tmp_config(f"""
        redis: {{url: "{redis_url}"}}
        routes:
          mail.send: {{handler: tests.support.handlers:ok, queue: mail}}
          sync.user:
            handler: tests.support.handlers:ok
            unique: {{key: "{{payload.user}}", for: 10m}}
    """)

    class Tag(geoq.Middleware):
        def before_enqueue(self, job: geoq.Job) -> geoq.Job:
            return replace(job, meta={"tag": job.type})

    for middleware in ([], [Tag()]):
        redis_client.flushdb()
        with geoq.Client.from_config(str(path), middleware=middleware) as c:
            items = [("mail.send", {"to": "a@example.com"}), ("t.free", [1, "\u00e9"]), ("sync.user", {"user": 3})]
            made = c.enqueue_many(items + [(t, p, {}) for t, p in items])   # one batch: one enqueue time
            short, long = made[:3], made[3:]
        assert [j.queue for j in short] == ["mail", "default", "default"]
        assert short[2].unique_key is not None and short[2].id == long[2].id   # one unique job, held
        for a, b in zip(short[:2], long[:2]):
            assert replace(a, id=b.id) == b
            assert stored(redis_client, a, a.queue) == a and stored(redis_client, b, b.queue) == b
        assert [j.meta for j in short] == ([{}] * 3 if not middleware else [{"tag": t} for t, _ in items])


def test_a_route_whose_queue_name_is_refused_fails_its_own_items_only(redis_url, redis_client):
    """A config built in code is not checked by the loader: a route naming a queue enqueue refuses
    makes that type's items fail, as enqueue() does, and no other type's."""
    config = default_config(url=redis_url)
    bad = RouteConfig(type="t.bad", handler="geoq.handlers.builtin:noop", queue="bad name")
    config = replace(config, routes={**config.routes, "t.bad": bad})
    with geoq.Client(config=config) as client:
        assert [j.queue for j in client.enqueue_many([("t.free", {}), ("t.free", {})])] == ["default", "default"]
        with pytest.raises(geoq.InvalidJob, match="queue name 'bad name'"):
            client.enqueue_many([("t.free", {}), ("t.bad", {})])
        with pytest.raises(geoq.InvalidJob, match="queue name 'bad name'"):
            client.enqueue("t.bad", {})
    assert redis_client.llen(K.ready) == 2
