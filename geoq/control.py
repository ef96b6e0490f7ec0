"""The job-control options of an enqueue, checked and applied to the Job: expiry and uniqueness. Pure."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from geoq import unique
from geoq.errors import InvalidJob
from geoq.job import Job, JobControl
from geoq.unique import UniqueRule


def with_control(job: Job, now: float, expires: float | timedelta | datetime | None,
                 unique_for: float | timedelta | None, rule: UniqueRule | None) -> Job:
    """`job` with its expiry (unix seconds) and unique lock set. `now` is Redis's time; an expiry
    that is not after both now and the job's due time is refused (the job could never run)."""
    expires_at = None if expires is None else expiry(expires, now)
    if expires_at is not None and job.due_at is not None and expires_at <= job.due_at:
        raise InvalidJob(f"expires ({expires_at:.3f}) is not after the job's due time ({job.due_at:.3f}): "
                         "it could never run")
    lock, window = None, None
    if unique_for is not None or rule is not None:
        if unique_for is not None:
            window = seconds("unique_for", unique_for)
        else:
            window = rule.window if rule is not None else 0.0
        try:
            lock = unique.lock_digest(unique.key_text(job.type, job.payload, rule.key if rule else ""))
        except (TypeError, ValueError) as e:
            raise InvalidJob(f"unique key of {job.type}: {e}") from None
    return dataclasses.replace(job, control=JobControl(expires_at, lock, window))


def expiry(expires: float | timedelta | datetime, now: float) -> float:
    """Unix seconds of an `expires=`: seconds or a timedelta from now, or a datetime."""
    if isinstance(expires, datetime):
        at = expires.timestamp()
    elif isinstance(expires, timedelta):
        at = now + expires.total_seconds()
    elif isinstance(expires, (int, float)) and not isinstance(expires, bool) and expires == expires:
        at = now + expires
    else:
        raise InvalidJob(f"expires must be a number of seconds, a timedelta or a datetime, got {expires!r}")
    if at <= now:
        raise InvalidJob(f"expires must be in the future, got {expires!r} (now is {now:.3f})")
    return round(at, 3)


def seconds(name: str, value: float | timedelta) -> float:
    """A non-negative number of seconds from a number or a timedelta."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InvalidJob(f"{name} must be a number of seconds >= 0 or a timedelta, got {value!r}")
    return float(value)
