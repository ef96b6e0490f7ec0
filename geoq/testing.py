"""Test your handlers as a worker would run them, in your test's own process, on a clock you move.

    from geoq.testing import Harness

    def test_report():
        with Harness("config/dev.yaml") as h:      # a private redis-server, or GEOQ_TEST_REDIS_URL
            job = h.client.enqueue("report.build", {"id": 7}, delay=3600)
            h.advance(3600)                        # delays, retry backoff and schedules follow this clock
            h.drain()                              # run every due job until none is due
            assert h.client.status(job.id).state == "succeeded"

What is real: Redis (a redis-server started for the harness, or the database
GEOQ_TEST_REDIS_URL names, which the harness empties when it starts), the Lua scripts
every move goes through, the routes and handlers of your config, its middleware, and the
rules that decide retries, backoff, deaths and stored results (geoq.runs, geoq.outcome,
shared with the worker). Schedules tick as in a worker (geoq.ticker), on the harness clock.

What differs from a worker, and why:
- The clock. It stands still until `advance` moves it. Every time geoq stores or compares
  is taken from it: enqueue times, `delay=` (sent to Redis as an absolute due time), retry
  delays and promotion (both scripts take the harness's time instead of Redis's TIME),
  history and death times, and schedule ticks. What Redis alone times (the TTL of results
  and the dead list's max_age) keeps real time.
- Timeouts. Without gevent nothing can interrupt a running handler, so each run is a
  thread that `drain` waits on for the job's timeout; one still running then makes drain
  raise `StillRunning` (a JobTimeout) rather than count a failure a worker would count.
  The thread is left to end by itself: Python cannot kill a thread.
- One job at a time, in queue priority order, each to its end before the next.
No gevent: `import geoq.testing` imports none and patches nothing (handlers that import
gevent themselves still run, unpatched).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Sequence

import redis

from geoq import plugins, tracebacks
from geoq.broker.broker import Ack, Broker, Bury, Placement, Retention, RetryLater, Settlement
from geoq.broker.clock import RedisClock
from geoq.client import Client
from geoq.config import Config, RedisConfig, load_config
from geoq.errors import GeoqError, JobTimeout
from geoq.job import Job
from geoq.middleware import Chain, Middleware
from geoq.routing import Route, build_router
from geoq.runs import Judge, Prepared, unreadable
from geoq.ticker import Ticker

__all__ = ["Harness", "HarnessError", "StillRunning"]

URL_VARIABLE = "GEOQ_TEST_REDIS_URL"
MOST_RUNS = 100_000      # runs one drain makes before it decides jobs keep making jobs
MOST_TICKS = 100_000     # schedule ticks one advance walks through
_START_WAIT = 10.0       # seconds a private redis-server gets to accept connections


class HarnessError(GeoqError):
    """The harness cannot do what was asked: no redis-server, a drain that never ends."""


class StillRunning(JobTimeout):
    """A handler was still running at the end of its job's timeout (see the module's docstring)."""

    def __init__(self, job: Job, seconds: float) -> None:
        super().__init__(seconds)
        self.args = (f"job {job.id} of type {job.type} was still running after its timeout of {seconds:g}s; "
                     f"without gevent the harness cannot interrupt it, so drain stops here",)
        self.job = job


class FrozenClock(RedisClock):
    """Time that moves only when told: what Client, Judge and Ticker read as Redis's time."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def now(self) -> float:
        return self.at

    def stale(self, max_age: float) -> bool:
        return False

    def sync(self, client: "redis.Redis") -> None:
        """Nothing to measure: this clock is not Redis's."""


class _Broker(Broker):
    """Redis's time, as status() compares due times with, is the harness's."""

    def __init__(self, client: "redis.Redis", clock: FrozenClock) -> None:
        super().__init__(client)
        self.frozen = clock

    def server_time(self) -> float:
        return self.frozen.now()


class _Client(Client):
    """A Client on the harness clock: a delay becomes an absolute due time of that clock, since
    enqueue.lua would add a delay to Redis's own TIME."""

    def _request(self, *args: Any, **kwargs: Any) -> Any:
        request = super()._request(*args, **kwargs)
        if request.placement.where == "delay":
            request = request._replace(placement=Placement("at", request.job.due_at))
        return request


