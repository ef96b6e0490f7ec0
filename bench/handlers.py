"""Handlers used only by the benchmarks; the worker imports this module with bench/ on its path."""

from __future__ import annotations

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
