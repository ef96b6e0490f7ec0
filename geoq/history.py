"""Per-minute job history: the tally a worker keeps between flushes, and the stored layout. Pure.

A worker counts each finished run in memory (`Tally`, O(1) per job, no I/O) and a loop of its
own adds the tally to Redis every few seconds (geoq.worker.recorder, geoq/broker/history.py).
Redis keeps, per queue and hour, two keys under the queue's hash tag:

- a string of 60 minute slots, each SLOT_FIELDS little-endian uint32: the counts of COUNTS,
  then a wait-time histogram of BUCKETS log-scale buckets (a slot is SLOT_BYTES bytes);
- a hash: job type -> its hour's counts of COUNTS (TYPE_BYTES bytes), at most TYPE_CAP types
  per queue-hour, the rest counted under OTHER, so memory is bounded whatever producers send.

Types are kept per hour, not per minute: 200 types a minute for a week would cost Redis
hundreds of megabytes per queue, and a window's type totals need no finer grain than its
queue-level minutes show. history.lua adds a flush to both keys in one atomic step and
mirrors the layout here (SLOT_FIELDS, TYPE_FIELDS, OTHER).

Wait buckets: bucket 0 holds waits under 1 ms; bucket i (1..BUCKETS-2) holds
[2^((i-1)/2), 2^(i/2)) ms, a factor of sqrt(2), so a quantile read back is within about 19%
of the true one; the last bucket holds everything from 2^29 ms (about 6.2 days) on.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

COUNTS = ("succeeded", "retried", "dead", "cancelled")
"""The stored counters, by Outcome.label; processed and failed are sums of them."""
INDEX = {label: i for i, label in enumerate(COUNTS)}
BUCKETS = 60
SLOT_FIELDS = len(COUNTS) + BUCKETS
SLOT_BYTES = 4 * SLOT_FIELDS
SLOTS = 60                      # minutes per stored hour
TYPE_FIELDS = len(COUNTS)
TYPE_BYTES = 4 * TYPE_FIELDS
TYPE_CAP = 50                   # distinct types kept per queue and hour (and per pending minute)
OTHER = "(other)"               # the type counted for every type past the cap, and for over-long names
MAX_TYPE_NAME = 200             # longer type names are counted under OTHER: hash fields stay small
MAX_PENDING = 2000              # (queue, minute) tallies held while Redis is away; the oldest go first
_UINT32 = 0xFFFFFFFF
_SLOT = struct.Struct(f"<{SLOT_FIELDS}I")
_TYPE = struct.Struct(f"<{TYPE_FIELDS}I")


# -- wait buckets ---------------------------------------------------------------------------------


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a wait of `seconds`: one bisection of the buckets' low bounds, in C
    (this runs for every job)."""
    return bisect_right(_LOWS, seconds)


def bucket_bounds(i: int) -> tuple[float, float]:
    """Seconds [low, high) of bucket i; the last bucket's high is its low (it has no end)."""
    if i == 0:
        return 0.0, 0.001
    low = 2.0 ** ((i - 1) / 2) / 1000.0
    return (low, low) if i == BUCKETS - 1 else (low, 2.0 ** (i / 2) / 1000.0)


_LOWS = tuple(bucket_bounds(i)[0] for i in range(1, BUCKETS))   # bucket i holds [_LOWS[i-1], _LOWS[i])


