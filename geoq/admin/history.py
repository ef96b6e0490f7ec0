"""The job history as the CLI and the dashboard read it: per-minute counts and wait quantiles of each
queue over a window, and per-type totals.

Reads are bounded: one round trip per queue of a GET and an HGETALL per queue-hour of the window
(at most HOURS_PER_TRIP hours a trip). Types are stored per hour (geoq.history), so a window's
type totals cover every hour it touches: up to an hour more than the window at its start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from geoq import history as h
from geoq.admin.session import Session
from geoq.broker.clock import redis_time
from geoq.broker.history import HistoryBroker

HOURS_PER_TRIP = 168   # queue-hours read per round trip: a week's
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Minute:
    at: int                 # unix seconds, start of the minute (Redis server time)
    processed: int          # finished runs: succeeded + retried + dead + cancelled
    succeeded: int
    failed: int             # runs that raised: retried + dead
    retried: int
    dead: int               # jobs that went to the dead set (incl. expired)
    wait_p50: float | None  # seconds from enqueue/due to start; None when no job started
    wait_p95: float | None
    wait_p99: float | None


@dataclass(frozen=True, slots=True)
class TypeTotals:
    type: str
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead: int


@dataclass(frozen=True, slots=True)
class QueueHistory:
    queue: str
    minutes: list[Minute]      # oldest first; EVERY minute of the window present (zeros/None for gaps)
    types: list[TypeTotals]    # totals over the window, most processed first


def read_history(s: Session, queues: Sequence[str], since: float, now: float | None = None,
                 step: int = 1) -> list[QueueHistory]:
    """History of each queue over the last `since` seconds (bounded reads: a few commands per
    queue-hour). `now` defaults to Redis server time. The window is the minutes from
    `now - since` to the minute holding `now`, whole: ceil(since / 60) of them, at least one.
    With `step` > 1 each Minute covers `step` minutes from its `at` (the last may cover fewer):
    counts summed, wait quantiles of the summed histogram; a chart of a week then costs a few
    hundred quantiles per queue rather than one per minute."""
    return s.read(lambda: _read(HistoryBroker(s.broker.client, s.broker.scripts), queues, since, now, step))


def _read(hb: HistoryBroker, queues: Sequence[str], since: float, now: float | None,
          step: int) -> list[QueueHistory]:
    end = int((redis_time(hb.client) if now is None else now) // 60)
    first = end - max(1, math.ceil(since / 60)) + 1
    hours = list(range(first // h.SLOTS, end // h.SLOTS + 1))
    return [_queue(queue, _hours(hb, queue, hours), first, end, max(1, step)) for queue in queues]


def _hours(hb: HistoryBroker, queue: str, hours: list[int]) -> dict[int, tuple[bytes | None, dict[str, bytes]]]:
    stored: dict[int, tuple[bytes | None, dict[str, bytes]]] = {}
    for start in range(0, len(hours), HOURS_PER_TRIP):
        chunk = hours[start:start + HOURS_PER_TRIP]
        stored.update(zip(chunk, hb.read(queue, chunk)))
    return stored


def _queue(queue: str, stored: dict[int, tuple[bytes | None, dict[str, bytes]]], first: int, end: int,
           step: int) -> QueueHistory:
    decoded = {hour: h.decode_hour(raw) for hour, (raw, _) in stored.items()}
    slots = [decoded[m // h.SLOTS][m % h.SLOTS] for m in range(first, end + 1)]
    minutes = [minute_of((first + i) * 60, _summed(slots[i:i + step])) for i in range(0, len(slots), step)]
    per_type: dict[str, list[int]] = {}
    for _, types in stored.values():
        for name, raw in types.items():
            per_type[name] = h.sum_counts([per_type.get(name, [0] * len(h.COUNTS)), h.decode_counts(raw)])
    totals = [type_totals(name, counts) for name, counts in per_type.items()]
    totals.sort(key=lambda t: (-t.processed, t.type))
    return QueueHistory(queue, minutes, [t for t in totals if t.processed])


def _summed(slots: Sequence[h.StoredMinute]) -> h.StoredMinute:
    """Minute slots as one: counts and wait histograms added (empty slots cost nothing)."""
    full = [m for m in slots if m is not h.EMPTY]
    if len(full) <= 1:
        return full[0] if full else h.EMPTY
    return h.StoredMinute(tuple(map(sum, zip(*(m.counts for m in full)))),
                          tuple(map(sum, zip(*(m.waits for m in full)))))


def minute_of(at: int, stored: h.StoredMinute) -> Minute:
    succeeded, retried, dead, cancelled = stored.counts
    p50, p95, p99 = (h.quantile(stored.waits, q) for q in QUANTILES)
    return Minute(at, succeeded + retried + dead + cancelled, succeeded, retried + dead, retried, dead, p50, p95, p99)


def type_totals(name: str, counts: Sequence[int]) -> TypeTotals:
    succeeded, retried, dead, cancelled = counts
    return TypeTotals(name, succeeded + retried + dead + cancelled, succeeded, retried + dead, retried, dead)


def downsample(minutes: Sequence[Minute], buckets: int) -> list[Minute]:
    """At most `buckets` points: counts summed, wait quantiles as the max over the bucket.
    Each point is stamped with its first minute's `at`."""
    if not minutes:
        return []
    size = math.ceil(len(minutes) / max(1, buckets))
    return [merge(minutes[i:i + size]) for i in range(0, len(minutes), size)]


def fleet_minutes(histories: Sequence[QueueHistory]) -> list[Minute]:
    """All queues summed minute by minute (wait quantiles: max across queues)."""
    by_at: dict[int, list[Minute]] = {}
    for queue in histories:
        for m in queue.minutes:
            by_at.setdefault(m.at, []).append(m)
    return [merge(group) for _, group in sorted(by_at.items())]


def merge(group: Sequence[Minute]) -> Minute:
    """Minutes as one: the first one's `at`, counts summed, each wait quantile the largest."""
    return Minute(group[0].at, *(sum(getattr(m, f) for m in group) for f in _COUNTED),
                  *(_largest(getattr(m, f) for m in group) for f in _WAITS))


_COUNTED = ("processed", "succeeded", "failed", "retried", "dead")
_WAITS = ("wait_p50", "wait_p95", "wait_p99")


def _largest(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
