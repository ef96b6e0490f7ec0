"""Reading the runs tests/support/limit_handlers.py recorded: rates, overlaps, keys."""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass

import redis

from tests.support.limit_handlers import RUNS


@dataclass(frozen=True)
class Run:
    start: float
    end: float
    key: str
    job_id: str


def runs(client: redis.Redis) -> list[Run]:
    out = []
    for raw in client.lrange(RUNS, 0, -1):
        start, end, key, job_id = raw.decode().split(" ", 3)
        out.append(Run(float(start), float(end), key, job_id))
    return sorted(out, key=lambda r: r.start)


def most_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of `times` (sorted) inside any window of `window` seconds."""
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def most_at_once(found: list[Run]) -> int:
    """The most runs going on at one moment (an end at the very time of a start does not overlap)."""
    events = sorted([(r.start, 1) for r in found] + [(r.end, -1) for r in found], key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def by_key(found: list[Run]) -> dict[str, list[Run]]:
    keyed: dict[str, list[Run]] = collections.defaultdict(list)
    for r in found:
        keyed[r.key].append(r)
    return keyed
