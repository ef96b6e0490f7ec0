"""Every Redis key name geoq uses, and nothing else.

All keys of one queue share the hash tag ``{NAME}``, so every atomic move of
that queue (which touches its ready list, scheduled set, processing lists,
state hash and dead set) stays inside one Redis Cluster slot, while
different queues spread across the cluster.
"""

from __future__ import annotations

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


def heartbeat(worker_id: str) -> str:
    """String with TTL dead_after: present while the worker proves it is alive."""
    return f"{PREFIX}:heartbeat:{worker_id}"


def queue_keys(name: str) -> QueueKeys:
    return QueueKeys(name)


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
