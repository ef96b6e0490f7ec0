"""A job and its status, as producers, handlers and middleware see them. Pure.

How they are stored in Redis is geoq.records's business; what ids and queues may be
called is geoq.names's.
"""

from __future__ import annotations

import os
from binascii import b2a_base64
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from geoq import names
from geoq.errors import InvalidJob

STATES = ("queued", "scheduled", "running", "succeeded", "dead", "cancelled")
DEAD_REASONS = ("max_retries", "fail", "max_deliveries", "undecodable", "not_a_job", "unknown_type", "oversize",
                "expired")

NO_META: Mapping[str, Any] = MappingProxyType({})
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class JobControl:
    """`expires_at` (unix seconds, Redis time): a run not started by then is not started; the job
    is dead with reason "expired". `unique_key` names the lock a unique job holds in its queue (a
    digest of its unique key, geoq.unique), `unique_for` the seconds it is kept after the job ends."""

    expires_at: float | None = None
    unique_key: str | None = None
    unique_for: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work. `attempt` is the number of the current run (1 on the first), 0 before any.

    `meta` is a small JSON object that travels with the job, through retries, the dead set and
    `dead retry` (trace context, tenant, request id: geoq.records.META_LIMIT bytes at most, counted
    in max_payload). `options` are the route's handler options, never stored. `control` holds
    the job-control options it was enqueued with (expiry, uniqueness: JobControl), None for most
    jobs; `expires_at`, `unique_key` and `unique_for` read it.
    """

    id: str
    type: str
    queue: str
    payload: Any
    attempt: int = 0
    enqueued_at: float = 0.0
    max_retries: int | None = None
    timeout: float | None = None
    history: tuple[tuple[float, str], ...] = ()
    deaths: int = 0
    due_at: float | None = None
    meta: Mapping[str, Any] = field(default_factory=lambda: NO_META)
    options: Mapping[str, Any] = field(default_factory=lambda: _NO_OPTIONS, compare=False)
    # One field for the three options, not three: each field costs every Job built (measured:
    # about 80 ns each), and the worker builds one for every job it fetches.
    control: JobControl | None = None

    @property
    def ready_at(self) -> float:
        """When the job could first start: its due time if it was delayed or retried, else its enqueue time."""
        return self.due_at if self.due_at is not None else self.enqueued_at

    @property
    def last_error(self) -> str | None:
        return self.history[-1][1] if self.history else None

    @property
    def expires_at(self) -> float | None:
        return None if self.control is None else self.control.expires_at

    @property
    def unique_key(self) -> str | None:
        return None if self.control is None else self.control.unique_key

    @property
    def unique_for(self) -> float | None:
        return None if self.control is None else self.control.unique_for


class _Open:
    """Job's slots, writable: `built` fills one in and makes it a Job. The frozen dataclass's
    __init__ sets each field through object.__setattr__ (about 0.2 us a field, 3 us a Job
    measured), and the worker builds a Job for every job it fetches; plain slot stores and one
    class change cost a third of that. The layout is Job's own slots, so the change is allowed."""

    __slots__ = Job.__slots__


def built(id: str, type: str, queue: str, payload: Any, attempt: int, enqueued_at: float,
          max_retries: int | None, timeout: float | None, history: tuple[tuple[float, str], ...],
          deaths: int, due_at: float | None, meta: Mapping[str, Any], options: Mapping[str, Any],
          control: JobControl | None) -> Job:
    """Job(...) with every field given, for the worker's decode of each fetched job; the same Job,
    frozen as any other (tests/unit/test_job.py compares the two)."""
    job: Any = _Open()
    job.id = id
    job.type = type
    job.queue = queue
    job.payload = payload
    job.attempt = attempt
    job.enqueued_at = enqueued_at
    job.max_retries = max_retries
    job.timeout = timeout
    job.history = history
    job.deaths = deaths
    job.due_at = due_at
    job.meta = meta
    job.options = options
    job.control = control
    job.__class__ = Job
    return job  # type: ignore[no-any-return]


def fresh(id: str, type: str, queue: str, payload: Any, enqueued_at: float) -> Job:
    """Job(id, type, queue, payload, enqueued_at=enqueued_at), every other field at Job's default,
    built the fast way: `Client.enqueue_many` makes one for each job given with no option (about
    1 us less a job than the dataclass's __init__, a sixth of a bulk enqueue's time)."""
    return built(id, type, queue, payload, 0, enqueued_at, None, None, (), 0, None, NO_META, _NO_OPTIONS, None)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What Client.status() reports. `result` is set only for a succeeded job that returned one.

    `traceback` is the formatted traceback of the last failed run (geoq.tracebacks): set while the
    job waits for its retry (scheduled, or queued once due) and once it is dead; None otherwise. A
    running job has none (the run under way supersedes it), nor has a job that never ran or whose
    last run ended in its worker's death.
    """

    id: str
    state: str
    attempts: int
    last_error: str | None = None
    result: Any = None
    reason: str | None = None
    due_at: float | None = None
    traceback: str | None = None


def new_id(queue: str, entropy: bytes | memoryview | None = None) -> str:
    """A fresh id that names its queue, so status(id) can find the job's keys: 12 random bytes,
    from `entropy` when the caller drew a batch's worth at once, else from os.urandom."""
    # 16 characters, no padding; binascii directly: base64's wrappers cost as much again, per job
    return f"{queue}:{b2a_base64(os.urandom(12) if entropy is None else entropy, newline=False).translate(_URL_SAFE).decode()}"


def queue_of_id(job_id: str) -> str | None:
    """The queue a generated id names, or None for an id a producer chose."""
    queue, sep, _ = job_id.rpartition(":")
    return queue if sep and names.is_queue_name(queue) else None


def check_id(job_id: str) -> str:
    if not names.is_job_id(job_id):
        raise InvalidJob(f"job id {job_id!r} must be {names.JOB_ID_RULE}")
    return job_id


def check_queue(queue: str) -> str:
    if not names.is_queue_name(queue):
        raise InvalidJob(f"queue name {queue!r} must be {names.QUEUE_NAME_RULE}")
    return queue
