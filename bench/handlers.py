"""Handlers used only by the benchmarks; the worker imports this module with bench/ on its path."""

from __future__ import annotations

import json
import os
import time

import redis

from geoq.job import Job

STARTED = "bench:started"  # hash: job id -> time.time() when the handler began
_ledger: redis.Redis | None = None


def stamp(job: Job) -> None:
    """Records when the job started, into GEOQ_BENCH_LEDGER (a redis:// URL outside the queue's db)."""
    started = time.time()  # first, so the write below is not counted as latency
    global _ledger  # one client per worker process, made on first use
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["GEOQ_BENCH_LEDGER"])
    _ledger.hset(STARTED, job.id, repr(started))


def crunch(job: Job) -> int:
    """A CPU-bound body: payload["rounds"] (default 20) JSON round trips of a small document.

    The work is counted, not timed, so a slower or busier machine does the same work per job
    (about 200 us of one core here): what a job spends rendering or parsing between its I/O.
    """
    document = {"id": job.id, "items": [{"n": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(8)]}
    for _ in range(int((job.payload or {}).get("rounds", 20))):
        document = json.loads(json.dumps(document))
    return len(document["items"])
