"""The dead-set index against a real Redis: every script that buries or removes dead records keeps
it in step (tests.support.dead_index checks the whole of it), and its pages read what they name."""

from __future__ import annotations

import json
import time

import pytest
import redis

import geoq
from geoq import fingerprint, records
from geoq.broker import keys
from geoq.broker.admin import AdminBroker, Revival
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.broker.connection import connect
from geoq.broker.groups import GroupBroker, Reindexed
from geoq.broker.liveness import Registry
from geoq.config import default_config
from geoq.job import Job
from tests.support.dead_index import assert_index_consistent, strip_index
from tests.support.redis_server import RedisServer

K = keys.queue_keys("default")
KEEP_ALL = Retention(keep=60, dead_max_jobs=10**9, dead_max_age=10.0**12)
ERRORS = ("ConnectionError: connect to 10.0.0.{n}:25 refused", "KeyError: 'user{n}'",
          "ValueError: order {n} has no lines")


@pytest.fixture
def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis, max_connections=4))


@pytest.fixture
def groups(broker: Broker) -> GroupBroker:
    return GroupBroker(broker.client, broker.scripts)


def bury(broker: Broker, client: redis.Redis, errors: list[str], job_type: str = "t.job", *,
         ids: list[str] | None = None, retention: Retention = KEEP_ALL) -> list[str]:
    """Bury one job per error the worker's way (a processing list, then dead.lua); their ids."""
    jobs = [Job(id=(ids[i] if ids else f"default:{job_type}-{i}-{time.monotonic_ns()}"), type=job_type,
                queue="default", payload={"i": i}) for i in range(len(errors))]
    envelopes = [records.encode(j, records.NO_LIMIT) for j in jobs]
    client.rpush(K.processing("w1"), *envelopes)
    burials = [Bury(e, records.encode_dead("default", j, j.id, "max_retries", err, time.time()), True, j.id, b"{}")
               for j, e, err in zip(jobs, envelopes, errors)]
    result = broker.settle("w1", [Settlement("default", burials=burials)], retention)
    assert (result.fenced, result.refused) == (0, [])
    return [j.id for j in jobs]


def title_of(error: str, job_type: str = "t.job") -> fingerprint.Title:
    return fingerprint.title("default", job_type, "max_retries", error)


def test_burial_indexes_each_record_in_the_group_its_masked_error_names(broker, groups, redis_client):
    bury(broker, redis_client, [e.format(n=n) for n in range(4) for e in ERRORS])
    bury(broker, redis_client, [ERRORS[0].format(n=9)], job_type="t.other")

    sizes = assert_index_consistent(redis_client)
    expected = {title_of(ERRORS[0].format(n=0)).fingerprint: 4, title_of(ERRORS[1].format(n=0)).fingerprint: 4,
                title_of(ERRORS[2].format(n=0)).fingerprint: 4,
                title_of(ERRORS[0].format(n=0), "t.other").fingerprint: 1}
    assert dict(sizes) == expected
    (first,) = groups.stats("default", [title_of(ERRORS[1].format(n=0)).fingerprint])
    assert first is not None and first.count == 4 and first.first_seen <= first.last_seen
    assert first.title == {"type": "t.job", "error_type": "KeyError", "message": "'<str>'"}
    assert redis_client.zcard(K.dead) == 13 and redis_client.llen(K.processing("w1")) == 0


def test_a_group_pages_newest_first_and_each_entry_reads_back_its_record(broker, groups, redis_client):
    ids = bury(broker, redis_client, [ERRORS[2].format(n=n) for n in range(7)])
    fp = title_of(ERRORS[2].format(n=0)).fingerprint

    first = groups.entries("default", fp, None, 3)
    second = groups.entries("default", fp, first[-1], 3)
    third = groups.entries("default", fp, second[-1], 3)

    found = [json.loads(e.member)["id"] for e in groups.records("default", first + second + third) if e]
    assert found == list(reversed(ids)) and len(third) == 1
    assert_index_consistent(redis_client)


