"""The end of a stop: one deadline for all of it, and handing back whatever is still in this worker's lists.

A stop must end in bounded time whatever Redis does, or a service manager kills
the worker halfway. So it has one deadline, taken when the stop is asked for:
`shutdown_grace` for the running jobs, then whatever is left of
`redis.socket_timeout + 1 s` (less an allowance for the process's own exit) for
writing outcomes, handing back and deregistering. Every Redis step after the
grace runs under a gevent.Timeout of what is left, so a Redis that answers
nothing costs at most the one step that meets it; the later steps are skipped.

What cannot be handed back in time stays in the processing list, and the worker
stays registered, so that another worker's reaper returns those jobs once this
one's heartbeat has lapsed: nothing is lost, they are only late.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import gevent

from geoq import records
from geoq.broker.broker import Broker, Handback
from geoq.errors import BrokerError

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_ALLOWANCE = 0.5  # seconds of the last one kept for killing the loops, logging and the process's exit


class Deadline:
    """The end of one stop: `grace` seconds for running jobs, then `after` more for Redis work."""

    def __init__(self, grace: float, after: float, now: float | None = None) -> None:
        self.started = time.monotonic() if now is None else now
        self.grace_ends = self.started + grace
        self.at = self.grace_ends + max(0.0, after - EXIT_ALLOWANCE)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def grace_left(self) -> float:
        return max(0.0, self.grace_ends - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at


def within(deadline: Deadline, step: Callable[..., T], *args: object) -> T | None:
    """step(*args), cut short when the deadline passes; None if it was (or nothing was left),
    so a step whose result matters must not return None itself."""
    left = deadline.left()
    if left <= 0:
        return None
    timer = gevent.Timeout(left)
    timer.start()
    try:
        return step(*args)
    except gevent.Timeout as t:
        if t is not timer:  # a timeout of the step's own
            raise
        return None
    finally:
        timer.close()


@dataclass(frozen=True, slots=True)
class HandedBack:
    """What hand_back_all did: jobs moved, and the queues whose lists it could not empty."""

    moved: int
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopReport:
    """How a stop ended.

    left: jobs known to be still in this worker's processing lists (their queue's handback
    did not get through by the deadline); unwritten: how many of those had finished with an
    outcome that was not written (they run again: at-least-once); fetch_cut: a fetch was
    still in Redis at the deadline, or failed during the stop, so Redis may move jobs into the lists after the
    worker is gone. Unless the stop is clean, the worker stays registered and the reaper returns them.
    """

    handed_back: int = 0
    left: int = 0
    unwritten: int = 0
    fetch_cut: bool = False

    @property
    def clean(self) -> bool:
        return not (self.left or self.fetch_cut)


def log_stop(worker_id: str, report: StopReport, dead_after: float) -> None:
    """The one line that says how a stop ended."""
    if report.clean:
        log.info("worker %s stopped (%d unfinished jobs handed back)", worker_id, report.handed_back)
        return
    late = " (and any job a fetch cut short by the stop moves there)" if report.fetch_cut else ""
    log.error("worker %s stopped before Redis took everything: %d jobs handed back, %d jobs left in its "
              "processing lists for the reaper%s, which returns them once this worker has been silent for "
              "dead_after (%gs); %d of them finished but their outcomes were not written: they will run "
              "again; exit status 3", worker_id, report.handed_back, report.left, late, dead_after,
              report.unwritten)


def hand_back_all(broker: Broker, worker_id: str, queues: Sequence[str], deadline: Deadline) -> HandedBack:
    """Return every unfinished job to the head of its ready list, keeping its order.

    Runs after the pool is empty, so all that is left in the processing lists is
    unfinished (or finished with an outcome not written: it runs again). Redis
    errors are retried until the deadline; each try is cut short by it.
    """
    moved, failed = 0, []
    for queue in queues:
        n = _hand_back_queue(broker, worker_id, queue, deadline)
        if n is None:
            failed.append(queue)
        else:
            moved += n
    return HandedBack(moved, tuple(failed))


def _hand_back_queue(broker: Broker, worker_id: str, queue: str, deadline: Deadline) -> int | None:
    """The jobs of one queue handed back; None if the deadline came first."""
    pause, attempt = 0.1, 0
    while not deadline.passed():
        attempt += 1
        try:
            return within(deadline, _move_all, broker, worker_id, queue)
        except BrokerError as e:
            log.error("handing back the jobs of queue %s failed (try %d): %s", queue, attempt, e)
            gevent.sleep(min(pause, deadline.left()))
            pause = min(pause * 2, 2.0)
    return None


def _move_all(broker: Broker, worker_id: str, queue: str) -> int:
    held = broker.processing(queue, worker_id)
    # LPUSHed one by one, newest first, so the oldest ends up at the head again.
    return broker.handback(queue, worker_id, [_handback(queue, e) for e in reversed(held)])


def hand_back(broker: Broker, worker_id: str, queue: str, envelopes: list[bytes]) -> bool:
    """Return these jobs, taken but never started, to the head of their queue in their order; True if done.

    On an error they stay in the processing list, for hand_back_all or the reaper.
    """
    try:
        broker.handback(queue, worker_id, [_handback(queue, e) for e in reversed(envelopes)])
        return True
    except BrokerError as e:
        log.warning("could not hand back %d jobs of queue %s yet: %s", len(envelopes), queue, e)
        return False


def _handback(queue: str, envelope: bytes) -> Handback:
    """A processing entry made ready to go back; a graceful handback does not count as a run."""
    try:
        job = records.decode(envelope, queue)
    except Exception:  # bytes that are not a job go back as they are; the next fetch dead-letters them
        return Handback(envelope, "", "")
    return Handback(envelope, job.id, records.encode_state("queued", job.attempt, None, job.last_error))
