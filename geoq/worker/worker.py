"""Composes one worker process: fetcher, executor pool, settler, scheduler, heartbeat, reaper, shutdown."""

from __future__ import annotations

import functools
import logging
import random
from collections import Counter
from typing import Any, Callable, Sequence

import gevent
from gevent.event import Event

from geoq.broker.broker import Broker, Retention
from geoq.broker.clock import RedisClock
from geoq.broker.connection import connect
from geoq.broker.history import HistoryBroker
from geoq.broker.limits import LimitBroker
from geoq.broker.liveness import Registry
from geoq.config import Config, connection_split
from geoq.errors import BrokerError, RedisAuthError
from geoq.middleware import NO_EVENTS, Chain, WorkerInfo
from geoq.outage import Outage
from geoq.routing import Router
from geoq.ticker import Ticker
from geoq.worker.canceller import Canceller
from geoq.worker.executor import Executor, Prepared
from geoq.worker.fetcher import Fetcher
from geoq.worker.heartbeat import Heartbeat, new_worker_id
from geoq.worker.limiter import Limiter
from geoq.worker.recorder import Recorder
from geoq.worker.reaper import Reaper
from geoq.worker.runners import Runners
from geoq.worker.scheduler import Scheduler
from geoq.worker.settler import Settler
from geoq.worker.ticks import TickLoop
from geoq.worker.shutdown import (EXIT_ALLOWANCE, Deadline, StopReport, hand_back, hand_back_all, log_stop,
                                  within)

log = logging.getLogger(__name__)

STOPPED, FENCED, FAILED = "stopped", "fenced", "failed"
LAST_FLUSH = 2.0   # seconds at most for the job history's last flush at a stop


