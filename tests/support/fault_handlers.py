"""Handlers for the fault-injection tests (tests/faults), each recording its runs in the ledger.

Every handler writes its job id to ``ledger:started`` when a run begins and to
``ledger:succeeded`` only once the run is over, so a test can tell a run that
was cut short (a killed worker, a job interrupted at shutdown) from one that
completed. The ledger is the Redis database of GEOQ_TEST_LEDGER (see
tests.support.handlers.ledger), outside the queue under test, so it survives
whatever the test does to the queue's Redis.
"""

from __future__ import annotations

import os
import time
from typing import Any

import gevent

from geoq.job import Job
from tests.support.handlers import ledger

STARTED = "ledger:started"
SUCCEEDED = "ledger:succeeded"
FAST = "ledger:fast"          # while set, long() sleeps only FAST_SLEEP seconds
FAST_SLEEP = 0.1


def _payload(job: Job) -> dict[str, Any]:
    return job.payload if isinstance(job.payload, dict) else {}


def _started(job: Job) -> None:
    ledger().rpush(STARTED, job.id)


def _succeeded(job: Job) -> dict[str, Any]:
    ledger().rpush(SUCCEEDED, job.id)
    return {"attempt": job.attempt}


def sleeper(job: Job) -> dict[str, Any]:
    """Sleeps payload["sleep"] seconds (cooperatively), then records its success."""
    _started(job)
    gevent.sleep(float(_payload(job).get("sleep", 0)))
    return _succeeded(job)


def long(job: Job) -> dict[str, Any]:
    """Sleeps payload["sleep"] seconds, or only FAST_SLEEP once the ledger's "fast" flag is set.

    A test holds jobs in flight across a shutdown with a long sleep, then sets the flag so
    that the worker which receives them back finishes them at once.
    """
    _started(job)
    fast = ledger().exists(FAST)
    gevent.sleep(FAST_SLEEP if fast else float(_payload(job).get("sleep", 60)))
    return _succeeded(job)


def poison(job: Job) -> None:
    """Kills its worker process outright, as a segfaulting C extension or the OOM killer would."""
    _started(job)
    os._exit(1)


def hog(job: Job) -> dict[str, Any]:
    """Waits payload["after"] seconds cooperatively, then blocks the hub for payload["busy"] seconds.

    The busy loop never yields, so no other greenlet of the worker runs meanwhile:
    what a CPU-bound handler or an unpatched C library does to a gevent worker.
    """
    _started(job)
    gevent.sleep(float(_payload(job).get("after", 0)))
    ledger().rpush("ledger:blocking", job.id)
    until = time.monotonic() + float(_payload(job).get("busy", 2))
    while time.monotonic() < until:
        pass
    return _succeeded(job)


def hold(job: Job) -> dict[str, Any]:
    """Stays running (cooperatively) until the ledger's release flag is set."""
    _started(job)
    while not ledger().exists("ledger:release"):
        gevent.sleep(0.02)
    return _succeeded(job)
