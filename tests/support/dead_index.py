"""Read a queue's dead set and its index whole, and assert they agree (geoq.broker.groups)."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Iterable

import time

import redis

from geoq import fingerprint, records
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.job import Job

_HEAD = re.compile(rb'^\{"fp":"([0-9a-f]+)","seq":(\d+),')


def assert_index_consistent(client: redis.Redis, queue: str = "default") -> Counter[str]:
    """Every headed record has its one entry, every entry its record; groups, titles and ids follow.
    Returns the number of records per group."""
    k = keys.queue_keys(queue)
    expected: dict[str, tuple[str, str]] = {}   # entry -> (fingerprint, id)
    for member, score in client.zrange(k.dead, 0, -1, withscores=True):
        head = _HEAD.match(member)
        if head is None:
            continue
        fp, seq = head[1].decode(), head[2].decode()
        job_id = json.loads(member).get("id") or ""
        expected[f"{fp}:{score:017.6f}:{seq}:{job_id}"] = (fp, job_id)
    entries = {e.decode() for e in client.zrange(k.dead_index, 0, -1)}
    assert entries == set(expected), (sorted(entries - set(expected))[:5], sorted(set(expected) - entries)[:5])
    sizes = Counter(fp for fp, _ in expected.values())
    groups = {fp.decode(): score for fp, score in client.zrange(k.dead_groups, 0, -1, withscores=True)}
    newest = {fp: max(float(e.split(":")[1]) for e in expected if e.startswith(fp + ":")) for fp in sizes}
    assert groups == newest, (groups, newest)
    assert {fp.decode() for fp in client.hkeys(k.dead_titles)} == set(sizes)
    ids: dict[str, set[str]] = {}
    for entry, (_, job_id) in expected.items():
        if job_id:
            ids.setdefault(job_id, set()).add(entry)
    stored = {i.decode(): set(v.decode().split()) for i, v in client.hgetall(k.dead_ids).items()}
    assert stored == ids
    return sizes


def strip_index(client: redis.Redis, queues: Iterable[str]) -> None:
    """Make these dead sets look as an older geoq left them: records without heads, no index."""
    for queue in queues:
        k = keys.queue_keys(queue)
        for member, score in client.zrange(k.dead, 0, -1, withscores=True):
            bare = _HEAD.sub(b"{", member)
            if bare != member:
                client.zrem(k.dead, member)
                client.zadd(k.dead, {bare: score})
        client.delete(*k.dead_index_keys)


def rescore(client: redis.Redis, queue: str, scores: dict[bytes, float]) -> None:
    """Give dead records the death times a test wants (to the microsecond, as the index keeps
    them), their index entries following; not atomic, for setting a test up."""
    k = keys.queue_keys(queue)
    for member, wanted in scores.items():
        at, old = float(f"{wanted:.6f}"), client.zscore(k.dead, member)
        client.zadd(k.dead, {member: at})
        head = _HEAD.match(member)
        if head is None or old is None:
            continue
        prefix = f"{head[1].decode()}:{old:017.6f}:{head[2].decode()}:"
        (entry,) = [e.decode() for e in client.zrange(k.dead_index, "[" + prefix, "(" + prefix + "~", bylex=True)]
        moved = f"{head[1].decode()}:{at:017.6f}:{head[2].decode()}:{entry[len(prefix):]}"
        client.zrem(k.dead_index, entry)
        client.zadd(k.dead_index, {moved: 0})
        _move_id(client, k, entry[len(prefix):], entry, moved)
        _regroup(client, k, head[1].decode())


def _move_id(client: redis.Redis, k: keys.QueueKeys, job_id: str, entry: str, moved: str) -> None:
    if job_id:
        entries = (client.hget(k.dead_ids, job_id) or b"").decode().split()
        client.hset(k.dead_ids, job_id, " ".join(moved if e == entry else e for e in entries))


def _regroup(client: redis.Redis, k: keys.QueueKeys, fp: str) -> None:
    (newest,) = client.zrange(k.dead_index, f"({fp};", f"[{fp}:", desc=True, bylex=True, offset=0, num=1)
    client.zadd(k.dead_groups, {fp: float(newest.decode().split(":")[1])})


KEEP_ALL = Retention(keep=60, dead_max_jobs=10**9, dead_max_age=10.0**12)
SMTP = "ConnectionError: connect to 10.0.0.{n}:25 refused"
USER = "KeyError: 'user{n}'"
ORDER = "ValueError: order {n} has no lines"


def seed(client: redis.Redis, errors: list[str], job_type: str = "t.job", queue: str = "default") -> list[str]:
    """Bury one job per error the worker's way (a processing list, then dead.lua); their ids, in order."""
    jobs = [Job(id=f"{queue}:{job_type}-{i}-{time.monotonic_ns()}", type=job_type, queue=queue, payload={"i": i})
            for i in range(len(errors))]
    envelopes = [records.encode(j, records.NO_LIMIT) for j in jobs]
    client.rpush(keys.queue_keys(queue).processing("seeder"), *envelopes)
    burials = [Bury(e, records.encode_dead(queue, j, j.id, "max_retries", err, time.time()), True, j.id, b"")
               for j, e, err in zip(jobs, envelopes, errors)]
    Broker(client).settle("seeder", [Settlement(queue, burials=burials)], KEEP_ALL)
    return [j.id for j in jobs]


def fp(error: str, job_type: str = "t.job", queue: str = "default") -> str:
    return fingerprint.title(queue, job_type, "max_retries", error.format(n=0)).fingerprint


def dead_ids(client: redis.Redis, queue: str = "default") -> set[str]:
    return {json.loads(m)["id"] for m in client.zrange(keys.queue_keys(queue).dead, 0, -1)}