class RedisServer:
    """A redis-server of the harness's own on a Unix socket in a temporary directory, nothing saved."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise HarnessError(f"geoq.testing needs redis-server on PATH (or {URL_VARIABLE} naming a Redis "
                               f"database it may empty)")
        self.dir = tempfile.mkdtemp(prefix="geoq-harness-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self._wait()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _wait(self) -> None:
        deadline = time.monotonic() + _START_WAIT
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with redis.Redis(unix_socket_path=self.socket) as client:
                    client.ping()
                return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.005)   # a child process starting up: no event to wait on
        self.stop()
        raise HarnessError(f"redis-server did not start within {_START_WAIT:g}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Harness:
    """A worker's rules in the test's process: `client`, `advance(seconds)`, `drain()`, `now`.

    `config` is a config file (its Redis settings are replaced by the harness's Redis), or a
    Config. `start` sets the clock (unix seconds or an aware datetime; default: Redis's time
    when the harness starts). `middleware` is added after the config's own, for producer
    and runs alike.
    """

    def __init__(self, config: str | os.PathLike[str] | Config, *, start: float | datetime | None = None,
                 middleware: Sequence[Middleware] = ()) -> None:
        self.source = config
        self.start = start.timestamp() if isinstance(start, datetime) else start
        self.extra = list(middleware)
        self.server: RedisServer | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> "Harness":
        config = self.source if isinstance(self.source, Config) else load_config(self.source)
        url = os.environ.get(URL_VARIABLE) or None
        if url is None:
            self.server = RedisServer()
            url = self.server.url
        try:
            self._open(dataclasses.replace(config, redis=RedisConfig(url=url)))
        except BaseException:
            self._stop_server()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self._stop_server()

    def _open(self, config: Config) -> None:
        self.config = config
        middleware = [*plugins.middleware(config), *self.extra]
        self.events = Chain(middleware)
        self.client = _Client(config=config, middleware=middleware)
        self.client.broker.client.flushdb()   # a private server is empty; GEOQ_TEST_REDIS_URL's db is emptied
        at = self.client.broker.server_time() if self.start is None else self.start
        self.clock = FrozenClock(round(at, 3))
        self.client.clock = self.clock
        self.broker = _Broker(self.client.broker.client, self.clock)
        self.client.broker = self.broker
        self.judge = Judge(build_router(config), max_payload=config.worker.max_payload, keep=config.results.keep,
                           clock=self.clock.now)
        self.ticker = Ticker(self.broker, config.schedules, self.clock.now, max_payload=config.worker.max_payload,
                             prepare=self.events.before_enqueue)
        self.retention = Retention(config.results.keep, config.dead.max_jobs, config.dead.max_age)
        self.queues = _queues(config)
        self.worker_id = f"harness-{os.getpid()}"

    def _stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- the clock -------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The harness's time, unix seconds."""
        return self.clock.now()

    def advance(self, seconds: float | timedelta) -> None:
        """Move the clock forward. Schedules tick on the way, as a running worker's would (each tick
        enqueues its job); delayed and retrying jobs become due. Nothing runs until `drain`."""
        step = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if step < 0:
            raise ValueError(f"the harness clock only moves forward, got {step:g}s")
        target = self.now + step
        for _ in range(MOST_TICKS):
            tick = self.ticker.next_at(self.now)
            if tick > target:
                self.clock.at = target
                return
            self.clock.at = tick
            self.ticker.run_due()
        raise HarnessError(f"advance({step:g}) passes more than {MOST_TICKS} schedule ticks; advance in smaller steps")

    # -- running jobs ------------------------------------------------------------------------------

    def drain(self) -> int:
        """Run every due job, one at a time, until none is due (jobs their runs make and retries that
        fall due by now included); the number of runs. Raises StillRunning for a run past its timeout."""
        runs = 0
        while runs < MOST_RUNS:
            fetched = self._next_due()
            if fetched is None:
                return runs
            self._run(self.judge.prepare(*fetched))
            runs += 1
        raise HarnessError(f"drain made {MOST_RUNS} runs and jobs are still due: do jobs keep enqueuing jobs?")

    def _next_due(self) -> tuple[str, bytes] | None:
        """One due job moved into the harness's processing list, in queue priority order; None if none."""
        self.ticker.run_due()
        for queue in self.queues:
            while sum(self._promote(queue)) >= 1000:
                pass
            taken = self.broker.fetch(self.broker.client, queue, self.worker_id, 1, None)
            if taken:
                return queue, taken[0]
        return None

    def _promote(self, queue: str) -> tuple[int, int]:
        """Promote as a worker's scheduler does (a job expired by now dies `expired`, with its done
        record and counted dead); (jobs moved, jobs expired)."""
        promotion = self.broker.promote_due(queue, 1000, self.retention.keep, now=self.now)
        for _, job_type, _ in promotion.expired:
            self.events.buried(queue, job_type)
        return promotion.moved, len(promotion.expired)

    def _run(self, p: Prepared) -> None:
        if p.burial is not None:
            assert p.verdict is not None
            self._settle(p.queue, p.burial)
            self.events.after_run(p.job or unreadable(p), p.verdict)
            return
        assert p.job is not None and p.route is not None
        started = time.monotonic()
        error, result = self._call(p.job, p.route)
        trace = None if error is None else tracebacks.format_failure(error, skip=("geoq.testing",))
        outcome, done = self.judge.judge(p.job, p.route, error, result, time.monotonic() - started, trace)
        self._settle(p.queue, self.judge.settlement(p, p.job, outcome, done))
        self.events.after_run(p.job, outcome)

    def _call(self, job: Job, route: Route) -> tuple[BaseException | None, Any]:
        """The handler's result or exception, its run in a thread waited on for the job's timeout."""
        ended: list[tuple[BaseException | None, Any]] = []

        def run() -> None:
            try:
                self.events.before_run(job)
                ended.append((None, route.handler(job)))
            except BaseException as e:  # re-raised below in the test's thread if not an Exception
                ended.append((e, None))

        seconds = job.timeout or route.timeout
        thread = threading.Thread(target=run, name=f"geoq-job-{job.id}", daemon=True)
        thread.start()
        thread.join(seconds)
        if not ended:
            raise StillRunning(job, seconds)
        error, result = ended[0]
        if error is not None and not isinstance(error, Exception):
            raise error   # KeyboardInterrupt, SystemExit: not the job's failure
        return error, result

    def _settle(self, queue: str, item: Ack | RetryLater | Bury) -> None:
        if isinstance(item, Ack):
            settlement = Settlement(queue, acks=[item])
        elif isinstance(item, RetryLater):
            settlement = Settlement(queue, retries=[item])
        else:
            settlement = Settlement(queue, burials=[item])
        result = self.broker.settle(self.worker_id, [settlement], self.retention, now=self.now)
        if result.refused or result.fenced:
            raise HarnessError(f"Redis did not take the outcome of a job of queue {queue}: {result.error}")


def _queues(config: Config) -> list[str]:
    """The worker's queues in priority order, then every other queue a route or schedule names."""
    named = [r.queue for r in config.routes.values()] + [s.queue or "default" for s in config.schedules.values()]
    return list(dict.fromkeys([*config.worker.queues, *named]))