def test_a_job_that_died_twice_is_found_by_id_with_both_records(broker, groups, redis_client):
    bury(broker, redis_client, [ERRORS[0].format(n=1)], ids=["default:twice"])
    bury(broker, redis_client, [ERRORS[1].format(n=2)], ids=["default:twice"])

    entries = groups.entries_of_id(["other", "default"], "default:twice")

    assert [q for q, _ in entries] == ["default", "default"]
    found = groups.records("default", [e for _, e in entries])
    assert sorted(json.loads(e.member)["error"] for e in found if e) == sorted(
        [ERRORS[0].format(n=1), ERRORS[1].format(n=2)])
    assert groups.entries_of_id(["default"], "default:never") == []
    assert_index_consistent(redis_client)


def test_a_trim_past_the_bounds_drops_entries_and_empties_groups_in_step(broker, redis_client):
    bury(broker, redis_client, [ERRORS[0].format(n=n) for n in range(5)])
    bury(broker, redis_client, [ERRORS[1].format(n=n) for n in range(5)], retention=Retention(60, 3, 10.0**12))

    sizes = assert_index_consistent(redis_client)

    assert dict(sizes) == {title_of(ERRORS[1].format(n=0)).fingerprint: 3}   # the oldest seven went, a whole group with them
    assert redis_client.zcard(K.dead) == 3 and redis_client.get(K.dead_trimmed) == b"7"


def test_retry_and_purge_of_exact_records_take_their_entries_with_them(broker, redis_client):
    ids = bury(broker, redis_client, [ERRORS[0].format(n=n) for n in range(4)])
    admin = AdminBroker(broker.client, broker.scripts)
    members = {json.loads(m)["id"]: m for m in redis_client.zrange(K.dead, 0, -1)}
    envelope = records.encode(Job(id=ids[0], type="t.job", queue="default", payload={}), records.NO_LIMIT)

    assert admin.dead_revive("default", [Revival(members[ids[0]], envelope, ids[0])], "q|0||") == [1]
    assert admin.dead_remove("default", [members[ids[1]], members[ids[1]], b"not there"]) == 1

    assert dict(assert_index_consistent(redis_client)) == {title_of(ERRORS[0].format(n=0)).fingerprint: 2}
    assert redis_client.lrange(K.ready, 0, -1) == [envelope] and redis_client.hget(K.state, ids[0]) == b"q|0||"
    assert admin.dead_remove_all("default") == 2
    assert all(redis_client.exists(key) == 0 for key in K.dead_index_keys[:4])
    assert redis_client.zcard(K.dead) == 0


def test_a_group_drops_in_steps_and_leaves_the_other_groups_whole(broker, groups, redis_client):
    bury(broker, redis_client, [ERRORS[0].format(n=n) for n in range(25)] + [ERRORS[1].format(n=1)])
    fp = title_of(ERRORS[0].format(n=0)).fingerprint

    assert groups.drop_group_step("default", fp, 10) == (10, 15)
    assert groups.drop_group_step("default", fp, 10) == (10, 5)
    assert groups.drop_group_step("default", fp, 10) == (5, 0)

    assert dict(assert_index_consistent(redis_client)) == {title_of(ERRORS[1].format(n=0)).fingerprint: 1}
    assert redis_client.zcard(K.dead) == 1


def test_a_reaped_job_past_max_deliveries_is_grouped_as_python_would_group_it(broker, redis_client, redis_url):
    registry = Registry(broker.client, broker.scripts)
    with geoq.Client(redis_url) as producer:
        job = producer.enqueue("t.crashy", {})
    registry.register("w-dead", "{}", ["default"], ttl=60)
    assert len(broker.fetch(broker.client, "default", "w-dead", 10, None)) == 1

    assert len(registry.reap("default", "w-dead", 1, KEEP_ALL).buried) == 1

    (member,) = redis_client.zrange(K.dead, 0, -1)
    expected = fingerprint.title_of_record("default", member)
    assert expected.error_type == "max_deliveries" and expected.message == fingerprint.MAX_DELIVERIES_TITLE
    assert dict(assert_index_consistent(redis_client)) == {expected.fingerprint: 1}
    assert json.loads(member)["id"] == job.id and redis_client.llen(K.ready) == 0


def test_a_job_expired_when_promoted_is_grouped_as_python_would_group_it(broker, redis_client, redis_url):
    with geoq.Client(redis_url) as producer:
        job = producer.enqueue("t.late", {}, delay=60, expires=90)

    assert broker.promote_due("default", 10, 60, now=broker.server_time() + 200).expired == [(job.id, "t.late", 0)]

    (member,) = redis_client.zrange(K.dead, 0, -1)
    expected = fingerprint.title("default", "t.late", "expired", "Expired: not started by its expiry at 5.000")
    assert fingerprint.title_of_record("default", member) == expected
    assert dict(assert_index_consistent(redis_client)) == {expected.fingerprint: 1}
    assert redis_client.zcard(K.scheduled) == 0 and redis_client.llen(K.ready) == 0


