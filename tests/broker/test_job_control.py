"""The job-control moves against a real Redis, one script at a time: every way a cancelled run can
end leaves it in exactly one state, fetches skip cancelled and paused work, unique locks hold."""

from __future__ import annotations

import time

import pytest
import redis

import geoq
from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Ack, Broker, Cancelled, Handback, Retention, RetryLater, Settlement
from geoq.broker.connection import connect
from geoq.broker.liveness import Registry
from geoq.config import default_config

K = keys.queue_keys("default")
KEEP = Retention(keep=60, dead_max_jobs=1000, dead_max_age=86400)


@pytest.fixture
def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis, max_connections=4))


@pytest.fixture
def client(redis_url: str):
    with geoq.Client(redis_url) as c:
        yield c


def running(broker: Broker, client: geoq.Client, n: int = 1, **options) -> list[tuple[str, bytes]]:
    """n jobs enqueued and fetched by worker w1: (id, envelope) of each, marked running."""
    jobs = client.enqueue_many([("t.ok", {"i": i}, options) for i in range(n)])
    envelopes = broker.fetch(broker.client, "default", "w1", n, None)
    assert len(envelopes) == n
    return [(j.id, e) for j, e in zip(jobs, envelopes)]


def state(redis_client: redis.Redis, job_id: str) -> bytes | None:
    return redis_client.hget(K.state, job_id)


def test_a_cancelled_run_that_fails_first_is_not_retried_and_ends_cancelled(broker, client, redis_client):
    [(job_id, env)] = running(broker, client)
    assert client.cancel(job_id) is True
    assert state(redis_client, job_id).startswith(b"x|1|")
    assert broker.cancel_requests(["default"]) == {job_id}
    retry = RetryLater(env, env, 0.0, job_id, 1, "boom")
    assert broker.settle("w1", [Settlement("default", retries=[retry])], KEEP).fenced == 0
    assert redis_client.zcard(K.scheduled) == 0 and redis_client.llen(K.processing("w1")) == 0
    assert client.status(job_id).state == "cancelled"
    assert client.cancel(job_id) is False


def test_a_cancelled_run_settled_by_its_worker_leaves_nothing_behind(broker, client, redis_client):
    [(job_id, env)] = running(broker, client)
    assert client.cancel(job_id)
    done = records.encode_done("cancelled", 1, None, None, None, "t.ok")
    broker.settle("w1", [Settlement("default", cancels=[Cancelled(env, job_id, done)])], KEEP)
    assert client.status(job_id).state == "cancelled"
    assert redis_client.zcard(K.cancelling) == 0 and redis_client.hlen(K.state) == 0
    assert redis_client.llen(K.processing("w1")) == 0


def test_a_run_that_succeeds_before_its_cancel_lands_ends_succeeded_only(broker, client, redis_client):
    [(job_id, env)] = running(broker, client)
    assert client.cancel(job_id)
    done = records.encode_done("succeeded", 1, None, 5, None, "t.ok")
    broker.settle("w1", [Settlement("default", acks=[Ack(env, job_id, done)])], KEEP)
    st = client.status(job_id)
    assert (st.state, st.result) == ("succeeded", 5)
    assert redis_client.hlen(K.state) == 0


def test_a_late_start_mark_does_not_undo_a_cancel(broker, client, redis_client):
    [(job_id, _)] = running(broker, client)
    assert client.cancel(job_id)
    broker.settle("w1", [Settlement("default", marks=[(job_id, "r|1||")])], KEEP)
    assert state(redis_client, job_id).startswith(b"x|")


def test_a_cancelled_run_handed_back_at_a_stop_or_reaped_goes_nowhere(broker, client, redis_client):
    (a, env_a), (b, _) = running(broker, client, 2)
    assert client.cancel(a) and client.cancel(b)
    assert broker.handback("default", "w1", [Handback(env_a, a, "q|1||")]) == 1
    Registry(broker.client, broker.scripts).reap("default", "w1", 3, KEEP)
    assert redis_client.llen(K.ready) == 0 and redis_client.llen(K.processing("w1")) == 0
    assert redis_client.hlen(K.state) == 0
    assert client.status(a).state == client.status(b).state == "cancelled"


def test_queued_jobs_cancelled_where_they_lie_are_dropped_by_the_fetch_blocking_or_not(broker, client,
                                                                                      redis_client, redis_url):
    jobs = client.enqueue_many([("t.ok", {"i": i}) for i in range(6)])
    for j in jobs[:3] + jobs[4:5]:
        assert client.cancel(j.id)
        assert client.status(j.id).state == "cancelled"
    blocking = connect(default_config(redis_url).redis, read_timeout=5, max_connections=2)
    first = broker.fetch(blocking, "default", "w1", 1, 1.0)    # BLMOVE's job is cancelled: dropped
    assert first == []
    rest = broker.fetch(broker.client, "default", "w1", 10, None)
    assert [records.peek_id(e) for e in rest] == [jobs[3].id, jobs[5].id]
    assert redis_client.llen(K.processing("w1")) == 2 and redis_client.hlen(K.state) == 2
    assert client.status(jobs[0].id).state == "cancelled"


