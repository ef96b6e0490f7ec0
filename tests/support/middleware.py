"""Middleware for tests: what the worker's hooks saw, written where the test process can read it.

A worker subprocess builds these from its config's `middleware:` list, e.g.
``{handler: "tests.support.middleware:Recorder", options: {path: /tmp/x/hooks.jsonl}}``.

    Recorder   one JSON line per hook call, appended to `path` (read back with `records(path)`)
    Gate       before_run raises Fail or Retry when the job's payload asks ({"gate": "fail" | "retry"})
    Raising    raises in every job hook: a broken user middleware
    Stamp      before_enqueue adds `tag` to the payload and `prefix` to the id's own part
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import geoq
from geoq.job import Job
from geoq.middleware import WorkerInfo
from geoq.outcome import Outcome


class Recorder(geoq.Middleware):
    """Appends each job hook's call to `path` as one JSON line: {"hook", "pid", ...what it was given}."""

    def __init__(self, path: str) -> None:
        self.path = path

    def before_enqueue(self, job: Job) -> Job:
        self._write("before_enqueue", job=_job(job))
        return job

    def worker_started(self, worker: WorkerInfo) -> None:
        self._write("worker_started", worker=_worker(worker))

    def before_run(self, job: Job) -> None:
        self._write("before_run", job=_job(job))

    def after_run(self, job: Job, outcome: Outcome) -> None:
        self._write("after_run", job=_job(job), outcome=_outcome(outcome))

    def worker_stopping(self, worker: WorkerInfo) -> None:
        self._write("worker_stopping", worker=_worker(worker), in_flight=worker.in_flight())

    def _write(self, hook: str, **fields: Any) -> None:
        # One write of one line in append mode: lines from one process never interleave.
        line = json.dumps({"hook": hook, "pid": os.getpid(), **fields}, default=repr) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)


def _job(job: Job) -> dict[str, Any]:
    return {"id": job.id, "type": job.type, "queue": job.queue, "attempt": job.attempt, "payload": job.payload}


def _worker(worker: WorkerInfo) -> dict[str, Any]:
    return {"id": worker.id, "queues": list(worker.queues), "concurrency": worker.concurrency}


def _outcome(o: Outcome) -> dict[str, Any]:
    return {"state": o.state, "label": o.label, "ran": o.ran, "error": o.error, "traceback": o.traceback,
            "result": o.result, "duration": o.duration, "reason": o.reason, "delay": o.delay,
            "exception": type(o.exception).__name__ if o.exception is not None else None}


def records(path: Path | str, hook: str | None = None) -> list[dict[str, Any]]:
    """The Recorder's lines at `path`, in order (only `hook`'s, if given); [] before the first."""
    if not os.path.exists(path):
        return []
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [r for r in lines if hook is None or r["hook"] == hook]


def after_runs(path: Path | str, job_id: str) -> list[dict[str, Any]]:
    """The outcomes the Recorder saw for one job, in order."""
    return [r["outcome"] for r in records(path, "after_run") if r["job"]["id"] == job_id]


class Gate(geoq.Middleware):
    """before_run decides instead of the handler when the payload says so: "fail" dead-letters the
    job, "retry" asks for a retry after `delay` seconds on the first run only."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay

    def before_run(self, job: Job) -> None:
        gate = job.payload.get("gate") if isinstance(job.payload, dict) else None
        if gate == "fail":
            raise geoq.Fail("refused by the gate")
        if gate == "retry" and job.attempt == 1:
            raise geoq.Retry(delay=self.delay, reason="the gate asks again later")


class Raising(geoq.Middleware):
    """Raises in every job hook, as a broken user middleware would."""

    def before_enqueue(self, job: Job) -> Job:
        raise RuntimeError("broken before_enqueue")

    def worker_started(self, worker: WorkerInfo) -> None:
        raise RuntimeError("broken worker_started")

    def before_run(self, job: Job) -> None:
        raise RuntimeError("broken before_run")

    def after_run(self, job: Job, outcome: Outcome) -> None:
        raise RuntimeError("broken after_run")

    def worker_stopping(self, worker: WorkerInfo) -> None:
        raise RuntimeError("broken worker_stopping")


class Stamp(geoq.Middleware):
    """A producer-side change: the payload gains {"stamp": tag}, the id's own part gains `prefix`."""

    def __init__(self, tag: str, prefix: str = "") -> None:
        self.tag, self.prefix = tag, prefix

    def before_enqueue(self, job: Job) -> Job:
        queue, sep, own = job.id.rpartition(":")
        payload = {**job.payload, "stamp": self.tag} if isinstance(job.payload, dict) else job.payload
        return replace(job, id=f"{queue}{sep}{self.prefix}{own}", payload=payload)
