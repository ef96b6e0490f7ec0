"""Read-only views of queues for people and scrapers: how many jobs are in each place.

Nothing here moves a job, so nothing here needs to be atomic: each count is
one command, and the counts of one call are taken a round trip apart at most.
"""

from __future__ import annotations

from typing import Sequence

from geoq.broker import keys
from geoq.broker.broker import Broker
from geoq.broker.errors import redis_errors

PLACES = ("ready", "scheduled", "processing", "dead")


def queue_depths(broker: Broker, queues: Sequence[str]) -> dict[str, dict[str, int]]:
    """ready, scheduled, processing and dead counts per queue, in two pipelined round trips.

    The first takes the three per-queue counts and each queue's worker set; the
    second counts the processing lists of those workers. A script could do it in
    one, but only by building key names inside Lua, which Redis Cluster forbids.
    """
    pipe = broker.client.pipeline(transaction=False)
    for queue in queues:
        k = keys.queue_keys(queue)
        pipe.llen(k.ready)
        pipe.zcard(k.scheduled)
        pipe.zcard(k.dead)
        pipe.smembers(k.workers)
    with redis_errors("depths"):
        replies = pipe.execute()
    out: dict[str, dict[str, int]] = {}
    lists: list[tuple[str, str]] = []
    for i, queue in enumerate(queues):
        ready, scheduled, dead, workers = replies[4 * i:4 * i + 4]
        out[queue] = {"ready": int(ready), "scheduled": int(scheduled), "processing": 0, "dead": int(dead)}
        k = keys.queue_keys(queue)
        lists += [(queue, k.processing(_text(w))) for w in sorted(workers)]
    if lists:
        for (queue, _), n in zip(lists, _lengths(broker, [key for _, key in lists])):
            out[queue]["processing"] += int(n)
    return out


def _lengths(broker: Broker, list_keys: Sequence[str]) -> list[int]:
    pipe = broker.client.pipeline(transaction=False)
    for key in list_keys:
        pipe.llen(key)
    with redis_errors("depths"):
        return list(pipe.execute())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
