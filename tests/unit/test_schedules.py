"""Schedules: when ticks fall (cron in a zone across DST, every:), and one clear line per bad schedule."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from geoq.config import load_config
from geoq.errors import ConfigError
from geoq.schedules import Timing

MakeConfig = Callable[..., Path]
UTC = timezone.utc


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def ticks(timing: Timing, start: float, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = timing.next_after(t)
        out.append(datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M"))
    return out


def test_a_daily_cron_in_berlin_fires_at_three_when_the_spring_change_skips_half_past_two() -> None:
    timing = Timing(cron="30 2 * * *", zone="Europe/Berlin")
    # 02:30 CET = 01:30 UTC; on 29 March 02:00-03:00 does not exist: 03:00 CEST = 01:00 UTC; then CEST
    assert ticks(timing, utc(2026, 3, 27, 12), 3) == ["03-28 01:30", "03-29 01:00", "03-30 00:30"]


def test_a_daily_cron_in_berlin_fires_once_when_the_autumn_change_repeats_half_past_two() -> None:
    timing = Timing(cron="30 2 * * *", zone="Europe/Berlin")
    # 25 October: 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET); the first only
    assert ticks(timing, utc(2026, 10, 23, 12), 3) == ["10-24 00:30", "10-25 00:30", "10-26 01:30"]


@pytest.mark.parametrize("start", [utc(2026, 3, 28, 22), utc(2026, 10, 24, 21)])
def test_an_hourly_cron_in_berlin_fires_once_every_real_hour_across_either_change(start: float) -> None:
    timing = Timing(cron="0 * * * *", zone="Europe/Berlin")
    got = [timing.next_after(start)]
    for _ in range(7):
        got.append(timing.next_after(got[-1]))
    assert [b - a for a, b in zip(got, got[1:])] == [3600.0] * 7


def test_the_latest_tick_at_or_before_a_time_includes_that_time() -> None:
    timing = Timing(cron="0 3 * * *", zone="Europe/Berlin")
    three = utc(2026, 12, 5, 2)  # 03:00 CET
    assert timing.latest_at_or_before(three) == three
    assert timing.latest_at_or_before(three + 0.5) == three
    assert timing.latest_at_or_before(three - 0.5) == three - 86400
    assert timing.next_after(three) == three + 86400


def test_every_ticks_are_aligned_to_the_epoch() -> None:
    timing = Timing(every=600.0)
    assert timing.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 10)
    assert timing.latest_at_or_before(utc(2026, 1, 1, 10, 10)) == utc(2026, 1, 1, 10, 10)


# --- the config ------------------------------------------------------------------------


ROUTES = "routes: {report.build: {handler: m:f, queue: bulk}}\n"


def load(make: MakeConfig, text: str):  # type: ignore[no-untyped-def]
    return load_config(make(ROUTES + text), env={})


def test_a_schedule_gets_its_route_queue_and_utc_unless_told(tmp_config: MakeConfig) -> None:
    config = load(tmp_config, """
schedules:
  nightly: {cron: "0 3 * * *", type: report.build, payload: {kind: nightly}}
  often: {every: 10m, type: report.build, queue: default, catch_up: 1h}
""")
    nightly, often = config.schedules["nightly"], config.schedules["often"]
    assert (nightly.queue, nightly.timezone, nightly.payload, nightly.catch_up) == ("bulk", "UTC", {"kind": "nightly"}, 0.0)
    assert (often.queue, often.every, often.cron, often.catch_up) == ("default", 600.0, None, 3600.0)


@pytest.mark.parametrize("schedule, expected", [
    ('{cron: "0 3 * *", type: report.build}',
     'schedules.s.cron (line 4): expected a cron expression of 5 fields'),
    ('{cron: "61 3 * * *", type: report.build}',
     "schedules.s.cron (line 4): expected a cron expression of 5 fields (minute hour day month weekday), "
     "such as \"0 3 * * *\", got '61 3 * * *': Bad minute"),
    ('{cron: "0 3 * * *", timezone: Europe/Berlim, type: report.build}',
     "schedules.s.timezone (line 4): expected an IANA time zone such as Europe/Berlin or UTC, got 'Europe/Berlim'"),
    ('{cron: "0 3 * * *", type: report.biuld}',
     "schedules.s.type (line 4): expected the type of a route under routes, got 'report.biuld', which no route names"),
    ('{cron: "0 3 * * *", every: 10m, type: report.build}',
     "schedules.s.every (line 4): expected cron or every, not both, got both"),
    ('{type: report.build}',
     "schedules.s (line 4): expected cron: or every: (when its jobs run), got neither"),
    ('{every: 0s, type: report.build}',
     "schedules.s.every (line 4): expected a duration > 0"),
    ('{every: 1m}',
     "schedules.s.type (line 4): expected a value: this key is required, got nothing"),
    ('{every: 1m, type: report.build, payload: {day: 2026-01-01}}',
     "schedules.s.payload (line 4): expected a JSON value (quote dates and times), got a value holding a date"),
])
def test_a_bad_schedule_is_one_line_naming_the_file_key_and_line(tmp_config: MakeConfig, schedule: str,
                                                                   expected: str) -> None:
    path = tmp_config(ROUTES + "\nschedules:\n  s: " + schedule + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {expected}"), message


def test_a_schedule_name_that_cannot_go_into_a_job_id_is_refused(tmp_config: MakeConfig) -> None:
    path = tmp_config(ROUTES + 'schedules:\n  "a b": {every: 1m, type: report.build}\n')
    with pytest.raises(ConfigError, match=r"schedules\.a b \(line 3\): expected a schedule name of 1-100 characters"):
        load_config(path, env={})


def test_times_inside_the_repeated_autumn_hour_see_the_ticks_on_their_right_side() -> None:
    """cronsim started inside the repeated hour can answer on the wrong side; geoq.schedules steps on."""
    timing = Timing(cron="30 2 * * *", zone="Europe/Berlin")
    inside = utc(2026, 10, 25, 1, 0, 34)   # 02:00:34 CET, the second pass of that hour
    assert timing.latest_at_or_before(inside) == utc(2026, 10, 25, 0, 30)
    assert timing.next_after(inside) == utc(2026, 10, 26, 1, 30)
    hourly = Timing(cron="0 * * * *", zone="Europe/Berlin")
    assert hourly.next_after(inside) == utc(2026, 10, 25, 2)
    assert hourly.latest_at_or_before(inside) == utc(2026, 10, 25, 1)
