"""Every Redis key name geoq uses, and nothing else.

All keys of one queue share the hash tag ``{NAME}``, so every atomic move of
that queue (which touches its ready list, scheduled set, processing lists,
state hash and dead set) stays inside one Redis Cluster slot, while
different queues spread across the cluster.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


PREFIX = "geoq"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    name: str

    @property
    def tag(self) -> str:
        return f"{PREFIX}:{{{self.name}}}"

    @property
    def ready(self) -> str:
        """List: jobs waiting to run; the head (left) runs first."""
        return f"{self.tag}:ready"

    @property
    def scheduled(self) -> str:
        """Sorted set: delayed and retrying jobs, scored by due time (Redis server time, seconds)."""
        return f"{self.tag}:scheduled"

    @property
    def state(self) -> str:
        """Hash: id -> encoded state of every job still queued, scheduled or running."""
        return f"{self.tag}:state"

    @property
    def dead(self) -> str:
        """Sorted set: dead-letter records scored by the time they died."""
        return f"{self.tag}:dead"

    @property
    def dead_trimmed(self) -> str:
        """String counter: dead records dropped by the dead set's bounds (max_jobs, max_age)."""
        return f"{self.tag}:dead_trimmed"

    @property
    def dead_groups(self) -> str:
        """Sorted set: fingerprint of each group of dead records (geoq.fingerprint) -> the Redis
        time its newest record died. The dead-set index: see geoq.broker.groups."""
        return f"{self.tag}:dead_groups"

    @property
    def dead_titles(self) -> str:
        """Hash: fingerprint -> the group's description, JSON {type, error_type, message}."""
        return f"{self.tag}:dead_titles"

    @property
    def dead_index(self) -> str:
        """Sorted set, all scores 0, read by lex: "FP:DIED:SEQ:ID" per dead record (DIED fixed width,
        so one group's entries sort by time of death)."""
        return f"{self.tag}:dead_index"

    @property
    def dead_ids(self) -> str:
        """Hash: job id -> its dead records' index entries, apart by spaces (a job may die twice)."""
        return f"{self.tag}:dead_ids"

    @property
    def dead_seq(self) -> str:
        """String counter: the last sequence number given to a dead record of this queue."""
        return f"{self.tag}:dead_seq"

    @property
    def dead_index_keys(self) -> tuple[str, str, str, str, str]:
        """The index's keys in the order every script that buries or removes dead records takes them."""
        return self.dead_groups, self.dead_titles, self.dead_index, self.dead_ids, self.dead_seq

    @property
    def workers(self) -> str:
        """Set: ids of workers that hold (or held) a processing list of this queue."""
        return f"{self.tag}:workers"

    @property
    def paused(self) -> str:
        """String: present while the queue is paused (every worker stops taking its jobs)."""
        return f"{self.tag}:paused"

    @property
    def cancelling(self) -> str:
        """Sorted set: ids of running jobs whose cancel is asked for, scored by when (Redis time);
        workers read it about once a second to interrupt the ones they run."""
        return f"{self.tag}:cancelling"

    def unique(self, lock: str) -> str:
        """String: the id of the job holding a unique key (`lock`, a digest: geoq.unique), without
        a TTL while the job is live, then with the key's window as TTL."""
        return f"{self.tag}:unique:{lock}"

    @property
    def ticks(self) -> str:
        """Hash: schedule name -> the last tick claimed (unix seconds) of each schedule enqueuing here."""
        return f"{self.tag}:ticks"

    def history(self, hour: int) -> str:
        """String: one hour's 60 minute slots of counts and wait histogram (geoq.history), written by
        workers' flushes and expiring history.keep after the last; `hour` is unix seconds // 3600."""
        return f"{self.tag}:history:{hour}"

    def history_types(self, hour: int) -> str:
        """Hash: job type -> its counts in one hour (geoq.history), at most a cap of types; expires as `history`."""
        return f"{self.tag}:history:{hour}:types"

    def processing(self, worker_id: str) -> str:
        """List: the jobs one worker has taken from this queue and not yet settled."""
        return f"{self.tag}:processing:{worker_id}"

    def done(self, job_id: str) -> str:
        """String with TTL: a finished job's final status and result."""
        return f"{self.tag}:done:{job_id}"


