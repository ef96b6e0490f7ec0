"""Client.enqueue puts each job where it was asked, and returns the Job exactly as stored."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import geoq
from geoq import job as jobs
from geoq import records
from geoq.broker import keys

K = keys.queue_keys("default")


def stored(redis_client, job: geoq.Job) -> geoq.Job:
    """The Job decoded from wherever its envelope sits."""
    raw = [e for e in redis_client.lrange(K.ready, 0, -1) + redis_client.zrange(K.scheduled, 0, -1)
           if records.peek_id(e) == job.id]
    assert len(raw) == 1
    return records.decode(raw[0], "default")


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
