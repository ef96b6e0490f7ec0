"""Claims the due ticks of the config's schedules, each tick once across every worker.

No leader: every worker (and the test harness) runs a Ticker, and tick.lua lets exactly one
claim of a tick through, storing its job in the same step. A tick's job id is derived from
the schedule and the tick, so the job is traceable to them (``QUEUE:sched:NAME:TICK``).

Which tick a Ticker claims, at time `now` (Redis's clock, or the harness's):
- the latest tick at or before `now`, if it fell while this Ticker was running: ticks are
  claimed as they come, even late (a pass delayed by a busy worker still claims its tick);
- at start, the latest tick before it (one the fleet may have missed while no worker ran) only
  if it is younger than the schedule's catch_up; tick.lua refuses it if it was claimed
  already, so restarting workers never repeats a tick.
When several ticks passed between two passes (the whole fleet stalled), only the latest runs.

Gevent-free, so the harness can run it in an unpatched test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from geoq import records
from geoq.broker.broker import Broker
from geoq.config import ScheduleConfig
from geoq.errors import BrokerError, GeoqError
from geoq.job import Job

log = logging.getLogger(__name__)

Prepare = Callable[[Job], Job]   # the middleware's before_enqueue


def _unchanged(job: Job) -> Job:
    return job


@dataclass(frozen=True, slots=True)
class Claim:
    """A tick this Ticker tried to claim, and whether it was the one that did."""

    schedule: str
    tick: float
    job_id: str
    claimed: bool


def tick_job_id(schedule: ScheduleConfig, tick: float) -> str:
    """The id of a tick's job: its queue first (so status() finds it), then schedule and tick
    (unix seconds, to the millisecond, without trailing zeros: 1800000000, 1800000000.5)."""
    assert schedule.queue is not None  # the loader fills in the route's queue
    return f"{schedule.queue}:sched:{schedule.name}:{f'{tick:.3f}'.rstrip('0').rstrip('.')}"


class Ticker:
    """Claims due ticks. `clock` gives the time ticks are judged by; `started_at` is when this
    Ticker began watching (ticks after it are its own to claim, older ones are catch-up)."""

    def __init__(self, broker: Broker, schedules: Mapping[str, ScheduleConfig], clock: Callable[[], float], *,
                 max_payload: int, prepare: Prepare = _unchanged, started_at: float | None = None) -> None:
        self.broker, self.schedules, self.clock = broker, dict(schedules), clock
        self.max_payload, self.prepare = max_payload, prepare
        self.started_at = clock() if started_at is None else started_at
        self.done: dict[str, float] = {}   # schedule -> the latest tick this Ticker has seen claimed

    def due(self, now: float) -> list[tuple[ScheduleConfig, float]]:
        """The (schedule, tick) pairs to try at `now`. Pure."""
        out = []
        for name, schedule in self.schedules.items():
            tick = schedule.timing.latest_at_or_before(now)
            if tick <= self.done.get(name, float("-inf")):
                continue
            if tick >= self.started_at or now - tick <= schedule.catch_up:
                out.append((schedule, tick))
        return out

    def run_due(self) -> list[Claim]:
        """Try every due tick now; a tick tried is not tried again by this Ticker (whoever got it),
        unless Redis failed (BrokerError): then the next pass tries it again. A tick whose job
        cannot be built (over max_payload, a middleware's error) raises once and is left."""
        now = self.clock()
        claims = []
        for schedule, tick in self.due(now):
            try:
                claims.append(self._claim(schedule, tick, now))
            except BrokerError:
                raise
            except GeoqError:
                self.done[schedule.name] = tick
                raise
            self.done[schedule.name] = tick
        return claims

    def next_at(self, now: float) -> float:
        """The earliest next tick of any schedule after `now` (inf without schedules)."""
        return min((s.timing.next_after(now) for s in self.schedules.values()), default=float("inf"))

    def _claim(self, schedule: ScheduleConfig, tick: float, now: float) -> Claim:
        job = self.job(schedule, tick_job_id(schedule, tick), now)
        envelope = records.encode(job, self.max_payload)
        claimed = self.broker.claim_tick(job.queue, schedule.name, tick, job.id, records.encode_state("queued", 0),
                                         envelope)
        if claimed:
            log.info("schedule %s: enqueued job %s of type %s on queue %s for its tick at %.3f",
                     schedule.name, job.id, job.type, job.queue, tick)
        return Claim(schedule.name, tick, job.id, claimed)

    def job(self, schedule: ScheduleConfig, job_id: str, now: float) -> Job:
        """The job a schedule enqueues, as its producer's middleware would have it."""
        assert schedule.queue is not None
        job = Job(id=job_id, type=schedule.type, queue=schedule.queue, payload=schedule.payload,
                  enqueued_at=round(now, 3))
        return self.prepare(job)


def last_runs(broker: Broker, schedules: Sequence[ScheduleConfig]) -> list[float | None]:
    """The last tick claimed of each schedule (None where none is known), in one round trip."""
    return broker.last_ticks([(s.queue or "default", s.name) for s in schedules])
