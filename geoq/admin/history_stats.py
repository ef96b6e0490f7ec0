"""`geoq stats --history [--since 1h] [--queue Q] [--json]`: what the queues did, minute by minute.

For people: per queue, a row for each minute that had jobs (each hour, for windows over
MINUTE_ROWS_UP_TO; waits then the worst minute's), then the totals per job type. For scripts
(`--json`):

    {"since": SECONDS, "from": UNIX, "to": UNIX,
     "queues": {"NAME": {"minutes": [{"at", "processed", "succeeded", "failed", "retried", "dead",
                                      "wait_p50", "wait_p95", "wait_p99"}, ...],   # every minute, oldest first
                         "types": [{"type", "processed", "succeeded", "failed", "retried", "dead"}, ...]}}}

`at`, `from` and `to` are unix seconds (Redis time; `to` is the end of the last minute), waits are
seconds or null when no job started in that minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Sequence

from geoq import job as jobs
from geoq.admin import render
from geoq.admin.errors import UsageError
from geoq.admin.history import Minute, QueueHistory, downsample, read_history
from geoq.admin.session import Session
from geoq.exits import EXIT_OK

MINUTE_ROWS_UP_TO = 3 * 3600.0   # longer windows print a row per hour
LONGEST = 366 * 86400.0          # history.keep's own bound
COUNT_HEADERS = ("PROCESSED", "SUCCEEDED", "FAILED", "RETRIED", "DEAD")


def show(s: Session, args: argparse.Namespace) -> int:
    """The command: check the options, read, print."""
    if args.watch is not None:
        raise UsageError("stats: --watch does not go with --history")
    if args.since > LONGEST:
        raise UsageError(f"stats: --since: expected at most 366d, got {render.age(args.since)}")
    queues = [jobs.check_queue(args.queue)] if args.queue else s.read(s.queues)
    histories = read_history(s, queues, args.since)
    print(render.to_json(history_json(histories, args.since)) if args.json else history_text(histories, args.since))
    return EXIT_OK


def check_options(args: argparse.Namespace) -> None:
    """--since and --queue are --history's: alone they would be ignored, so they are refused."""
    if not args.history and (args.since is not None or args.queue is not None):
        raise UsageError("stats: --since and --queue go with --history")
    if args.history and args.since is None:
        args.since = 3600.0


def history_json(histories: Sequence[QueueHistory], since: float) -> dict[str, Any]:
    first = histories[0].minutes if histories else []
    return {"since": since, "from": first[0].at if first else None, "to": first[-1].at + 60 if first else None,
            "queues": {q.queue: {"minutes": [dataclasses.asdict(m) for m in q.minutes],
                                 "types": [dataclasses.asdict(t) for t in q.types]} for q in histories}}


def history_text(histories: Sequence[QueueHistory], since: float) -> str:
    hourly = since > MINUTE_ROWS_UP_TO
    parts = []
    for q in histories:
        rows = [m for m in (_hours(q.minutes) if hourly else q.minutes) if m.processed or m.wait_p50 is not None]
        title = f"queue {q.queue}, last {render.age(since)}"
        title += " (per hour; waits: its worst minute's)" if hourly else ""
        if not rows:
            parts.append(f"{title}: no jobs")
            continue
        parts += [title + ":", render.table(("TIME", *COUNT_HEADERS, "WAIT P50", "WAIT P95", "WAIT P99"),
                                            [_row(m, since) for m in rows]), "",
                  render.table(("TYPE", *COUNT_HEADERS),
                               [(t.type, t.processed, t.succeeded, t.failed, t.retried, t.dead) for t in q.types]), ""]
    return "\n".join(parts).rstrip("\n")


def _hours(minutes: Sequence[Minute]) -> list[Minute]:
    """The minutes summed per clock hour (the first and last hours of the window may be partial)."""
    by_hour: dict[int, list[Minute]] = {}
    for m in minutes:
        by_hour.setdefault(m.at // 3600, []).append(m)
    return [downsample(group, 1)[0] for _, group in sorted(by_hour.items())]


def _row(m: Minute, since: float) -> tuple[Any, ...]:
    stamp = time.strftime("%m-%d %H:%M" if since > 86400 else "%H:%M", time.localtime(m.at))
    return (stamp, m.processed, m.succeeded, m.failed, m.retried, m.dead,
            _wait(m.wait_p50), _wait(m.wait_p95), _wait(m.wait_p99))


def _wait(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f}ms" if seconds < 0.1 else render.age(seconds)
