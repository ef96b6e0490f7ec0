"""Handlers for the scale tests: each run is recorded in the ledger (tests.support.handlers)
together with the process that ran it, so a test can tell that every worker process took work."""

from __future__ import annotations

import os
from typing import Any

import gevent

from geoq.job import Job
from tests.support.handlers import ledger


def ok(job: Job) -> dict[str, Any]:
    """Succeeds after payload["sleep"] seconds (cooperative); records the job id and this process."""
    gevent.sleep(float((job.payload or {}).get("sleep", 0)))
    pipe = ledger().pipeline(transaction=False)
    pipe.rpush("ledger:succeeded", job.id)
    pipe.hincrby("ledger:by_pid", str(os.getpid()), 1)
    pipe.execute()
    return {"attempt": job.attempt}
