"""Composes one worker process: fetcher, executor pool, settler, scheduler, heartbeat, shutdown."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import gevent
from gevent.event import Event
from gevent.pool import Pool

from geoq import job as jobs
from geoq.broker.broker import Broker, Handback, Retention
from geoq.broker.connection import connect
from geoq.config import Config
from geoq.errors import BrokerError, RedisAuthError
from geoq.routing import Router
from geoq.worker.executor import Executor
from geoq.worker.fetcher import Fetcher
from geoq.worker.heartbeat import Heartbeat, new_worker_id
from geoq.worker.scheduler import Scheduler
from geoq.worker.settler import Settler

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hooks:
    """Where the worker reports what it does (metrics); every hook may be left out."""

    on_redis_error: Callable[[str], None] | None = None
    on_batch: Callable[[int], None] | None = None
    on_outcome: Callable[..., None] | None = None
    on_fenced: Callable[[int], None] | None = None


class Worker:
    """One gevent worker process. run() returns after a graceful stop."""

    def __init__(self, config: Config, router: Router, hooks: Hooks = Hooks()) -> None:
        w = config.worker
        self.config, self.router, self.hooks = config, router, hooks
        self.queues: Sequence[str] = w.queues
        self.id = new_worker_id()
        self.redis = connect(config.redis, max_connections=16, name=f"geoq-worker:{self.id}")
        self.blocking = connect(config.redis, read_timeout=w.block_timeout + config.redis.socket_timeout,
                                max_connections=len(self.queues) + 2, name=f"geoq-fetch:{self.id}")
        self.broker = Broker(self.redis)
        self.pool = Pool(w.concurrency)
        retention = Retention(config.results.keep, config.dead.max_jobs, config.dead.max_age)
        self.settler = Settler(self.broker, self.id, retention, capacity=w.concurrency + w.fetch_batch,
                               on_error=hooks.on_redis_error, on_fenced=hooks.on_fenced)
        self.executor = Executor(router, self.settler.put, max_payload=w.max_payload, keep=config.results.keep,
                                 observe=hooks.on_outcome)
        self.fetcher = Fetcher(self.broker, self.blocking, self.id, self.queues, w.weights, self.pool,
                               self._dispatch, batch=w.fetch_batch, block_timeout=w.block_timeout,
                               on_error=hooks.on_redis_error, on_batch=hooks.on_batch)
        self.scheduler = Scheduler(self.broker, self.queues, on_error=hooks.on_redis_error)
        self.heartbeat = Heartbeat(self.broker, self.id, self.queues, w.concurrency, interval=w.heartbeat,
                                   dead_after=w.dead_after, in_flight=self.in_flight,
                                   on_error=hooks.on_redis_error)
        self.stop_requested = Event()
        self.hurry = Event()
        self._loops: list[gevent.Greenlet] = []

    def in_flight(self) -> int:
        return len(self.pool)

    # -- life cycle ----------------------------------------------------------------------------

    def run(self) -> None:
        self.start()
        self.stop_requested.wait()
        self.shutdown()

    def start(self) -> None:
        self._wait_for_redis()
        self.heartbeat.register()
        self._loops = [gevent.spawn(loop) for loop in (self.settler.run, self.scheduler.run, self.heartbeat.run)]
        self._fetch_loop = gevent.spawn(self.fetcher.run)
        log.info("worker %s started: queues %s, concurrency %d", self.id, ",".join(self.queues), self.pool.size)

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: skip the rest of the grace (jobs still handed back)."""
        if self.stop_requested.is_set():
            log.warning("second stop signal: interrupting running jobs now")
            self.hurry.set()
        else:
            log.info("stopping: no new jobs; waiting up to %.0fs for %d running jobs",
                     self.config.worker.shutdown_grace, len(self.pool))
            self.stop_requested.set()

    def shutdown(self) -> None:
        self.fetcher.stop()
        self._fetch_loop.join(timeout=self.config.worker.block_timeout + self.config.redis.socket_timeout + 1)
        self.fetcher.join_waiters(timeout=self.config.worker.block_timeout + 1)
        self._finish_running()
        if not self.settler.flush(timeout=self.config.worker.shutdown_grace + 30):
            log.error("could not write every job outcome before exiting; those jobs will be delivered again")
        handed = self._hand_back_all()
        gevent.killall(self._loops, timeout=2)
        try:
            self.heartbeat.deregister()
        except BrokerError as e:
            log.error("could not deregister: %s", e)
        log.info("worker %s stopped (%d unfinished jobs handed back)", self.id, handed)

    def _finish_running(self) -> None:
        grace = gevent.spawn(self.pool.join, timeout=self.config.worker.shutdown_grace)
        gevent.wait([grace, self.hurry], count=1)
        if len(self.pool):
            log.warning("interrupting %d jobs still running; they go back to their queues", len(self.pool))
            self.pool.kill(timeout=5)

    def _hand_back_all(self) -> int:
        """Return everything still in this worker's processing lists to the head of its queues."""
        total = 0
        for queue in self.queues:
            for attempt in range(20):
                try:
                    held = self.broker.processing(queue, self.id)
                    total += self.broker.handback(queue, self.id, [_handback(queue, e) for e in reversed(held)])
                    break
                except BrokerError as e:
                    log.error("handback of %s failed (try %d): %s", queue, attempt + 1, e)
                    gevent.sleep(0.5)
        return total

    # -- jobs ----------------------------------------------------------------------------------

    def _dispatch(self, queue: str, envelopes: list[bytes]) -> None:
        if self.stop_requested.is_set():
            return  # fetched while stopping: left in the processing list, handed back at the end
        prepared = [self.executor.prepare(queue, e) for e in envelopes]
        self.settler.mark(queue, [self.executor.running_state(p) for p in prepared if p.route is not None])
        for p in prepared:
            self.pool.spawn(self.executor.run, p)

    def _wait_for_redis(self) -> None:
        pause, said = 0.2, False
        while True:
            try:
                self.broker.ping()
                self.broker.load_scripts()
                if said:
                    log.warning("redis is reachable again")
                return
            except RedisAuthError:
                raise
            except BrokerError as e:
                if not said:
                    log.error("waiting for redis: %s", e)
                    said = True
                gevent.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 5.0)


def _handback(queue: str, envelope: bytes) -> Handback:
    """A processing entry made ready to go back; its state says queued with the runs it really made."""
    try:
        job = jobs.decode(envelope, queue)
    except Exception:  # bytes that are not a job go back as they are; the next run dead-letters them
        return Handback(envelope, "", "")
    return Handback(envelope, job.id, jobs.encode_state("queued", job.attempt, None, job.last_error))
