"""Small handlers for demos, benchmarks and smoke tests of a deployment."""

from __future__ import annotations

from typing import Any

import gevent

from geoq.job import Job


def noop(job: Job) -> None:
    """Does nothing: measures the queue itself."""


def sleep(job: Job) -> dict[str, Any]:
    """Waits cooperatively for payload["seconds"] (default 0.05), like a slow network call."""
    seconds = float((job.payload or {}).get("seconds", 0.05))
    gevent.sleep(seconds)
    return {"slept": seconds}


def fail(job: Job) -> None:
    """Always raises: ends in the dead list after its retries."""
    raise RuntimeError((job.payload or {}).get("message", "this job always fails"))


def flaky(job: Job) -> dict[str, int]:
    """Raises on the first payload["failures"] runs (default 2), then succeeds."""
    failures = int((job.payload or {}).get("failures", 2))
    if job.attempt <= failures:
        raise RuntimeError(f"flaky failure {job.attempt} of {failures}")
    return {"attempt": job.attempt}
