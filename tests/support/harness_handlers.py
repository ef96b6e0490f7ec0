"""Handlers for tests of geoq.testing: they run in the test's own process, so they record to a list."""

from __future__ import annotations

import threading
import time
from typing import Any

from geoq.errors import Retry
from geoq.job import Job

RAN: list[tuple[str, str, int]] = []   # (type, id, attempt) of every run, in order
RELEASE = threading.Event()            # lets a `stuck` handler end once its test is done


def report(job: Job) -> dict[str, Any]:
    RAN.append((job.type, job.id, job.attempt))
    return {"rows": 12, "id": (job.payload or {}).get("id")}


def flaky(job: Job) -> str:
    """Fails its first payload["failures"] runs."""
    RAN.append((job.type, job.id, job.attempt))
    if job.attempt <= int(job.payload["failures"]):
        raise RuntimeError(f"planned failure {job.attempt}")
    return "ok"


def later(job: Job) -> str:
    """Asks for a retry a minute later on its first run."""
    RAN.append((job.type, job.id, job.attempt))
    if job.attempt == 1:
        raise Retry(delay=60)
    return "ok"


def stuck(job: Job) -> None:
    """Blocks (unpatched, so nothing can interrupt it) until RELEASE is set."""
    RAN.append((job.type, job.id, job.attempt))
    RELEASE.wait(30)
    time.sleep(0)
