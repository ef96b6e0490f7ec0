"""Handlers for the admin CLI tests, recording each run in the ledger (see tests.support.handlers).

Flags in the ledger steer them, so a test can fill the dead list and then heal the
handler, or hold a job running while it looks at it from the CLI.
"""

from __future__ import annotations

from typing import Any

import gevent

from geoq.job import Job
from tests.support.handlers import ledger

BREAK = "ledger:break"        # while set, breakable() raises
RELEASE = "ledger:release"    # hold() returns once this is set


def breakable(job: Job) -> dict[str, Any]:
    """Fails while the break flag is set, succeeds once it is cleared."""
    if ledger().exists(BREAK):
        ledger().rpush("ledger:failed", job.id)
        raise RuntimeError("broken while the flag is set")
    ledger().rpush("ledger:succeeded", job.id)
    return {"attempt": job.attempt}


def hold(job: Job) -> dict[str, Any]:
    """Stays running until the release flag is set (cooperatively, so the worker stays responsive)."""
    ledger().rpush("ledger:started", job.id)
    while not ledger().exists(RELEASE):
        gevent.sleep(0.01)
    ledger().rpush("ledger:succeeded", job.id)
    return {"held": True}


def picky(job: Job) -> dict[str, Any]:
    """While the break flag is set, fails with an error that names the payload's host or user
    (two kinds of error, each worded differently per job); succeeds once it is cleared."""
    if ledger().exists(BREAK):
        ledger().rpush("ledger:failed", job.id)
        n = job.payload["n"]
        if job.payload["kind"] == "smtp":
            raise ConnectionError(f"connect to 10.0.0.{n}:25 refused")
        raise KeyError(f"user{n}")
    ledger().rpush("ledger:succeeded", job.id)
    return {"attempt": job.attempt}