class Worker:
    """One gevent worker. run() returns STOPPED after a stop, FENCED if it was declared dead,
    FAILED if one of its loops raised; `report` then says whether the stop left jobs for the reaper."""

    def __init__(self, config: Config, router: Router, events: Chain = NO_EVENTS,
                 recorder: Recorder | None = None) -> None:
        w = config.worker
        self.config, self.router, self.events = config, router, events
        self.recorder = recorder   # counts runs as a middleware of `events`; this worker writes them
        self.queues: Sequence[str] = w.queues
        self.id = new_worker_id()
        split = connection_split(config)  # redis.max_connections shared among the process's pools
        self.redis = connect(config.redis, max_connections=split.main, name=f"geoq-worker:{self.id}")
        self.blocking = connect(config.redis, read_timeout=w.block_timeout + config.redis.socket_timeout,
                                max_connections=split.fetch, name=f"geoq-fetch:{self.id}")
        self.broker = Broker(self.redis)
        self.history = HistoryBroker(self.redis, self.broker.scripts)
        self.registry = Registry(self.redis, self.broker.scripts)
        self.clock = RedisClock()   # synced at registration and at every beat
        self.held: dict[str, Counter[bytes]] = {q: Counter() for q in self.queues}
        retention = Retention(config.results.keep, config.dead.max_jobs, config.dead.max_age)
        self.settler = Settler(self.broker, self.id, retention, capacity=w.concurrency + w.fetch_batch,
                               on_written=self._released, events=events)
        self.limiter = self._limiter(config, router, events)
        self.executor = Executor(router, self.settler.put, max_payload=w.max_payload, keep=config.results.keep,
                                 clock=self.clock.now, events=events,
                                 throttle=self.limiter.throttled if self.limiter is not None else None)
        run = self.executor.run if self.limiter is None else self.limiter.runner(self.executor.run)
        # Runners kept waiting: two fetches' worth, so a full batch starts without spawning.
        self.pool: Runners[Prepared] = Runners(w.concurrency, run, idle_kept=2 * w.fetch_batch)
        self.fetcher = Fetcher(self.broker, self.blocking, self.id, self.queues, w.weights, self.pool,
                               self._dispatch, batch=w.fetch_batch, block_timeout=w.block_timeout,
                               holding=self.held.__getitem__, events=events)
        self.scheduler = Scheduler(self.broker, self.queues, keep=config.results.keep, events=events)
        self.canceller = Canceller(self.broker, self.queues, lambda: bool(self.executor.running),
                                   self.executor.cancel, events=events)
        self.heartbeat = Heartbeat(config, self.registry, self.id, self.queues, in_flight=self.in_flight,
                                   on_fenced=self._fenced, clock=self.clock, events=events)
        self.reaper = Reaper(self.registry, self.id, self.queues, interval=w.heartbeat / 2,
                             grace=w.heartbeat + 1.0, max_deliveries=w.max_deliveries, retention=retention,
                             events=events)
        self.stop_requested = Event()
        self.hurry = Event()
        self.outcome = STOPPED
        self.report = StopReport()  # how the stop ended; a worker stopped before it took a job left nothing
        self.deadline = Deadline(0.0, 0.0)  # replaced when the stop is asked for
        self._loops: list[gevent.Greenlet] = []
        self._history_loop: gevent.Greenlet | None = None

    def in_flight(self) -> int:
        return len(self.pool)

    def _limiter(self, config: Config, router: Router, events: Chain) -> Limiter | None:
        """The fleet-wide limits' worker side, or None when no route has limits (nothing is paid then).
        Leases last dead_after plus one heartbeat and are renewed every heartbeat: a hub blocked
        for less than dead_after (which is never reaped) keeps its slots, and a dead worker's
        come back by the time the reaper returns its jobs (dead_after, a heartbeat and a second,
        then a pass)."""
        if not any(r is not None and r.limit is not None for r in map(router.get, router.types)):
            return None
        w = config.worker
        return Limiter(LimitBroker(self.redis, self.broker.scripts), self.id, self.settler.put,
                       lease_time=w.dead_after + w.heartbeat, renew_every=w.heartbeat, capacity=w.concurrency,
                       promote=self.broker.promote, events=events)


    @property
    def info(self) -> WorkerInfo:
        """This worker as middleware sees it."""
        return WorkerInfo(self.id, tuple(self.queues), self.pool.size or 0, self.clock.now, self.in_flight)

    # -- life cycle ----------------------------------------------------------------------------

    def run(self) -> str:
        if not self.start():
            return self.outcome  # stopped while still waiting for Redis: nothing taken, nothing to hand back
        self.stop_requested.wait()
        self.report = self.shutdown()
        return self.outcome

    def start(self) -> bool:
        """Start every loop once Redis answers; False if a stop came first."""
        if not self._wait_for_redis():
            return False
        self.heartbeat.register()
        self.events.worker_started(self.info)
        self._loops = [self._spawn_loop(loop) for loop in (self.settler.run, self.scheduler.run, self.reaper.run,
                                                           self.canceller.run)]
        if self.limiter is not None:
            self._loops += [self._spawn_loop(loop) for loop in (self.limiter.run_releases,
                                                                self.limiter.run_renewals, self.limiter.waker.run)]
        if self.config.schedules:
            self._loops.append(self._spawn_loop(self._tick_loop().run))
        if self.recorder is not None:
            self._history_loop = self._spawn_loop(self.recorder.run, self.history)
        beat = self.heartbeat.start()
        beat.link_exception(functools.partial(self._loop_failed, "Heartbeat.tick"))
        self._loops.append(beat)
        self._fetch_loop = self._spawn_loop(self.fetcher.run)
        log.info("worker %s started: queues %s, concurrency %d", self.id, ",".join(self.queues), self.pool.size)
        return True

    def _tick_loop(self) -> TickLoop:
        """The schedules' loop; built once the clock is synced (at registration), as ticks are
        judged from then on."""
        ticker = Ticker(self.broker, self.config.schedules, self.clock.now,
                        max_payload=self.config.worker.max_payload, prepare=self.events.before_enqueue)
        return TickLoop(ticker, self.events)

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: skip the rest of the grace (jobs still handed back)."""
        if self.stop_requested.is_set():
            log.warning("second stop signal: interrupting running jobs now")
            self.hurry.set()
        else:
            w = self.config.worker
            self.deadline = Deadline(w.shutdown_grace, self.config.redis.socket_timeout + 1.0)
            log.info("stopping: no new jobs; waiting up to %.0fs for %d running jobs", w.shutdown_grace,
                     len(self.pool))
            self.fetcher.stop()
            self.stop_requested.set()

    def signal_stop(self) -> None:
        """SIGTERM / SIGINT: an operator's stop always ends the process, fenced or not."""
        self.outcome = STOPPED
        self.request_stop()

    def _spawn_loop(self, run: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        loop = gevent.spawn(run, *args)
        loop.link_exception(functools.partial(self._loop_failed, run.__qualname__))
        return loop

    def _loop_failed(self, name: str, loop: gevent.Greenlet) -> None:
        """A loop raised: a bug in geoq. Without it the worker would run on, taking no jobs (the
        fetch loop) or writing no outcomes (the settler), so it stops as if told to: running jobs
        finish, the rest goes back, and it exits 1 for its service manager to start it again."""
        log.error("worker %s: its loop %s failed (%s: %s); stopping", self.id, name,
                  type(loop.exception).__name__, loop.exception)
        if not self.stop_requested.is_set():
            self.outcome = FAILED
        self.request_stop()

    def _fenced(self) -> None:
        log.error("worker %s was declared dead while it was stalled and its jobs went back to their queues; "
                  "finishing what it runs (their outcomes are discarded) and starting afresh", self.id)
        if not self.stop_requested.is_set():
            self.outcome = FENCED
        self.request_stop()

    def shutdown(self) -> StopReport:
        """Stop fetching, let running jobs finish within the grace, hand the rest back, deregister:
        all of it by the stop's deadline, whatever Redis does. What could not be handed back in
        time stays in the processing lists, and the registration with it, for the reaper."""
        deadline = self.deadline
        self.fetcher.stop()
        self._finish_running(deadline)
        self.events.worker_stopping(self.info)
        fetch_ended = self._end_fetching(deadline)
        if not self.settler.flush(timeout=deadline.left()):
            log.error("could not write every job outcome before the stop's deadline; those jobs will be "
                      "delivered again")
        if self.limiter is not None and not self.limiter.flush(timeout=deadline.left()):
            log.warning("could not give back every concurrency slot before the stop's deadline; they expire "
                        "within dead_after")
        back = hand_back_all(self.broker, self.id, self.queues, deadline)
        self._flush_history(deadline)
        self.heartbeat.stop()
        report = StopReport(back.moved, sum(sum(self.held[q].values()) for q in back.failed),
                            sum(self.settler.unwritten[q] for q in back.failed),
                            fetch_cut=not fetch_ended or self.fetcher.failed_at >= deadline.started)
        gevent.killall([*self._loops, self._fetch_loop, *self.fetcher.waiters()],
                       timeout=max(0.1, min(2.0, deadline.left())))
        if report.clean:
            if not self.heartbeat.ended(deadline.left()):
                log.warning("the heartbeat thread had not ended before deregistering; a beat under way may "
                            "list this worker again until a reaper removes it")
            self._deregister(deadline)
        if not self.heartbeat.join(timeout=deadline.left()):
            log.warning("the heartbeat thread had not ended by the stop's deadline")
        log_stop(self.id, report, self.config.worker.dead_after)
        return report

    def _flush_history(self, deadline: Deadline) -> None:
        """The history loop ends (a flush it had under way keeps its counts), then one last flush of
        at most LAST_FLUSH seconds: after the jobs are handed back, as counts matter less than jobs,
        and short, as deregistering still needs Redis before the stop's deadline."""
        if self.recorder is None or self._history_loop is None:
            return
        self._history_loop.kill(timeout=max(0.1, min(1.0, deadline.left())))
        last = Deadline(0.0, min(LAST_FLUSH, deadline.left()) + EXIT_ALLOWANCE)
        try:
            if not within(last, self.recorder.flush, self.history):
                log.warning("could not write the last job history counts: the stop's deadline came, or redis refused")
        except BrokerError as e:
            log.warning("could not write the last job history counts: %s", e)

    def _finish_running(self, deadline: Deadline) -> None:
        grace = gevent.spawn(self.pool.join, timeout=deadline.grace_left())
        gevent.wait([grace, self.hurry], count=1)
        if len(self.pool):
            log.warning("interrupting %d jobs still running; they go back to their queues", len(self.pool))
            self.pool.kill(timeout=max(0.1, min(5.0, deadline.left())))

    def _end_fetching(self, deadline: Deadline) -> bool:
        """Wait (until the deadline at most) for the fetches still in Redis; True if none is left."""
        self._fetch_loop.join(timeout=deadline.left())
        self.fetcher.join_waiters(timeout=deadline.left())
        return self._fetch_loop.dead and not self.fetcher.waiters()

    def _deregister(self, deadline: Deadline) -> None:
        try:
            if not within(deadline, self._deregister_now):
                log.error("could not deregister before the stop's deadline (the reaper will clean up)")
        except BrokerError as e:
            log.error("could not deregister (the reaper will clean up): %s", e)

    def _deregister_now(self) -> bool:
        self.registry.deregister(self.id, self.queues)
        return True

    # -- jobs ----------------------------------------------------------------------------------

    def _dispatch(self, queue: str, envelopes: list[bytes], strays: bool = False) -> None:
        self.held[queue].update(envelopes)
        if self.stop_requested.is_set():  # fetched while stopping: straight back to the queue
            gevent.spawn(self._return_unstarted, queue, envelopes)
            return
        prepared = [self.executor.prepare(queue, e) for e in envelopes]
        # fetch.lua marked every job running; a job with a history is marked again with its last
        # error, as is every stray (reconciliation found it in the list: its mark may be lost).
        self.settler.mark(queue, [self.executor.running_state(p) for p in prepared
                                  if p.route is not None and p.job is not None and (strays or p.job.history)])
        if self.limiter is not None:  # jobs held back by a limit go back to wait, without a pool slot
            prepared = self.limiter.admit(queue, prepared, self.executor.reject)
        for p in prepared:
            self.pool.spawn(p)

    def _return_unstarted(self, queue: str, envelopes: list[bytes]) -> None:
        if hand_back(self.broker, self.id, queue, envelopes):
            self._released([(queue, e) for e in envelopes])

    def _released(self, written: Sequence[tuple[str, bytes]]) -> None:
        """These outcomes are written: their envelopes are no longer held here."""
        for queue, envelope in written:  # dict's own get and pop: Counter's are Python, and this runs per job
            held = self.held[queue]
            left = held.get(envelope, 0) - 1
            if left > 0:
                held[envelope] = left
            else:
                held.pop(envelope, None)

    def _wait_for_redis(self) -> bool:
        """True once Redis answers; False if a stop is asked for first (a service manager
        stopping a worker that never reached Redis must not have to kill it)."""
        pause, outage = 0.2, Outage(log.log, "waiting for redis: %s", "redis is reachable again")
        while not self.stop_requested.is_set():
            try:
                self.broker.ping()
                self.broker.load_scripts()
                outage.recovered()
                return True
            except RedisAuthError:
                raise
            except BrokerError as e:
                outage.failed(e)
                self.stop_requested.wait(pause * (0.5 + random.random()))
                pause = min(pause * 2, 5.0)
        return False
