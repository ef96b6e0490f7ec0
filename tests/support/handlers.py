"""Handlers for end-to-end tests. Each run is written to a ledger outside the queue.

The ledger is a Redis database named by the GEOQ_TEST_LEDGER environment variable
(a redis:// URL), so tests can check what ran without trusting the queue itself.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import gevent
import redis

from geoq.errors import Fail
from geoq.job import Job

_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger  # one client per worker process, made on first use
    if _ledger is None:
        # Blocking pool: thousands of greenlets share a few connections and wait for one.
        pool = redis.BlockingConnectionPool.from_url(os.environ["GEOQ_TEST_LEDGER"], max_connections=50,
                                                     timeout=30, socket_timeout=10)
        _ledger = redis.Redis(connection_pool=pool)
    return _ledger


def _record(job: Job, what: str) -> None:
    ledger().rpush(f"ledger:{what}", job.id)


def ok(job: Job) -> dict[str, Any]:
    """Succeeds after payload["sleep"] seconds (cooperative)."""
    gevent.sleep(float((job.payload or {}).get("sleep", 0)))
    _record(job, "succeeded")
    return {"id": job.id, "attempt": job.attempt}


def flaky(job: Job) -> dict[str, Any]:
    """Fails its first payload["failures"] runs, then succeeds."""
    if job.attempt <= int(job.payload["failures"]):
        _record(job, "failed")
        raise RuntimeError(f"planned failure {job.attempt}")
    _record(job, "succeeded")
    return {"attempt": job.attempt}


def broken(job: Job) -> None:
    """Always raises."""
    _record(job, "failed")
    raise RuntimeError("always broken")


def check_token(token: str) -> None:
    raise ValueError("token rejected by the nested check")


def nested(job: Job) -> None:
    """Always raises, from a function it calls (its argument is the payload's token, never in the message)."""
    _record(job, "failed")
    check_token(job.payload["token"])


def descend(n: int) -> None:
    ascend(n - 1) if n else hit_bottom()


def ascend(n: int) -> None:
    descend(n)  # two functions in turn, so no "[Previous line repeated]" folds the stack


def hit_bottom() -> None:
    raise RuntimeError("hit the bottom of a deep recursion")


def deep(job: Job) -> None:
    """Always raises, payload["depth"] * 2 frames down."""
    _record(job, "failed")
    descend(int(job.payload["depth"]))


def refuse(job: Job) -> None:
    _record(job, "failed")
    raise Fail("refused on purpose")


def started(job: Job) -> None:
    """Records the wall-clock start time of the run, for delay tests."""
    ledger().hset("ledger:started_at", job.id, repr(time.time()))
    _record(job, "succeeded")


def record_order(job: Job) -> None:
    ledger().rpush("ledger:order", job.payload["queue"])
    _record(job, "succeeded")


def ledger_counts(client: redis.Redis, what: str = "succeeded") -> collections.Counter[str]:
    """How many times each job id was recorded under ledger:<what> (read by tests)."""
    return collections.Counter(x.decode() for x in client.lrange(f"ledger:{what}", 0, -1))


def show_meta(job: Job) -> dict[str, Any]:
    """Writes the run's attempt and meta to the ledger; fails while the ledger holds "meta:fail"."""
    ledger().rpush(f"ledger:meta:{job.id}", json.dumps({"attempt": job.attempt, "meta": dict(job.meta)}))
    if ledger().exists("meta:fail"):
        raise RuntimeError("told to fail")
    return {"meta": dict(job.meta)}


def meta_seen(client: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    """Every run of show_meta for this job: [{"attempt": n, "meta": {...}}, ...] in run order."""
    return [json.loads(raw) for raw in client.lrange(f"ledger:meta:{job_id}", 0, -1)]