def test_a_scheduled_job_leaves_its_set_at_once_when_cancelled(client, redis_client):
    job = client.enqueue("t.ok", {}, delay=600)
    assert client.cancel(job.id)
    assert redis_client.zcard(K.scheduled) == 0 and redis_client.hlen(K.state) == 0
    st = client.status(job.id)
    assert (st.state, st.attempts) == ("cancelled", 0)


def test_a_paused_queue_gives_a_blocked_fetch_nothing_and_keeps_the_job_first_in_line(broker, client,
                                                                                    redis_client, redis_url):
    jobs = client.enqueue_many([("t.ok", {"i": i}) for i in range(3)])
    assert client.pause("default") is True and client.pause("default") is False
    assert client.paused("default")
    blocking = connect(default_config(redis_url).redis, read_timeout=5, max_connections=2)
    got = broker.fetch(blocking, "default", "w1", 5, 1.0)
    assert (list(got), got.paused) == ([], True)
    assert [records.peek_id(e) for e in redis_client.lrange(K.ready, 0, -1)] == [j.id for j in jobs]
    assert redis_client.llen(K.processing("w1")) == 0
    assert client.resume("default") is True and client.resume("default") is False
    assert len(broker.fetch(broker.client, "default", "w1", 5, None)) == 3


def test_a_unique_key_is_held_while_its_job_lives_then_for_its_window(broker, client, redis_client):
    first = client.enqueue("t.ok", {"user": 1}, unique_for=1)
    again = client.enqueue("t.ok", {"user": 1}, unique_for=1)
    assert again == first and redis_client.llen(K.ready) == 1
    assert client.enqueue("t.ok", {"user": 2}, unique_for=1).id != first.id
    [env] = broker.fetch(broker.client, "default", "w1", 1, None)
    assert client.enqueue("t.ok", {"user": 1}, unique_for=1).id == first.id   # running: held
    ack = Ack(env, first.id, records.encode_done("succeeded", 1, None, None, None, "t.ok"), (first.unique_key, 1.0))
    broker.settle("w1", [Settlement("default", acks=[ack])], KEEP)
    assert 0 < redis_client.pttl(K.unique(first.unique_key)) <= 1000
    held = client.enqueue("t.ok", {"user": 1}, unique_for=1)
    assert held.id == first.id and redis_client.llen(K.ready) == 1   # only user 2's
    time.sleep(1.1)
    assert client.enqueue("t.ok", {"user": 1}, unique_for=1).id != first.id


def test_a_unique_key_whose_job_was_cancelled_while_waiting_is_free_at_once(client, redis_client):
    first = client.enqueue("t.ok", {"user": 1}, unique_for=600)
    assert client.cancel(first.id)
    second = client.enqueue("t.ok", {"user": 1}, unique_for=600)
    assert second.id != first.id
    assert redis_client.get(K.unique(first.unique_key)).decode() == second.id


def test_a_route_unique_block_keys_jobs_by_its_template(tmp_config, redis_url, redis_client):
    path = tmp_config(f"""
        redis: {{url: "{redis_url}"}}
        routes:
          sync.user:
            handler: tests.support.handlers:ok
            unique: {{key: "{{payload.user.id}}", for: 10m}}
    """)
    with geoq.Client.from_config(str(path)) as c:
        a = c.enqueue("sync.user", {"user": {"id": 7}, "note": "a"})
        b = c.enqueue("sync.user", {"user": {"id": 7}, "note": "b"})
        other = c.enqueue("sync.user", {"user": {"id": 8}})
        assert b.id == a.id and other.id != a.id and a.unique_for == 600
        with pytest.raises(geoq.InvalidJob, match="payload has no 'user'"):
            c.enqueue("sync.user", {"id": 7})
    assert redis_client.llen(K.ready) == 2


def test_waiting_for_the_result_of_a_cancelled_job_raises_job_dead_cancelled(client):
    job = client.enqueue("t.ok", {})
    assert client.cancel(job.id)
    with pytest.raises(geoq.JobDead, match="cancelled"):
        client.result(job.id, timeout=5)


def test_a_job_waiting_for_its_retry_when_cancelled_leaves_the_scheduled_set_and_ends_cancelled(broker, client,
                                                                                                redis_client):
    [(job_id, env)] = running(broker, client)
    job = records.decode(env, "default")
    again = records.encode(job, records.NO_LIMIT)
    retry = RetryLater(env, again, 600.0, job_id, 1, records.state_detail("RuntimeError: boom"))
    broker.settle("w1", [Settlement("default", retries=[retry])], KEEP)
    assert client.status(job_id).state == "scheduled"
    assert client.cancel(job_id)
    assert redis_client.zcard(K.scheduled) == 0 and redis_client.hlen(K.state) == 0
    st = client.status(job_id)
    assert (st.state, st.attempts, st.last_error) == ("cancelled", 1, "RuntimeError: boom")