def test_records_of_an_older_geoq_are_indexed_by_reindex_into_the_same_groups(broker, groups, redis_client):
    bury(broker, redis_client, [e.format(n=n) for n in range(3) for e in ERRORS])
    before = dict(assert_index_consistent(redis_client))
    strip_index(redis_client, ["default"])
    scores = sorted(s for _, s in redis_client.zrange(K.dead, 0, -1, withscores=True))

    items = []
    for member in redis_client.zrange(K.dead, 0, -1):
        title = fingerprint.title_of_record("default", member)
        items.append(Reindexed(member, title.fingerprint, title.meta(), json.loads(member)["id"]))
    assert groups.reindex("default", items) == 9
    assert groups.reindex("default", items) == 0   # rewritten already: nothing twice

    assert dict(assert_index_consistent(redis_client)) == before
    after = sorted(s for _, s in redis_client.zrange(K.dead, 0, -1, withscores=True))
    assert after == pytest.approx(scores, abs=1e-6) and redis_client.zcard(K.dead) == 9


def test_trimming_and_deleting_a_group_of_20000_indexed_records_go_in_short_steps(broker, groups, redis_client):
    for start in range(0, 20_000, 1000):
        bury(broker, redis_client, [ERRORS[start // 1000 % 2].format(n=n % 250) for n in range(start, start + 1000)])
    redis_client.config_set("slowlog-log-slower-than", 10_000)
    redis_client.slowlog_reset()

    trimmed = broker.trim_dead("default", Retention(60, 12_000, 10.0**12))
    deleted = 0
    while True:
        removed, left = groups.drop_group_step("default", title_of(ERRORS[0].format(n=0)).fingerprint)
        deleted += removed
        if not left:
            break

    long = [(e["duration"], e["command"][:40]) for e in redis_client.slowlog_get(1000) if e["duration"] > 50_000]
    redis_client.config_set("slowlog-log-slower-than", 10_000)
    assert long == []
    assert (trimmed, deleted) == (8000, 6000)
    assert dict(assert_index_consistent(redis_client)) == {title_of(ERRORS[1].format(n=0)).fingerprint: 6000}
    assert redis_client.zcard(K.dead) == 6000


def test_a_burial_redis_refuses_for_want_of_memory_writes_neither_record_nor_index():
    with RedisServer() as server:
        client = server.client()
        broker = Broker(connect(default_config(server.url).redis, max_connections=4))
        burials = bury_refused(broker, client, [ERRORS[0].format(n=n) for n in range(3)])

        assert client.zcard(K.dead) == 0 and client.llen(K.processing("w1")) == 3
        assert all(client.exists(key) == 0 for key in K.dead_index_keys)
        client.config_set("maxmemory", 0)
        retried = broker.settle("w1", [Settlement("default", burials=burials)], KEEP_ALL)

        assert (retried.fenced, retried.refused) == (0, [])
        assert dict(assert_index_consistent(client)) == {title_of(ERRORS[0].format(n=0)).fingerprint: 3}
        assert client.llen(K.processing("w1")) == 0 and client.zcard(K.dead) == 3


def bury_refused(broker: Broker, client: redis.Redis, errors: list[str]) -> list[Bury]:
    """As bury(), under maxmemory: the burials Redis refused, to settle again."""
    jobs = [Job(id=f"default:oom-{i}", type="t.job", queue="default", payload={"i": i}) for i in range(len(errors))]
    envelopes = [records.encode(j, records.NO_LIMIT) for j in jobs]
    client.config_set("maxmemory", 0)
    client.rpush(K.processing("w1"), *envelopes)
    client.config_set("maxmemory", 1)
    burials = [Bury(e, records.encode_dead("default", j, j.id, "max_retries", err, time.time()), True, j.id, b"{}")
               for j, e, err in zip(jobs, envelopes, errors)]
    result = broker.settle("w1", [Settlement("default", burials=burials)], KEEP_ALL)
    assert len(result.refused) == 1 and result.error is not None
    return list(result.refused[0].burials)
