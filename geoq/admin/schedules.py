"""`geoq schedules [--json]` and `geoq schedules run NAME`: the config's recurring jobs."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from geoq.admin import render
from geoq.admin.errors import NotFound
from geoq.admin.session import Session
from geoq.config import ScheduleConfig
from geoq.exits import EXIT_OK
from geoq.schedules import zone
from geoq.ticker import last_runs


def schedules(s: Session, args: argparse.Namespace) -> int:
    if args.schedules_command == "run":
        return run(s, args)
    listed = list(s.config.schedules.values())
    broker = s.client.broker
    now, last = s.read(lambda: (broker.server_time(), last_runs(broker, listed)))
    rows = [_entry(schedule, now, ran) for schedule, ran in zip(listed, last)]
    if args.json:
        print(render.to_json(rows))
    elif not rows:
        print(f"no schedules in {s.config.path}")
    else:
        print(render.table(("SCHEDULE", "TYPE", "QUEUE", "WHEN", "NEXT RUN", "LAST RUN"),
                           [_row(schedule, e) for schedule, e in zip(listed, rows)]))
    return EXIT_OK


def _entry(schedule: ScheduleConfig, now: float, last: float | None) -> dict[str, Any]:
    """One schedule for scripts: next_run and last_run in unix seconds (last_run null if unknown)."""
    return {"name": schedule.name, "type": schedule.type, "queue": schedule.queue, "cron": schedule.cron,
            "every": schedule.every, "timezone": schedule.timezone,
            "next_run": schedule.timing.next_after(now), "last_run": last}


def _row(schedule: ScheduleConfig, e: dict[str, Any]) -> tuple[Any, ...]:
    when = f"every {render.age(schedule.every)}" if schedule.every is not None else \
        f"{schedule.cron} ({schedule.timezone})"
    return (schedule.name, schedule.type, schedule.queue, when, _at(e["next_run"], schedule.timezone),
            _at(e["last_run"], schedule.timezone))


def _at(t: float | None, zone_name: str) -> str:
    """A time in the schedule's own zone, with the zone's abbreviation (CET, CEST, UTC)."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S %Z")


def run(s: Session, args: argparse.Namespace) -> int:
    """Enqueue one job of the schedule now, outside its ticks (its ticks are unchanged)."""
    schedule = s.config.schedules.get(args.name)
    if schedule is None:
        known = ", ".join(s.config.schedules) or "none"
        raise NotFound(f"no schedule named {args.name!r} in {s.config.path} (schedules: {known})")
    job = s.client.enqueue(schedule.type, schedule.payload, queue=schedule.queue)
    print(render.to_json({"id": job.id, "type": job.type, "queue": job.queue}) if args.json else job.id)
    return EXIT_OK
