"""When a schedule's ticks fall: cron expressions in a time zone, or a fixed interval. Pure.

A tick is an instant (unix seconds) that every worker computes alike from the config alone,
so that workers can claim it by its value (geoq.ticker) without electing a leader.

Cron expressions are evaluated by cronsim, not parsed here. It was chosen over croniter
(7.0.0) after checking both across the 2026 DST changes of Europe/Berlin: on the autumn
change, when 02:00-03:00 happens twice, croniter fires "30 2 * * *" twice while cronsim
fires it once, as Vixie/Debian cron does; both run a job set in the spring gap at the
first instant after it (03:00), and both fire "0 * * * *" once per real hour. cronsim also
walks backwards (for the latest tick at or before a time), has no dependencies and ships
type information. Zones come from zoneinfo, with the tzdata package as the database
where the system has none.

``every:`` intervals are aligned to the unix epoch (every: 10m ticks at :00, :10, ...),
whatever the zone, so a restart does not shift them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

_MOST_STEPS = 100   # ticks of cronsim stepped over to get past a repeated hour (a few at most: one per minute of it)
CRON_FORM = "a cron expression of 5 fields (minute hour day month weekday), such as \"0 3 * * *\""
ZONE_FORM = "an IANA time zone such as Europe/Berlin or UTC"


class BadTiming(ValueError):
    """A cron expression or a time zone that cannot be used; the message says which and why."""


def zone(name: str) -> ZoneInfo:
    """The zone named `name`; BadTiming if the database does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path-like or empty name
        raise BadTiming(f"unknown time zone {name!r}") from None


def check_cron(expr: str) -> str:
    """`expr` if cronsim takes it (5 fields; cronsim's optional sixth, seconds, is refused so
    that a schedule means what a crontab line means); BadTiming saying what is wrong."""
    if len(expr.split()) != 5:
        raise BadTiming(f"{len(expr.split())} fields in {expr!r}")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as e:
        raise BadTiming(f"{expr!r}: {e}") from None
    return expr


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression in a zone, or an interval in seconds (`every`); exactly one is set."""

    cron: str | None = None
    zone: str = "UTC"
    every: float | None = None

    def next_after(self, t: float) -> float:
        """The first tick strictly after unix time `t`."""
        if self.every is not None:
            return (math.floor(t / self.every) + 1) * self.every
        return _walk(self, t, reverse=False)

    def latest_at_or_before(self, t: float) -> float:
        """The last tick at or before unix time `t`."""
        if self.every is not None:
            return math.floor(t / self.every) * self.every
        tick = _walk(self, t, reverse=True)
        # Going back from inside a repeated hour, cronsim can also step over the tick that fell
        # in its first pass (02:30 CEST, seen from 02:10 CET): forward steps, which are right, catch up.
        for _ in range(_MOST_STEPS):
            later = _walk(self, tick, reverse=False)
            if later > t:
                return tick
            tick = later
        raise BadTiming(f"no tick of {self.cron!r} found near {t}")   # not reached


def _walk(timing: Timing, t: float, *, reverse: bool) -> float:
    """The first tick after `t` (reverse: a tick at or before it), found with cronsim in the
    timing's zone. cronsim works in whole seconds: going forward it starts from `t`'s second,
    going back from that second included (a time with microseconds counts as its own first
    tick back). Started inside an hour an autumn change repeats, it can answer a tick on the
    wrong side of `t` (found by checking every 37 s of both 2026 changes in Berlin against its
    own iteration, which is right); it is stepped on until the answer is on the right side."""
    assert timing.cron is not None
    at = datetime.fromtimestamp(math.floor(t), zone(timing.zone))
    if reverse:
        at = at.replace(microsecond=1)
    found = CronSim(timing.cron, at, reverse=reverse)
    for _ in range(_MOST_STEPS):
        tick = next(found).timestamp()
        if (tick <= t) if reverse else (tick > t):
            return tick
    raise BadTiming(f"no tick of {timing.cron!r} found near {t}")   # not reached: a DST change repeats one hour
