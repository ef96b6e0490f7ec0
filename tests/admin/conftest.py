"""Fixtures for the admin CLI tests: run bin/geoq as a user would, seed dead records, a ledger."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from typing import Any, Callable

import pytest
import redis

from geoq import job as jobs
from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.job import Job

from tests.admin.helpers import redis_now, run_geoq
from tests.support.dead_index import rescore

Geoq = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(redis_url: str) -> Geoq:
    """Run `geoq --redis-url <this test's db> ARGS...`; the completed process."""
    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_geoq("--redis-url", redis_url, *args, **kwargs)
    return run


@pytest.fixture
def cli_json(cli: Geoq) -> Callable[..., Any]:
    """Run `geoq ... --json`, check it exited 0 quietly, and return the parsed output."""
    def run(*args: str) -> Any:
        done = cli(*args, "--json")
        assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
        return json.loads(done.stdout)
    return run


def _one_error_line(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("geoq: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def error_line() -> Callable[[subprocess.CompletedProcess[str], int], str]:
    """Assert a command failed with a status and one line on stderr, no traceback; return that line."""
    return _one_error_line


def _dead_job(queue: str, at: float, job_type: str = "t.job", *, job_id: str | None = None,
              reason: str = "max_retries", runs: int = 3, payload: Any = None) -> tuple[Job, bytes, bytes]:
    """A job that died after `runs` runs: the Job, the envelope it was fetched as, and its dead record
    as the worker writes it (dead.lua completes it with the envelope)."""
    history = tuple((time.time() - 10 + n, f"RuntimeError: boom {n + 1}") for n in range(runs))
    job = Job(id=job_id or jobs.new_id(queue), type=job_type, queue=queue,
              payload={"n": 1, "f": 1.5, "empty": []} if payload is None else payload,
              attempt=runs - 1, enqueued_at=time.time() - 60, max_retries=runs - 1, history=history[:-1])
    ran = dataclasses.replace(job, attempt=runs, history=history)
    return job, records.encode(job, records.NO_LIMIT), records.encode_dead(queue, ran, job.id, reason, history[-1][1], at)


def _seed(client: redis.Redis, queue: str, dead: list[tuple[Job, bytes, bytes]], scores: list[float]) -> None:
    """Bury these jobs the worker's way (through a processing list and dead.lua), then score each
    record as given (dead.lua scores by Redis's now)."""
    k = keys.queue_keys(queue)
    before = set(client.zrange(k.dead, 0, -1))
    client.rpush(k.processing("seeder"), *(envelope for _, envelope, _ in dead))
    Broker(client).settle("seeder", [Settlement(queue, burials=[Bury(e, r, True, j.id, b"") for j, e, r in dead])],
                          Retention(0, 10**9, 10.0**12))  # trims nothing
    at = {job.id: score for (job, _, _), score in zip(dead, scores)}
    added = set(client.zrange(k.dead, 0, -1)) - before
    assert len(added) == len(dead)
    rescore(client, queue, {member: at[json.loads(member)["id"]] for member in added})


def _bury(client: redis.Redis, queue: str = "default", job_type: str = "t.job", *, died_at: float | None = None,
          **kwargs: Any) -> Job:
    """Put a dead record in a queue's dead set the worker's way (dead.lua completes it), scored `died_at`."""
    at = redis_now(client) if died_at is None else died_at
    dead = _dead_job(queue, at, job_type, **kwargs)
    _seed(client, queue, [dead], [at])
    return dead[0]


@pytest.fixture
def bury(redis_client: redis.Redis) -> Callable[..., Job]:
    """bury(queue="default", job_type="t.job", died_at=None, job_id=None, reason=..., runs=3, payload=None):
    a dead record in the worker's own format, scored died_at (default: Redis now); the Job it holds."""
    return lambda *args, **kwargs: _bury(redis_client, *args, **kwargs)


@pytest.fixture
def bury_many(redis_client: redis.Redis) -> Callable[..., list[Job]]:
    """bury_many(n, queue="default", died_at=None, ...): n dead records as bury() makes them, written in
    one pipeline and scored died_at (default: Redis now); the Jobs, oldest first."""
    def run(n: int, queue: str = "default", *, died_at: float | None = None, **kwargs: Any) -> list[Job]:
        at = redis_now(redis_client) if died_at is None else died_at
        scores = [at + i / 1000 for i in range(n)]
        dead = [_dead_job(queue, score, **kwargs) for score in scores]
        _seed(redis_client, queue, dead, scores)
        return [job for job, _, _ in dead]
    return run


@pytest.fixture
def now(redis_client: redis.Redis) -> Callable[[], float]:
    """Redis server time, the clock dead records are scored by."""
    return lambda: redis_now(redis_client)
