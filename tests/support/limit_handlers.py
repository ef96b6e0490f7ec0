"""Handlers for the limit tests (tests/limits): each run records when it ran, in the ledger.

A run appends "START END KEY JOB_ID" (unix seconds, this host's clock, shared by every worker
process of a test) to ``ledger:runs`` once it is over, so a test can count runs per second, per
key, and how many overlapped, from outside the queue. The key is payload["k"] when given.
"""

from __future__ import annotations

import time
from typing import Any

import gevent

from geoq.job import Job
from tests.support.handlers import ledger

RUNS = "ledger:runs"


def record(job: Job) -> dict[str, Any]:
    """Sleeps payload["sleep"] seconds (default none), then records the run."""
    payload = job.payload if isinstance(job.payload, dict) else {}
    started = time.time()
    gevent.sleep(float(payload.get("sleep", 0)))
    ended = time.time()
    ledger().rpush(RUNS, f"{started:.6f} {ended:.6f} {payload.get('k', '-')} {job.id}")
    return {"attempt": job.attempt}
