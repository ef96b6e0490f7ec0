"""Read-only views of queues for people and scrapers: how many jobs are in each place.

Nothing here moves a job, so nothing here needs to be atomic: each count is
one command, and the counts of one call are taken a round trip apart at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import redis

from geoq.broker import keys, replies
from geoq.broker.broker import Broker
from geoq.broker.errors import redis_errors

PLACES = ("ready", "scheduled", "processing", "dead")


@dataclass(frozen=True, slots=True)
class Depth:
    queue: str
    ready: int
    scheduled: int
    processing: int
    dead: int
    dead_trimmed: int   # dead records the set's bounds have dropped (0 until a trim counts one)
    paused: bool = False   # workers take none of its jobs (Client.pause)


def read_depths(client: "redis.Redis", queues: Sequence[str], op: str,
                holders: Mapping[str, Sequence[str]] | None = None) -> list[Depth]:
    """The counts of every place of each queue.

    `holders` names, per queue, the workers whose processing lists count (the admin
    CLI finds them by SCAN, so lists of workers no set remembers count too): one
    round trip. Without it, each queue's worker set names them, read in the first
    round trip and counted in a second. A script could do that in one, but only by
    building key names inside Lua, which Redis Cluster forbids.
    """
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        k = keys.queue_keys(queue)
        pipe.llen(k.ready)
        pipe.zcard(k.scheduled)
        pipe.zcard(k.dead)
        pipe.get(k.dead_trimmed)
        pipe.exists(k.paused)
        if holders is None:
            pipe.smembers(k.workers)
        else:
            for worker_id in holders.get(queue, ()):
                pipe.llen(k.processing(worker_id))
    with redis_errors(op):
        answers = iter(pipe.execute())
    counts: dict[str, list[Any]] = {}
    held: dict[str, int] = {}
    named: list[tuple[str, str]] = []   # (queue, worker id) of lists still to count
    for queue in queues:
        counts[queue] = [next(answers) for _ in range(5)]
        if holders is None:
            named += [(queue, replies.text(w)) for w in sorted(next(answers))]
            held[queue] = 0
        else:
            held[queue] = sum(int(next(answers)) for _ in holders.get(queue, ()))
    if named:
        pipe = client.pipeline(transaction=False)
        for queue, worker_id in named:
            pipe.llen(keys.queue_keys(queue).processing(worker_id))
        with redis_errors(op):
            for (queue, _), n in zip(named, pipe.execute()):
                held[queue] += int(n)
    return [Depth(queue, int(ready), int(scheduled), held[queue], int(dead), int(trimmed or 0), bool(paused))
            for queue, (ready, scheduled, dead, trimmed, paused) in counts.items()]


def queue_depths(broker: Broker, queues: Sequence[str]) -> dict[str, dict[str, int]]:
    """ready, scheduled, processing and dead counts per queue (the workers' sets name the
    processing lists), in two pipelined round trips: what a scrape reports."""
    return {d.queue: {place: getattr(d, place) for place in PLACES}
            for d in read_depths(broker.client, queues, "depths")}
