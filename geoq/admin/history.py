"""STAND-IN for the history layer (see CONTRACT A): every minute of the window, all zeros.

The real module, which reads the per-minute counters workers write, replaces this one at merge;
the dashboard is built only against these names and signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from geoq.admin.session import Session


@dataclass(frozen=True, slots=True)
class Minute:
    at: int
    processed: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    wait_p50: float | None
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
    minutes: list[Minute]
    types: list[TypeTotals]


def read_history(s: Session, queues: Sequence[str], since: float, now: float | None = None) -> list[QueueHistory]:
    end = int((s.broker.server_time() if now is None else now) // 60 * 60)
    starts = range(end - (int(since) // 60 - 1) * 60, end + 60, 60)
    return [QueueHistory(q, [Minute(at, 0, 0, 0, 0, 0, None, None, None) for at in starts], []) for q in queues]


def downsample(minutes: Sequence[Minute], buckets: int) -> list[Minute]:
    size = max(1, -(-len(minutes) // max(1, buckets)))
    return [_merge(minutes[i:i + size]) for i in range(0, len(minutes), size)]


def fleet_minutes(histories: Sequence[QueueHistory]) -> list[Minute]:
    if not histories:
        return []
    return [_merge(list(group)) for group in zip(*(h.minutes for h in histories))]


def _merge(group: Sequence[Minute]) -> Minute:
    def most(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None
    return Minute(group[0].at, sum(m.processed for m in group), sum(m.succeeded for m in group),
                  sum(m.failed for m in group), sum(m.retried for m in group), sum(m.dead for m in group),
                  most([m.wait_p50 for m in group]), most([m.wait_p95 for m in group]),
                  most([m.wait_p99 for m in group]))
