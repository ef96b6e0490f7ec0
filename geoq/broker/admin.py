"""The broker side of the admin CLI: reads across every queue's places, and the operator's moves.

Reads are plain commands in pipelines (a snapshot that is a few microseconds
wide is good enough for a person or a monitoring script). Every move that
touches more than one key is one script: putting a dead job back
(dead_retry.lua) and emptying a queue (purge.lua); removing dead records is
dead_drop.lua or trim.lua (each keeps the dead-set index in step). Whatever the backlog, no call holds Redis for long: big
moves go in bounded steps, each atomic for the jobs it moves. No policy lives here: what to retry and
how its envelope is rewritten is the caller's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence, cast

import redis

from geoq.broker import keys, replies
from geoq.broker.broker import SCAN_COUNT, drop_dead, trim_step
from geoq.broker.clock import redis_time
from geoq.broker.errors import redis_errors
from geoq.broker.keys import glob_escape
from geoq.broker.inspect import Depth, read_depths
from geoq.broker.scripts import Call, Scripts, run
from geoq.records import json_object

_REMOVE_CHUNK = 500  # records per dead_drop.lua call: bounds the time one call holds Redis


@dataclass(frozen=True, slots=True)
class QueueScan:
    """What one SCAN of the keyspace found: queues holding jobs, and who holds processing lists."""

    queues: frozenset[str] = frozenset()
    processing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # queue -> worker ids


@dataclass(frozen=True, slots=True)
class WorkerEntry:
    id: str
    info: Mapping[str, Any]        # the worker's own description (host, pid, queues, ...)
    alive: bool                    # its heartbeat key is still there
    heartbeat_age: float | None    # seconds since its last beat, by Redis time; None if unknown


@dataclass(frozen=True, slots=True)
class DeadEntry:
    queue: str
    member: bytes    # the exact set member: moves name it byte for byte, never a re-encoded copy
    died_at: float   # its score: Redis time of death, unix seconds


@dataclass(frozen=True, slots=True)
class Revival:
    member: bytes    # the dead record to take out
    envelope: bytes  # what goes back on the ready list
    id: str


REVIVED, GONE, LIVE, NO_ID = 1, 0, 2, 3   # dead_retry.lua's answer per job


class AdminBroker:
    """Reads and moves for operators. `client` is a redis.Redis built by connection.connect."""

    def __init__(self, client: "redis.Redis", scripts: Scripts | None = None) -> None:
        self.client = client
        self.scripts = scripts or Scripts()

    def server_time(self) -> float:
        return redis_time(self.client)

    # -- queues --------------------------------------------------------------------------------

    def scan_queues(self) -> QueueScan:
        """One pass over the keyspace: every queue with a ready, scheduled, dead or processing key."""
        found: set[str] = set()
        processing: dict[str, list[str]] = {}
        with redis_errors("scan"):
            for raw in self.client.scan_iter(match=keys.QUEUE_KEYS_PATTERN, count=SCAN_COUNT):
                holder = keys.parse_job_holder(replies.text(raw))
                if holder is None:
                    continue
                queue, place, worker_id = holder
                found.add(queue)
                if place == "processing":
                    processing.setdefault(queue, []).append(worker_id)
        return QueueScan(frozenset(found), {q: tuple(sorted(ws)) for q, ws in processing.items()})

    def depths(self, queues: Sequence[str], scan: QueueScan) -> list[Depth]:
        """Counts of every place of each queue, the processing lists being those the scan found."""
        return read_depths(self.client, queues, "stats", holders=scan.processing)

    def queue_exists(self, queue: str) -> bool:
        """True when any key of the queue exists (its places, its state hash or its worker set)."""
        k = keys.queue_keys(queue)
        with redis_errors("exists"):
            return bool(self.client.exists(k.ready, k.scheduled, k.dead, k.state, k.workers))

    def purge(self, queue: str, batch: int = 1000) -> tuple[int, int]:
        """Remove every waiting job (ready and scheduled) of a queue; (ready, scheduled) removed.

        Each batch is atomic; jobs enqueued while a purge runs may be purged too.
        """
        k = keys.queue_keys(queue)
        call = Call("purge", (k.ready, k.scheduled, k.state), [batch])
        ready = scheduled = 0
        while True:
            with redis_errors("purge"):
                ((r, s),) = run(self.client, self.scripts, [call])
            ready, scheduled = ready + r, scheduled + s
            if r < batch and s < batch:
                return ready, scheduled

    def registered_queues(self) -> set[str]:
        """The queues workers have registered for (keys.QUEUES): one command, however big the keyspace."""
        with redis_errors("queues"):
            return {replies.text(q) for q in cast("set[bytes]", self.client.smembers(keys.QUEUES))}

    def heads(self, queues: Sequence[str]) -> list[bytes | None]:
        """The envelope at the head of each queue's ready list (the next to run), None for an empty
        list: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.lindex(keys.queue_keys(queue).ready, 0)
        with redis_errors("heads"):
            return [None if raw is None else _bytes(raw) for raw in pipe.execute()]

    # -- scheduled jobs ------------------------------------------------------------------------

    def scheduled_page(self, queue: str, start: int, count: int) -> list[tuple[bytes, float]]:
        """Envelopes of the scheduled set, soonest due first, from rank `start`, with their due times."""
        with redis_errors("scheduled"):
            page = self.client.zrange(keys.queue_keys(queue).scheduled, start, start + count - 1, withscores=True)
        return [(_bytes(member), float(score)) for member, score in cast("list[Any]", page)]

    def scheduled_at(self, queue: str, due: float, most: int = 100) -> list[bytes]:
        """Envelopes of the scheduled set due at exactly `due` (a score as scheduled_page gave it):
        how an operator's action finds one job without scanning the set."""
        with redis_errors("scheduled"):
            found = self.client.zrangebyscore(keys.queue_keys(queue).scheduled, repr(due), repr(due), 0, most)
        return [_bytes(member) for member in cast("list[Any]", found)]

    def run_now(self, queue: str, envelope: bytes) -> bool:
        """Move one scheduled job (its exact envelope) to the head of its ready list (run_now.lua);
        False when it was no longer scheduled."""
        k = keys.queue_keys(queue)
        with redis_errors("run now"):
            (moved,) = run(self.client, self.scripts, [Call("run_now", (k.scheduled, k.ready, k.state), [envelope])])
        return bool(moved)

    def shared_secret(self, fresh: bytes) -> bytes:
        """The dashboard's signing key: `fresh` if none was stored yet, else the stored one (SET NX, GET)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.DASHBOARD_SECRET, fresh, nx=True)
        pipe.get(keys.DASHBOARD_SECRET)
        with redis_errors("secret"):
            _, secret = pipe.execute()
        return _bytes(secret)

    # -- workers -------------------------------------------------------------------------------

    def workers(self) -> list[WorkerEntry]:
        """Every registered worker, alive or silent, by id."""
        with redis_errors("workers"):
            registered = cast("dict[bytes, bytes]", self.client.hgetall(keys.WORKERS))
        ids = sorted(replies.text(k) for k in registered)
        pipe = self.client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.exists(keys.heartbeat(worker_id))
        pipe.time()
        with redis_errors("workers"):
            *alive, (seconds, micros) = pipe.execute()
        now = seconds + micros / 1_000_000
        out = []
        for worker_id, is_alive in zip(ids, alive):
            info = json_object(registered[worker_id.encode()])
            beat_at = info.get("beat_at")
            age = max(0.0, now - float(beat_at)) if isinstance(beat_at, (int, float)) else None
            out.append(WorkerEntry(worker_id, info, bool(is_alive), age))
        return out

    # -- jobs ----------------------------------------------------------------------------------

    # -- the dead set --------------------------------------------------------------------------

    def dead_page(self, queue: str, start: int, count: int) -> list[DeadEntry]:
        """Dead records of a queue, newest first, from rank `start`."""
        with redis_errors("dead list"):
            page = self.client.zrevrange(keys.queue_keys(queue).dead, start, start + count - 1, withscores=True)
        return [DeadEntry(queue, _bytes(member), float(score)) for member, score in cast("list[Any]", page)]

    def dead_scan(self, queue: str) -> Iterator[DeadEntry]:
        """Every record of a queue's dead set once, in no order; records added meanwhile may be
        missed, and one may be gone by the time it is acted on, so a move must tolerate a missing member.

        ZSCAN may return a member twice when the set shrinks under it (as a retry --all shrinks
        it): seen members are remembered by a 16-byte digest, to report each record once.
        """
        seen: set[bytes] = set()
        with redis_errors("dead scan"):
            for member, score in self.client.zscan_iter(keys.queue_keys(queue).dead, count=SCAN_COUNT):
                digest = hashlib.blake2b(_bytes(member), digest_size=16).digest()
                if digest not in seen:
                    seen.add(digest)
                    yield DeadEntry(queue, _bytes(member), float(score))

    def dead_find(self, queue: str, job_id: str) -> list[DeadEntry]:
        """The records of one job id in a queue's dead set (a job may have died more than once)."""
        # Records written in Lua (cjson) escape "/" as "\/": let any character stand in for it.
        pattern = "*" + "*".join(glob_escape(part) for part in ('"id":' + json.dumps(job_id)).split("/")) + "*"
        with redis_errors("dead find"):
            found = [DeadEntry(queue, _bytes(member), float(score))
                     for member, score in self.client.zscan_iter(keys.queue_keys(queue).dead, match=pattern,
                                                                 count=SCAN_COUNT)]
        return [entry for entry in found if json_object(entry.member).get("id") == job_id]

    def dead_revive(self, queue: str, revivals: Sequence[Revival], queued_state: str) -> list[int]:
        """Put dead jobs back on the ready list, each only if its exact record is still dead.

        Returns per job REVIVED, GONE (someone else took the record), LIVE (the id is live
        again: left dead) or NO_ID (the envelope carries no id a script can read: left dead).
        """
        if not revivals:
            return []
        k = keys.queue_keys(queue)
        args: list[object] = [queued_state]
        for r in revivals:
            args += [r.member, r.envelope]
        done_keys = [k.done(r.id) for r in revivals]
        with redis_errors("dead retry"):
            (codes,) = run(self.client, self.scripts, [Call("dead_retry", (k.dead, k.ready, k.state,
                                                                              *k.dead_index_keys, *done_keys), args)])
        return [int(code) for code in codes]

    def dead_remove(self, queue: str, members: Sequence[bytes]) -> int:
        """Remove these exact records, in bounded chunks; the number that were there."""
        k = keys.queue_keys(queue)
        calls = [Call("dead_drop", (k.dead, *k.dead_index_keys), members[start:start + _REMOVE_CHUNK])
                 for start in range(0, len(members), _REMOVE_CHUNK)]
        removed = 0
        for call in calls:  # a round trip each: one call at a time holds Redis
            with redis_errors("dead purge"):
                removed += int(run(self.client, self.scripts, [call])[0])
        return removed

    def dead_remove_all(self, queue: str) -> int:
        """Empty a queue's dead set, oldest first, in bounded steps; the records removed."""
        return self._drop(queue, kept=0, max_age=None)

    def dead_remove_older(self, queue: str, age: float) -> int:
        """Remove the records that died more than `age` seconds ago by Redis time, in bounded steps."""
        return self._drop(queue, kept=None, max_age=age)

    def _drop(self, queue: str, kept: int | None, max_age: float | None) -> int:
        step = trim_step(keys.queue_keys(queue), kept, max_age, counted=False)
        return drop_dead(self.client, self.scripts, step, "dead purge")


def _bytes(value: object) -> bytes:
    """A reply of our client (built with decode_responses=False, so always bytes)."""
    assert isinstance(value, bytes), type(value)
    return value
