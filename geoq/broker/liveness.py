"""Worker registry, heartbeats, the reaper's lock and the reap move.

Liveness is a key with a TTL that only the worker refreshes, so it is judged by
Redis's clock alone. The refresh is PEXPIRE, which Redis accepts even at
maxmemory, so a worker keeps proving it is alive while Redis refuses writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import redis

from geoq import names
from geoq.broker import keys, replies
from geoq.broker.broker import Retention, trim_dead
from geoq.broker.errors import redis_errors, translate
from geoq.broker.scripts import Call, Scripts, run
from geoq.records import peek_id

REAPER_LOCK = f"{keys.PREFIX}:reaper"

REAP_STEP = 500                 # most jobs one reap step moves: about 3 ms of Redis time for small jobs
REAP_STEP_BYTES = 4 << 20       # and about this many bytes of envelopes, so big jobs make smaller steps
FIRST_REAP_STEP = 10            # the first step's size, before the list's envelope sizes are known


@dataclass(frozen=True, slots=True)
class Survey:
    """Who may hold processing lists where: what a reaper reads before it judges anyone dead."""

    holders: Mapping[str, frozenset[str]]         # queue -> ids in its worker set
    described: Mapping[str, tuple[str, ...]]      # registered worker id -> the queues it described

    def workers(self) -> list[str]:
        """Every worker that is registered or in some queue's worker set."""
        return sorted(set(self.described).union(*self.holders.values()))

    def queues_of(self, worker_id: str) -> list[str]:
        """The queues where this worker may hold a processing list: the sets naming it, and its description."""
        named = {q for q, ids in self.holders.items() if worker_id in ids}
        return sorted(named.union(self.described.get(worker_id, ())))


@dataclass(frozen=True, slots=True)
class Reaped:
    """What reaping one processing list did."""

    returned: int = 0                                   # jobs back on the ready list
    buried: tuple[str, ...] = ()                        # the type of each job dead-lettered ('' if unknown)
    left: int = 0                                       # jobs still in the list (0: the worker left the queue's set)

    def then(self, step: "Reaped") -> "Reaped":
        return Reaped(self.returned + step.returned, self.buried + step.buried, step.left)


class Registry:
    """The broker moves that concern workers rather than jobs."""

    def __init__(self, client: "redis.Redis", scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def register(self, worker_id: str, info: str, queues: Sequence[str], ttl: float) -> None:
        """Announce a worker: its description, its first heartbeat, and its queues (for reapers: the
        queue's worker set, and the set of every queue any worker served)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(keys.WORKERS, worker_id, info)
        pipe.set(keys.heartbeat(worker_id), "1", px=_ms(ttl))
        for queue in queues:
            pipe.sadd(keys.queue_keys(queue).workers, worker_id)
        if queues:
            pipe.sadd(keys.QUEUES, *queues)
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

    def survey(self, queues: Sequence[str]) -> Survey:
        """Who may hold processing lists, in every queue a worker ever registered for and in `queues`:
        two round trips (the known queues and the registry, then each queue's worker set)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(keys.QUEUES)
        pipe.hgetall(keys.WORKERS)
        with redis_errors("reaper"):
            known, registered = pipe.execute()
        described = {replies.text(w): _described_queues(info) for w, info in registered.items()}
        named = set(queues).union(map(replies.text, known), *described.values())
        every = sorted(q for q in named if names.is_queue_name(q))  # a stray member must not build a key
        pipe = self.client.pipeline(transaction=False)
        for queue in every:
            pipe.smembers(keys.queue_keys(queue).workers)
        with redis_errors("reaper"):
            members = pipe.execute()
        return Survey({q: frozenset(map(replies.text, ids)) for q, ids in zip(every, members)}, described)

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

    def reap(self, queue: str, worker_id: str, max_deliveries: int, retention: Retention) -> Reaped:
        """Return a dead worker's jobs of one queue to the head of its ready list, in bounded steps.

        Each step is one script call that moves the list's tail atomically (REAP_STEP jobs or
        REAP_STEP_BYTES at most), so no call holds Redis for long; steps repeat until the list is
        empty, and the step that finds it empty takes the worker out of the queue's worker set.
        The list keeps its order at the head of the ready list, as if moved in one go. When any
        job was dead-lettered, the dead set is then trimmed to its bounds, in bounded steps too.
        """
        total, count = Reaped(), FIRST_REAP_STEP
        while True:
            held, step = self._reap_step(queue, worker_id, count, max_deliveries, retention)
            total = total.then(step)
            if not step.left or not (step.returned or step.buried):
                break  # empty; or someone else emptied the tail meanwhile: the next pass goes on
            count = _step_size(held)
        if total.buried:
            trim_dead(self.client, self.scripts, queue, retention)
        return total

    def _reap_step(self, queue: str, worker_id: str, count: int, max_deliveries: int,
                   retention: Retention) -> tuple[list[bytes], Reaped]:
        """Read the list's last `count` jobs (a dead worker's list only shrinks) and move them."""
        k = keys.queue_keys(queue)
        with redis_errors("reap"):
            held = [replies.raw(e) for e in self.client.lrange(k.processing(worker_id), -count, -1)]
        ids = sorted({i for i in map(peek_id, held) if i})
        call = Call("reap", (k.processing(worker_id), k.ready, k.dead, k.state, k.workers, *k.dead_index_keys,
                             *(k.done(i) for i in ids)),
                    [max_deliveries, worker_id, int(retention.keep), len(held), queue, *ids])
        with redis_errors("reap"):
            (reply,) = run(self.client, self.scripts, [call])
        return held, Reaped(int(reply[0]), tuple(replies.text(t) for t in reply[3:]), int(reply[2]))

    def forget(self, worker_id: str) -> None:
        """Drop a reaped worker's description; when it wakes up it finds itself unregistered."""
        with redis_errors("reaper"):
            self.client.hdel(keys.WORKERS, worker_id)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _step_size(held: Sequence[bytes]) -> int:
    """How many jobs the next step moves: REAP_STEP, fewer when the last step's envelopes were big."""
    average = sum(map(len, held)) / max(1, len(held))
    return max(1, min(REAP_STEP, int(REAP_STEP_BYTES / max(1.0, average))))


def _described_queues(info: bytes) -> tuple[str, ...]:
    """The queues a worker's description names (none when it is not a description of ours)."""
    try:
        queues = json.loads(info).get("queues")
    except (ValueError, AttributeError):
        return ()
    return tuple(q for q in queues if names.is_queue_name(q)) if isinstance(queues, list) else ()
