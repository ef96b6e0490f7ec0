"""Worker registry, heartbeats, the reaper's lock and the reap move.

Liveness is a key with a TTL that only the worker refreshes, so it is judged by
Redis's clock alone. The refresh is PEXPIRE, which Redis accepts even at
maxmemory, so a worker keeps proving it is alive while Redis refuses writes.
"""

from __future__ import annotations

from typing import Sequence

import redis

from geoq.broker import keys, replies
from geoq.broker.broker import Retention
from geoq.broker.errors import redis_errors, translate
from geoq.broker.scripts import Call, Scripts, run
from geoq.job import peek_id

REAPER_LOCK = f"{keys.PREFIX}:reaper"


class Registry:
    """The broker moves that concern workers rather than jobs."""

    def __init__(self, client: "redis.Redis", scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def register(self, worker_id: str, info: str, queues: Sequence[str], ttl: float) -> None:
        """Announce a worker: its description, its first heartbeat, and its queues (for reapers)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.WORKERS, worker_id, info)
        pipe.set(keys.heartbeat(worker_id), "1", px=_ms(ttl))
        for queue in queues:
            pipe.sadd(keys.queue_keys(queue).workers, worker_id)
        with redis_errors("register"):
            pipe.execute()

    def beat(self, worker_id: str, ttl: float, info: str | None = None) -> bool:
        """Refresh the heartbeat; False when the worker's registration is gone (it was reaped).

        The description update is best effort: at maxmemory it is refused while the
        PEXPIRE that proves liveness still goes through.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.pexpire(keys.heartbeat(worker_id), _ms(ttl))
        pipe.hexists(keys.WORKERS, worker_id)
        if info is not None:
            pipe.hset(keys.WORKERS, worker_id, info)
        with redis_errors("heartbeat"):
            refreshed, registered, *_ = pipe.execute(raise_on_error=False)
        for reply in (refreshed, registered):
            if isinstance(reply, redis.RedisError):
                raise translate(reply, "heartbeat")
        if not registered:
            return False
        if not refreshed:  # expired while Redis was away or the hub was slow: prove liveness again
            with redis_errors("heartbeat"):
                self.client.set(keys.heartbeat(worker_id), "1", px=_ms(ttl))
        return True

    def deregister(self, worker_id: str, queues: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(keys.WORKERS, worker_id)
        pipe.delete(keys.heartbeat(worker_id))
        for queue in queues:
            pipe.srem(keys.queue_keys(queue).workers, worker_id)
        with redis_errors("deregister"):
            pipe.execute()

    def members(self, queue: str) -> set[str]:
        """Workers that may hold a processing list of this queue."""
        with redis_errors("reaper"):
            members = self.client.smembers(keys.queue_keys(queue).workers)
        return {replies.text(m) for m in members}

    def silent(self, worker_ids: Sequence[str]) -> list[str]:
        """The workers among these whose heartbeat key has expired."""
        if not worker_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.exists(keys.heartbeat(worker_id))
        with redis_errors("reaper"):
            alive = pipe.execute()
        return [w for w, a in zip(worker_ids, alive) if not a]

    def try_lock(self, worker_id: str, ttl: float) -> bool:
        """Take or keep the reaper lock, so one reaper acts at a time (reaping twice is harmless anyway)."""
        with redis_errors("reaper"):
            if self.client.set(REAPER_LOCK, worker_id, nx=True, px=_ms(ttl)):
                return True
            holder = self.client.get(REAPER_LOCK)
            if holder is not None and replies.text(holder) == worker_id:
                self.client.pexpire(REAPER_LOCK, _ms(ttl))
                return True
        return False

    def reap(self, queue: str, worker_id: str, max_deliveries: int, retention: Retention) -> tuple[int, list[str]]:
        """Return a dead worker's jobs of one queue to the head of its ready list.

        Returns how many went back, and the type of each job dead-lettered instead ('' if unknown).
        """
        k = keys.queue_keys(queue)
        with redis_errors("reap"):  # a dead worker's list no longer changes: its ids name the done keys
            held = self.client.lrange(k.processing(worker_id), 0, -1)
        ids = sorted({i for i in (peek_id(replies.raw(e)) for e in held) if i})
        call = Call("reap", (k.processing(worker_id), k.ready, k.dead, k.state, k.workers, k.dead_trimmed,
                             *(k.done(i) for i in ids)),
                    [max_deliveries, retention.dead_max_jobs, repr(retention.dead_max_age), worker_id,
                     int(retention.keep), *ids])
        with redis_errors("reap"):
            (reply,) = run(self.client, self.scripts, [call])
        return int(reply[0]), [replies.text(t) for t in reply[2:]]

    def forget(self, worker_id: str) -> None:
        """Drop a reaped worker's description; when it wakes up it finds itself unregistered."""
        with redis_errors("reaper"):
            self.client.hdel(keys.WORKERS, worker_id)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
