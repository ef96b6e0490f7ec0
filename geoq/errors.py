"""The whole geoq exception tree, under one root.

    GeoqError
    ├── ConfigError            bad config file or value (CLI exit 2)
    ├── PayloadTooLarge        encoded job over worker.max_payload; nothing written
    ├── InvalidJob             a job that cannot be built or decoded (bad id, not JSON, ...)
    ├── ResultTimeout          Client.result() waited longer than its timeout
    ├── JobDead                Client.result() for a job that ended in the dead list
    ├── JobTimeout             a run passed its timeout (what the outcome sees; the handler saw gevent's Timeout)
    │   └── testing.StillRunning   a test harness's run still going at its timeout (drain raises it)
    ├── BrokerError            Redis failed us (translated from redis-py at the broker edge)
    │   ├── RedisUnavailable   refused, unreachable, timed out (CLI exit 3)
    │   ├── RedisAuthError     authentication, ACL or certificate failure (CLI exit 2)
    │   └── RedisFull          Redis refused a write (maxmemory, READONLY replica)
    ├── admin.errors.CommandError   an admin command cannot do what was asked
    │   ├── UsageError         bad arguments or input (CLI exit 2)
    │   └── NotFound           what was asked for does not exist (CLI exit 1)
    ├── testing.HarnessError   the test harness cannot do what was asked (no redis-server, endless drain)
    ├── LimitKeyError          a job's payload lacks what its route's limits.per_key.key reads (fails at once)
    └── handlers.netguard.RefusedAddress   a URL's host is not allowed (the job fails at once)

Handler signals are not errors of geoq but requests from a handler, so they
derive from Exception directly and are caught by the executor:

    Retry(delay=...)           retry at a chosen time (a run like any other: counts toward max_retries)
    Fail(reason)               dead-letter at once, no retries
    Throttled(delay=...)       a Retry: the other end asked us to slow down (HTTP 429/503, SMTP 421/451);
                               a route with `limits.adaptive` pauses the job's limit key instead

A cancel is neither: the worker throws JobCancelled into the handler's greenlet, a
BaseException like gevent's Timeout, so that a handler's `except Exception` does not swallow it.
"""

from __future__ import annotations

from datetime import timedelta


class GeoqError(Exception):
    """Root of every error geoq raises."""


class ConfigError(GeoqError):
    """A config file or value is wrong. The message is one line meant for a person."""


class PayloadTooLarge(GeoqError):
    """An encoded job is larger than the configured maximum; nothing was stored."""


class InvalidJob(GeoqError):
    """A job cannot be built or decoded."""


class ResultTimeout(GeoqError):
    """The job did not finish within the time Client.result() was given."""


class JobDead(GeoqError):
    """The job ended in the dead-letter list; there is no result."""

    def __init__(self, job_id: str, reason: str, error: str | None) -> None:
        super().__init__(f"job {job_id} is dead ({reason}): {error or 'no error recorded'}")
        self.job_id = job_id
        self.reason = reason
        self.error = error


class JobTimeout(GeoqError):
    """A run went past its timeout. The executor's timer interrupts the handler with gevent's
    Timeout (a BaseException, so a handler's `except Exception` cannot swallow it) and hands
    this to the pure outcome rule instead, so that rule needs no gevent."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"handler ran past its timeout of {seconds:g}s")
        self.seconds = seconds


class BrokerError(GeoqError):
    """Redis did not do what the broker asked."""


class RedisUnavailable(BrokerError):
    """Redis cannot be reached: refused, unknown host, timed out, or went away."""


class RedisAuthError(BrokerError):
    """Redis rejected our credentials, ACL permissions or TLS certificate."""


class RedisFull(BrokerError):
    """Redis refused a write: out of memory under noeviction, or a read-only replica."""


class Retry(Exception):
    """Raised by a handler to be retried after `delay` seconds (or a timedelta).

    A requested retry is still a run that counts toward max_retries, so a
    handler that always asks to retry ends in the dead list like any other.
    """

    def __init__(self, delay: float | timedelta | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        self.delay = None if delay is None else max(0.0, float(delay))
        self.reason = reason


class Fail(Exception):
    """Raised by a handler to dead-letter the job at once, without retries."""

    def __init__(self, reason: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason


class Throttled(Retry):
    """The server a built-in handler talked to asked us to slow down: HTTP 429, 503 with
    Retry-After, SMTP 421 or 451. `delay` is the time it asked for (None: it named none).

    On a route without `limits.adaptive` it is a Retry like any other. On an adaptive route the
    worker pauses the job's limit key for every worker instead (geoq.limits.pause_for) and puts
    the job back to wait for the pause's end, without counting the run as an attempt.
    """


class LimitKeyError(GeoqError):
    """A job's payload lacks what its route's `limits.per_key.key` reads: the job fails at once."""


class JobCancelled(BaseException):
    """Thrown into a running handler whose job was cancelled (Client.cancel): the run ends
    `cancelled`, is never retried, and its `finally` blocks run. Not an Exception on purpose."""
