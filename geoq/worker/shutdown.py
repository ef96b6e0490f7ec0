"""The last step of a stop: whatever is still in this worker's processing lists goes back to its queue."""

from __future__ import annotations

import logging
from typing import Sequence

import gevent

from geoq import job as jobs
from geoq.broker.broker import Broker, Handback
from geoq.errors import BrokerError

log = logging.getLogger(__name__)

TRIES = 20


def hand_back_all(broker: Broker, worker_id: str, queues: Sequence[str]) -> int:
    """Return every unfinished job to the head of its ready list, keeping its order; the number moved.

    Runs after the pool is empty and every outcome is written, so all that is
    left in the processing lists is unfinished. Redis being away is waited out
    for a while; what still cannot go back stays listed for the reaper.
    """
    total = 0
    for queue in queues:
        for attempt in range(1, TRIES + 1):
            try:
                held = broker.processing(queue, worker_id)
                # LPUSHed one by one, newest first, so the oldest ends up at the head again.
                total += broker.handback(queue, worker_id, [_handback(queue, e) for e in reversed(held)])
                break
            except BrokerError as e:
                log.error("handing back the jobs of queue %s failed (try %d of %d): %s", queue, attempt, TRIES, e)
                gevent.sleep(min(0.1 * 2 ** attempt, 2.0))
    return total


def hand_back(broker: Broker, worker_id: str, queue: str, envelopes: list[bytes]) -> int:
    """Return these jobs, taken but never started, to the head of their queue in their order.

    On an error they stay in the processing list, for hand_back_all or the reaper.
    """
    try:
        return broker.handback(queue, worker_id, [_handback(queue, e) for e in reversed(envelopes)])
    except BrokerError as e:
        log.warning("could not hand back %d jobs of queue %s yet: %s", len(envelopes), queue, e)
        return 0


def _handback(queue: str, envelope: bytes) -> Handback:
    """A processing entry made ready to go back; a graceful handback does not count as a run."""
    try:
        job = jobs.decode(envelope, queue)
    except Exception:  # bytes that are not a job go back as they are; the next fetch dead-letters them
        return Handback(envelope, "", "")
    return Handback(envelope, job.id, jobs.encode_state("queued", job.attempt, None, job.last_error))
