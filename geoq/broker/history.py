"""The Redis side of the job history: add a flush (scripts/history.lua), read queue-hours back.

Two keys per queue and hour, under the queue's hash tag (keys.QueueKeys.history and
history_types); the layout is geoq.history's. No policy here: when to flush and what a
window means are the recorder's (geoq.worker.recorder) and the admin's (geoq.admin.history).
"""

from __future__ import annotations

from typing import Any, Sequence

import redis

from geoq import history
from geoq.broker import keys, replies
from geoq.broker.broker import shared_scripts
from geoq.broker.errors import redis_errors
from geoq.broker.scripts import Call, Scripts, run

HOUR = 3600


def add_call(block: history.HourBlock, keep: float) -> Call:
    """The history.lua call adding one queue-hour's share of a flush."""
    k = keys.queue_keys(block.queue)
    args: list[Any] = [int(keep) + HOUR, history.TYPE_CAP, history.OTHER, len(block.slots)]
    for minute, delta in block.slots.items():
        args += [minute, delta]
    for name, delta in block.types.items():
        args += [name, delta]
    return Call("history", (k.history(block.hour), k.history_types(block.hour)), args)


class HistoryBroker:
    """History reads and writes; `client` is a redis.Redis (or cluster client) from connection.connect."""

    def __init__(self, client: "redis.Redis", scripts: Scripts | None = None) -> None:
        self.client, self.scripts = client, scripts or shared_scripts()

    def add(self, blocks: Sequence[history.HourBlock], keep: float) -> list[bool]:
        """Add every block in one round trip; whether each was added (Redis may refuse one, under
        maxmemory, and run the others). Raises BrokerError when the round trip itself failed.
        Keys live `keep` seconds (plus the hour they cover) after their last flush."""
        with redis_errors("history"):
            done = run(self.client, self.scripts, [add_call(b, keep) for b in blocks], raise_errors=False)
        return [not isinstance(reply, Exception) for reply in done]

    def read(self, queue: str, hours: Sequence[int]) -> list[tuple[bytes | None, dict[str, bytes]]]:
        """Each hour's slot string (None when absent) and type hash, in one round trip."""
        k = keys.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        for hour in hours:
            pipe.get(k.history(hour))
            pipe.hgetall(k.history_types(hour))
        with redis_errors("history"):
            got = pipe.execute()
        return [(got[i], {replies.text(name): value for name, value in got[i + 1].items()})
                for i in range(0, len(got), 2)]
