"""Handlers for the job-control tests: each records its start and, if it gets there, its end."""

from __future__ import annotations

import gevent

from geoq.job import Job
from tests.support.handlers import ledger


def slow(job: Job) -> None:
    """Records "started", sleeps payload["sleep"] seconds (cooperative), then records "succeeded"."""
    ledger().rpush("ledger:started", job.id)
    gevent.sleep(float((job.payload or {}).get("sleep", 0)))
    ledger().rpush("ledger:succeeded", job.id)
