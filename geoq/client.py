"""The producer API. Works in any Python program: no gevent, no monkeypatching."""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence, TypeVar

from geoq import control
from geoq import job as jobs
from geoq import names
from geoq import records
from geoq import plugins
from geoq.broker.broker import Broker, NewJob, Placement
from geoq.broker.clock import RedisClock
from geoq.broker.connection import connect, renew
from geoq.broker.retry import read_patience, retry_read
from geoq.config import Config, default_config, load_config
from geoq.errors import InvalidJob, JobDead, ResultTimeout
from geoq.job import Job, JobStatus
from geoq.middleware import Chain, Middleware

T = TypeVar("T")

PRIORITIES = ("normal", "high")
_TAIL, _HEAD = Placement("tail"), Placement("head")
_ID_BYTES = 12   # random bytes in a generated id (96 bits: no collision in any queue's lifetime)
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})
_CLOCK_RESYNC = 60.0  # seconds between TIME reads: one round trip a minute, however many enqueues


class _Request(NamedTuple):   # one per job enqueued: a NamedTuple costs a third of a frozen dataclass
    job: Job
    placement: Placement


class Client:
    """Enqueue jobs and read their status and results.

    ``Client("redis://host:6379/0")`` or ``Client.from_config("config/prod.yaml")``.
    Thread-safe: it holds only a bounded redis-py connection pool. Each job passes through
    `middleware`'s before_enqueue hooks, in order, before it is encoded.
    """

    def __init__(self, url: str | None = None, *, config: Config | None = None,
                 middleware: Sequence[Middleware] = ()) -> None:
        self.config = config if config is not None else default_config(url=url or "redis://127.0.0.1:6379/0")
        if url is not None and config is not None:
            raise TypeError("give a url or a config, not both")
        self._redis = connect(self.config.redis, name="geoq-client")
        self.broker = Broker(self._redis)
        self.clock = RedisClock()   # enqueue times are Redis's: synced on first use, then each minute
        self._patience = read_patience(self.config.redis)  # seconds a read waits through a failover
        self.middleware = Chain(middleware)
        self._plain: Mapping[str, str] | None = None   # _plain_queues, read from the config once

    @classmethod
    def from_config(cls, path: str, *, middleware: Sequence[Middleware] = ()) -> "Client":
        """A client of the file's Redis and routes, with the file's middleware, then `middleware`."""
        config = load_config(path, producer=True)
        return cls(config=config, middleware=[*plugins.middleware(config), *middleware])

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- enqueueing ----------------------------------------------------------------------------

    def enqueue(self, type: str, payload: Any = None, *, queue: str | None = None,
                delay: float | timedelta | None = None, at: datetime | float | None = None,
                priority: str | None = None, max_retries: int | None = None,
                timeout: float | None = None, id: str | None = None,
                meta: Mapping[str, Any] | None = None, expires: float | timedelta | datetime | None = None,
                unique_for: float | timedelta | None = None) -> Job:
        """Store one job and return it. With `id=` of a job still queued, scheduled or running,
        nothing is stored and that job is returned. `meta` travels with the job (Job.meta).

        `expires` (seconds from now, a timedelta, or a datetime): a run not started by then is
        not started; the job is dead with reason "expired". `unique_for` (seconds or timedelta,
        0 allowed) makes the job unique (so does its route's `unique` block): while a job with
        the same unique key is queued, scheduled or running, and for that many seconds after it
        ends, nothing is stored and that job is returned."""
        request = self._request(self._now(), type, payload, queue=queue, delay=delay, at=at, priority=priority,
                                max_retries=max_retries, timeout=timeout, id=id, meta=meta, expires=expires,
                                unique_for=unique_for)
        return self._store([request])[0]

    def enqueue_many(self, items: Iterable[tuple[str, Any] | tuple[str, Any, Mapping[str, Any]]]) -> list[Job]:
        """Store many jobs in one round trip; each item is (type, payload) or (type, payload, options)."""
        items = list(items)
        requests, now = [], self._now()   # one enqueue time for the batch: one clock read
        entropy = memoryview(os.urandom(_ID_BYTES * len(items)))  # the batch's ids from one system call
        plain, routes = self._plain_queues(), self.config.routes
        for n, item in enumerate(items):
            if type(item) is tuple and len(item) == 2 and type(item[0]) is str:  # no option: the short way
                queue = plain.get(item[0]) or ("default" if item[0] and item[0] not in routes else None)
                if queue is not None:
                    job = jobs.fresh(jobs.new_id(queue, entropy[n * _ID_BYTES:(n + 1) * _ID_BYTES]), item[0],
                                     queue, item[1], now)
                    requests.append(self._made(job, _TAIL))
                    continue
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3) or (
                    len(item) == 3 and not isinstance(item[2], Mapping)):
                raise InvalidJob(f"enqueue_many item {n} must be (type, payload) or (type, payload, options), "
                                 f"got {item!r:.200}")
            options = item[2] if len(item) == 3 else _NO_OPTIONS
            try:
                requests.append(self._request(now, item[0], item[1], entropy[n * _ID_BYTES:(n + 1) * _ID_BYTES],
                                              **options))
            except TypeError as e:  # an option enqueue() does not take
                raise InvalidJob(f"enqueue_many item {n}: {e}") from None
        return self._store(requests)

    def _plain_queues(self) -> Mapping[str, str]:
        """The queue of each routed type whose jobs, given no option, enqueue_many builds the short
        way (a type its route makes unique is not here, nor one whose route's queue name _request
        would refuse: its items take the long way, to that refusal; a type with no route goes to
        "default")."""
        if self._plain is None:
            self._plain = {name: route.queue for name, route in self.config.routes.items()
                           if route.unique is None and names.is_queue_name(route.queue)}
        return self._plain

    def _now(self) -> float:
        """Redis's time, rounded as the envelope stores it, so the Job returned is the Job stored."""
        if self.clock.stale(_CLOCK_RESYNC):
            self.clock.sync(self._redis)
        return round(self.clock.now(), 3)

    def _request(self, now: float, type: str, payload: Any, entropy: bytes | memoryview | None = None, *,
                 queue: str | None = None,
                 delay: float | timedelta | None = None, at: datetime | float | None = None,
                 priority: str | None = None, max_retries: int | None = None,
                 timeout: float | None = None, id: str | None = None,
                 meta: Mapping[str, Any] | None = None, expires: float | timedelta | datetime | None = None,
                 unique_for: float | timedelta | None = None) -> _Request:
        if not isinstance(type, str) or not type:
            raise InvalidJob(f"job type must be a non-empty string, got {type!r}")
        route = self.config.routes.get(type)
        queue = jobs.check_queue(queue or (route.queue if route else "default"))
        placement = _TAIL if delay is None and at is None and priority is None else _placement(delay, at, priority)
        due_at = None
        if placement.where == "delay":
            due_at = round(now + (placement.value or 0.0), 3)
        elif placement.where == "at":
            due_at = round(placement.value or 0.0, 3)
        job = Job(id=jobs.check_id(id) if id is not None else jobs.new_id(queue, entropy), type=type, queue=queue,
                  payload=payload, enqueued_at=now,
                  max_retries=None if max_retries is None else _non_negative("max_retries", max_retries),
                  timeout=None if timeout is None else _positive("timeout", timeout), due_at=due_at,
                  meta=jobs.NO_META if meta is None else _meta(meta))
        if expires is not None or unique_for is not None or (route is not None and route.unique is not None):
            job = control.with_control(job, now, expires, unique_for, route.unique if route else None)
        return self._made(job, placement)

    def _made(self, job: Job, placement: Placement) -> _Request:
        """The job as the middleware's before_enqueue hooks leave it, to be stored at `placement`."""
        return _Request(self.middleware.before_enqueue(job) if self.middleware else job, placement)

    def _store(self, requests: Sequence[_Request]) -> list[Job]:
        limit = self.config.worker.max_payload
        batches: dict[str, list[NewJob]] = {}
        for r in requests:  # encode everything first: a bad job raises before anything is written
            envelope = records.encode(r.job, limit)
            batches.setdefault(r.job.queue, []).append(NewJob(r.job.id, envelope, r.placement, r.job.unique_key))
        stored = {queue: iter(answers) for queue, answers in self.broker.enqueue_jobs(batches).items()}
        return [self._stored(r.job, next(stored[r.job.queue])) for r in requests]

    def _stored(self, asked: Job, answer: bool | str) -> Job:
        if answer is True:
            return asked
        return self._live(asked if answer is False else dataclasses.replace(asked, id=answer))

    def _live(self, asked: Job) -> Job:
        """The job already live under `asked.id`, which the enqueue left alone. If it finished
        between the two reads (or, holding a unique key, ended within its window), nothing is
        live to show, and `asked` stands for it."""
        envelope = self.broker.find_envelope(asked.queue, asked.id)
        if envelope is None:
            return asked
        try:
            return records.decode(envelope, asked.queue)
        except InvalidJob:  # a foreign envelope under our id: the worker will dead-letter it
            return asked

    # -- job control ---------------------------------------------------------------------------

    def cancel(self, job_id: str, *, queue: str | None = None) -> bool:
        """Cancel a job: True if it was queued, scheduled or running, and it ends `cancelled`
        (a running one is interrupted within a second, wherever it runs, and never retried);
        False for a finished or unknown job. InvalidJob for an id that cannot be a job's."""
        jobs.check_id(job_id)
        for name in self._queues_for(job_id, queue and jobs.check_queue(queue)):
            state, _ = self.broker.lookup(name, job_id)
            if state is None:
                continue
            scheduled = self.broker.find_scheduled(name, job_id) if state[:1] == b"s" else None
            job_type = records.peek_type(scheduled) if scheduled else None
            return self.broker.cancel(name, job_id, scheduled, job_type, self.config.results.keep)
        return False

    def pause(self, queue: str) -> bool:
        """Stop every worker taking jobs from `queue` (within a second; running jobs finish), until
        resume(queue). Workers started later honour it too. False if it was paused already."""
        return self.broker.set_paused(jobs.check_queue(queue), True)

    def resume(self, queue: str) -> bool:
        """Let workers take jobs from `queue` again. False if it was not paused."""
        return self.broker.set_paused(jobs.check_queue(queue), False)

    def paused(self, queue: str) -> bool:
        return queue in self.broker.paused([jobs.check_queue(queue)])

    # -- reading -------------------------------------------------------------------------------

    def status(self, job_id: str, *, queue: str | None = None) -> JobStatus | None:
        """The job's status, or None when no queue knows the id (or its record has expired).

        Through a failover it keeps asking for up to read_patience(config.redis) seconds
        (broker.retry), then raises RedisUnavailable.
        """
        return self._read(lambda: self._status(job_id, queue), self._patience)

    def _read(self, read: Callable[[], T], within: float) -> T:
        """read() (which must change nothing in Redis), tried again through a failover for up to
        `within` seconds."""
        return retry_read(read, lambda: renew(self._redis), within)

    def _status(self, job_id: str, queue: str | None) -> JobStatus | None:
        for name in self._queues_for(job_id, queue):
            state, done = self.broker.lookup(name, job_id)
            if state is not None:
                return records.decode_state(job_id, state, self.broker.server_time())
            if done is not None:
                return records.decode_done(job_id, done)
        return None

    def result(self, job_id: str, timeout: float | None = None, *, queue: str | None = None) -> Any:
        """Wait for the job to finish and return its handler's return value.

        Raises ResultTimeout when it has not finished within `timeout` seconds (None waits
        forever) and JobDead when it ended in the dead list (or was cancelled: reason
        "cancelled"). A failover during the wait is waited out until the timeout (with None,
        for read_patience at a time); Redis still unreachable then raises RedisUnavailable,
        since the job's state is unknown.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            within = self._patience if deadline is None else max(0.0, deadline - time.monotonic())
            st = self._read(lambda: self._status(job_id, queue), within)
            if st is not None and st.state == "succeeded":
                return st.result
            if st is not None and st.state == "dead":
                raise JobDead(job_id, st.reason or "unknown", st.last_error)
            if st is not None and st.state == "cancelled":   # it ends without a result, as a dead job does
                raise JobDead(job_id, "cancelled", st.last_error)
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeout(f"job {job_id} did not finish within {timeout} s "
                                    f"(state: {st.state if st else 'unknown'})")
            # A finished job leaves a record, not a message, so waiting means asking again;
            # the pause grows so a long wait costs Redis little.
            pause = min(pause * 2, 0.2)
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))

    def _queues_for(self, job_id: str, queue: str | None) -> list[str]:
        if queue:
            return [queue]
        named = jobs.queue_of_id(job_id)
        known = list(self.config.worker.queues) + [r.queue for r in self.config.routes.values()] + ["default"]
        return list(dict.fromkeys(([named] if named else []) + known))


def _placement(delay: float | timedelta | None, at: datetime | float | None, priority: str | None) -> Placement:
    if priority not in (None, *PRIORITIES):
        raise InvalidJob(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    if delay is not None and at is not None:
        raise InvalidJob("give delay or at, not both")
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None and delay > 0:
        return Placement("delay", float(delay))
    if at is not None:
        return Placement("at", at.timestamp() if isinstance(at, datetime) else float(at))
    return _HEAD if priority == "high" else _TAIL


def _non_negative(name: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidJob(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise InvalidJob(f"{name} must be a positive number of seconds, got {value!r}")
    return None if value is None else float(value)


def _meta(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A copy of the caller's meta (a later change to their dict must not change the job);
    records.encode checks its keys, values and size."""
    if meta is None:
        return jobs.NO_META
    if not isinstance(meta, Mapping):
        raise InvalidJob(f"meta must be a dict of JSON values, got {meta!r:.100}")
    return dict(meta)