def quantile(waits: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a histogram, in seconds; None when it holds nothing.

    Interpolated inside its bucket, geometrically (linearly in the first, whose low end is 0)."""
    total = sum(waits)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(waits):
        if count and seen + count >= rank:
            return _inside(i, (rank - seen) / count)
        seen += count
    return bucket_bounds(BUCKETS - 1)[0]


def _inside(i: int, fraction: float) -> float:
    low, high = bucket_bounds(i)
    if i == 0:
        return high * fraction
    return float(low * (high / low) ** fraction)


# -- one minute -----------------------------------------------------------------------------------


class MinuteTally:
    """One queue's counts in one minute, as a worker gathers them: mutable, for the hot path.
    `start` is the minute's first second (unix time)."""

    __slots__ = ("start", "end", "waits", "types")

    def __init__(self, start: float = 0.0) -> None:
        self.start, self.end = start, start + 60.0
        self.waits = [0] * BUCKETS
        self.types: dict[str, list[int]] = {}

    @property
    def counts(self) -> list[int]:
        """The queue's counts: its types' summed (every run is counted under its type, or OTHER's),
        so the hot path increments one list, not two."""
        return [sum(column) for column in zip(*self.types.values())] or [0] * len(COUNTS)

    def count(self, job_type: str, index: int) -> None:
        (self.types.get(job_type) or self.type_counts(job_type))[index] += 1

    def type_counts(self, job_type: str) -> list[int]:
        """The counts kept for `job_type`: its own, or OTHER's past the cap or for an over-long name."""
        if len(self.types) >= TYPE_CAP or len(job_type) > MAX_TYPE_NAME:
            job_type = OTHER
        return self.types.setdefault(job_type, [0] * len(COUNTS))

    def merge(self, other: "MinuteTally") -> None:
        """Add `other`'s counts to these (types past the cap under OTHER)."""
        _add(self.waits, other.waits)
        for job_type, counts in other.types.items():
            _add(self.types.get(job_type) or self.type_counts(job_type), counts)


def _add(into: list[int], more: Sequence[int]) -> None:
    for i, value in enumerate(more):
        into[i] += value


# -- a worker's tally -----------------------------------------------------------------------------


class Tally:
    """What a worker has counted and not yet written: a MinuteTally per (queue, minute).

    Minutes are whole minutes of unix time (Redis's clock, as the worker knows it). Bounded:
    at most MAX_PENDING (queue, minute) entries, each with at most TYPE_CAP types; past that
    the oldest minute is dropped (`dropped` counts them), as a Redis outage of more than a day
    would otherwise grow it without end.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.pending: dict[tuple[str, int], MinuteTally] = {}
        self.dropped = 0
        self._current: dict[str, MinuteTally] = {}   # each queue's latest minute: most runs end in it

    def ended(self, queue: str, job_type: str, label: str, at: float, waited: float | None = None) -> None:
        """A run (or a burial) of `job_type` ended at `at` with Outcome.label `label`, after waiting
        `waited` seconds to start (None: not known, or it never ran); other labels are not counted."""
        index = INDEX.get(label)
        if index is not None:
            self.count(queue, job_type, index, at, waited)

    def count(self, queue: str, job_type: str, index: int, at: float, waited: float | None) -> None:
        """ended() by the counter's index in COUNTS. Runs for every job: nothing but dict lookups
        and increments in the common case (the queue's current minute)."""
        tally = self._current.get(queue)
        if tally is None or not tally.start <= at < tally.end:
            tally = self.minute(queue, at)
        (tally.types.get(job_type) or tally.type_counts(job_type))[index] += 1
        if waited is not None:
            tally.waits[bisect_right(_LOWS, waited)] += 1   # bucket_of(waited), without a call of ours

    def minute(self, queue: str, at: float) -> MinuteTally:
        """The tally of `queue` in the minute holding `at`, made when missing."""
        minute = int(at // 60)
        tally = self.pending.get((queue, minute))
        if tally is None:
            tally = self.pending[(queue, minute)] = MinuteTally(minute * 60.0)
            if len(self.pending) > self.max_pending:
                self._drop_oldest()
        if minute * 60.0 >= self._latest(queue):
            self._current[queue] = tally
        return tally

    def _latest(self, queue: str) -> float:
        current = self._current.get(queue)
        return -1.0 if current is None else current.start

    def take(self) -> dict[tuple[str, int], MinuteTally]:
        """Everything counted so far; the tally starts afresh."""
        taken, self.pending = self.pending, {}
        self._current = {}
        return taken

    def give_back(self, taken: Mapping[tuple[str, int], MinuteTally]) -> None:
        """Counts that could not be written: kept for the next flush (merged with newer ones)."""
        for key, tally in taken.items():
            current = self.pending.get(key)
            if current is None:
                self.pending[key] = tally
            else:
                current.merge(tally)
        while len(self.pending) > self.max_pending:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = min(self.pending, key=lambda k: k[1])
        if self._current.get(oldest[0]) is self.pending.pop(oldest):
            del self._current[oldest[0]]
        self.dropped += 1


# -- what a flush writes --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourBlock:
    """One queue-hour's share of a flush: encoded slot deltas by minute of the hour (0-59),
    and type deltas by type name."""

    queue: str
    hour: int                      # unix seconds // 3600
    slots: Mapping[int, bytes]
    types: Mapping[str, bytes]


def hour_blocks(taken: Mapping[tuple[str, int], MinuteTally]) -> list[HourBlock]:
    """The tallies of a flush grouped by queue and hour, encoded; types summed over each hour."""
    grouped: dict[tuple[str, int], dict[int, MinuteTally]] = {}
    for (queue, minute), tally in taken.items():
        grouped.setdefault((queue, minute // SLOTS), {})[minute % SLOTS] = tally
    return [_block(queue, hour, minutes) for (queue, hour), minutes in sorted(grouped.items())]


def _block(queue: str, hour: int, minutes: Mapping[int, MinuteTally]) -> HourBlock:
    types = MinuteTally()
    for tally in minutes.values():
        types.merge(tally)
    return HourBlock(queue, hour, {m: encode_slot(t.counts, t.waits) for m, t in sorted(minutes.items())},
                     {name: encode_counts(counts) for name, counts in types.types.items()})


def encode_slot(counts: Sequence[int], waits: Sequence[int]) -> bytes:
    return _SLOT.pack(*(min(v, _UINT32) for v in (*counts, *waits)))


def encode_counts(counts: Sequence[int]) -> bytes:
    return _TYPE.pack(*(min(v, _UINT32) for v in counts))


def decode_counts(raw: bytes) -> tuple[int, ...]:
    """A type's counts (COUNTS order); a value of the wrong size reads as zeros."""
    return _TYPE.unpack(raw) if len(raw) == TYPE_BYTES else (0,) * TYPE_FIELDS


@dataclass(frozen=True, slots=True)
class StoredMinute:
    """One minute slot read back: its counts (COUNTS order) and wait histogram."""

    counts: tuple[int, ...]
    waits: tuple[int, ...]


EMPTY = StoredMinute((0,) * len(COUNTS), (0,) * BUCKETS)


def decode_hour(raw: bytes | None) -> list[StoredMinute]:
    """The SLOTS minutes of one stored hour string (missing or short: zeros from there on)."""
    whole = min(len(raw or b"") // SLOT_BYTES, SLOTS)   # one unpack call for the hour: a week is 168 of them
    out = [_minute(values) if any(values) else EMPTY for values in _SLOT.iter_unpack((raw or b"")[:whole * SLOT_BYTES])]
    return out + [EMPTY] * (SLOTS - whole)


def _minute(values: tuple[int, ...]) -> StoredMinute:
    return StoredMinute(values[:len(COUNTS)], values[len(COUNTS):])


def sum_counts(rows: Iterable[Sequence[int]]) -> list[int]:
    total = [0] * len(COUNTS)
    for row in rows:
        _add(total, row)
    return total