WORKERS = f"{PREFIX}:workers"
"""Hash: worker id -> JSON description (host, pid, queues, concurrency, started_at)."""

QUEUES = f"{PREFIX}:queues"
"""Set: every queue a worker has registered for, so that a reaper finds the processing lists
of queues it does not serve itself (a queue stays named here after its last worker is gone)."""


DASHBOARD_SECRET = f"{PREFIX}:dashboard:secret"
"""String: the random key the dashboard signs its forms' tokens with, shared by every dashboard
process on this Redis (so a form served by one is accepted by another)."""


def heartbeat(worker_id: str) -> str:
    """String with TTL dead_after: present while the worker proves it is alive."""
    return f"{PREFIX}:heartbeat:{worker_id}"


def queue_keys(name: str) -> QueueKeys:
    return QueueKeys(name)


@dataclass(frozen=True, slots=True)
class LimitKeys:
    """The keys of one route's limits (geoq.limits), all under the hash tag ``{limit:ROUTE}``.

    Per route, not per queue: a route's jobs may come from several queues, and one
    limit script checks the route's counters and its per-key counters together, so
    they must share one Redis Cluster slot. A job type with a brace in its name (which
    would end the tag early) is tagged by its digest instead. None of these names ends
    in ready, scheduled, dead or processing, so nothing takes them for a queue's keys.
    """

    route: str

    @property
    def tag(self) -> str:
        name = self.route if "{" not in self.route and "}" not in self.route else _digest(self.route)
        return f"{PREFIX}:{{limit:{name}}}"

    @property
    def state(self) -> str:
        """Hash: the route's rate schedule (tat), concurrency wait line (cline), mean run time
        (ewma) and grants per second (win, n, prev); expires when idle."""
        return f"{self.tag}:state"

    @property
    def leases(self) -> str:
        """Sorted set: "worker|job" of each run holding a concurrency slot, scored by lease expiry (ms)."""
        return f"{self.tag}:leases"

    @property
    def paused(self) -> str:
        """Sorted set: paused key values ("k:VALUE", or "route"), scored by the pause's end (ms)."""
        return f"{self.tag}:paused"

    @property
    def reserved(self) -> str:
        """Sorted set: job id -> the time (ms) of the rate permit reserved for it while it waits."""
        return f"{self.tag}:reserved"

    def key_reserved(self, value: str) -> str:
        """Sorted set: one key value's rate permits reserved for waiting jobs, as `reserved`."""
        return f"{self.tag}:kreserved:{_key_part(value)}"

    def key_state(self, value: str) -> str:
        """Hash: one key value's rate schedule and wait line; expires once idle."""
        return f"{self.tag}:kstate:{_key_part(value)}"

    def key_leases(self, value: str) -> str:
        """Sorted set: the runs holding one key value's concurrency slots, as `leases`."""
        return f"{self.tag}:kleases:{_key_part(value)}"


def limit_keys(route: str) -> LimitKeys:
    return LimitKeys(route)


MAX_KEY_PART = 200  # longer key values are named by their digest: key names stay small


def _key_part(value: str) -> str:
    return value if len(value) <= MAX_KEY_PART else "#" + _digest(value)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


QUEUE_KEYS_PATTERN = f"{PREFIX}:{{*}}:*"
"""SCAN pattern matching every key of every queue (to find queues no config names)."""

_JOB_HOLDER = re.compile(r"^" + re.escape(PREFIX) + r":\{([^{}]+)\}:(ready|scheduled|dead|processing):?(.*)$")


def parse_job_holder(key: str) -> tuple[str, str, str] | None:
    """(queue, place, worker id or "") of a key that holds jobs: ready, scheduled, dead or
    processing; None for any other key."""
    match = _JOB_HOLDER.match(key)
    if match is None or (match[2] == "processing") != bool(match[3]):
        return None
    return match[1], match[2], match[3]


_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def glob_escape(text: str) -> str:
    """`text` as a literal inside a SCAN MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)
