"""`geoq stats --history` and the reads under it (geoq.admin.history), on history seeded as workers write it."""

from __future__ import annotations

import dataclasses

import pytest

from geoq.admin.history import Minute, QueueHistory, downsample, fleet_minutes, read_history
from geoq.admin.session import Session
from geoq.broker.connection import connect
from geoq.broker.history import HistoryBroker
from geoq.config import default_config
from geoq.history import Tally, bucket_of, hour_blocks

from tests.admin.helpers import redis_now

WEEK = 7 * 86400.0


def seed(redis_url: str, events: list[tuple[str, str, str, float]], waits: list[tuple[str, float, float]] = ()) -> None:
    """Write (queue, type, outcome, at) runs and (queue, waited, at) starts as a worker's flush would."""
    tally = Tally()
    for queue, job_type, label, at in events:
        tally.ended(queue, job_type, label, at)
    for queue, waited, at in waits:
        tally.minute(queue, at).waits[bucket_of(waited)] += 1
    assert all(HistoryBroker(connect(default_config(redis_url).redis)).add(hour_blocks(tally.take()), WEEK))


@pytest.fixture
def now(redis_client) -> float:
    """Redis's time, placed 30 s into a minute so that "a minute ago" is never the current one."""
    t = redis_now(redis_client)
    return t - t % 60 + 30


def test_read_history_gives_every_minute_of_the_window_and_the_types_by_volume(redis_url, now):
    seed(redis_url, [("default", "t.a", "succeeded", now)] * 5 + [("default", "t.b", "retried", now - 120),
                                                                 ("default", "t.b", "dead", now - 120),
                                                                 ("default", "t.c", "cancelled", now - 3 * 3600)],
         [("default", 0.02, now)] * 99 + [("default", 3.0, now)])
    (q,) = read_history(Session(default_config(redis_url)), ["default"], 600, now=now)
    assert [m.at for m in q.minutes] == [int(now // 60 - 9 + i) * 60 for i in range(10)]
    last, two_ago = q.minutes[-1], q.minutes[-3]
    assert (last.processed, last.succeeded, last.failed) == (5, 5, 0)
    assert last.wait_p50 == pytest.approx(0.02, rel=0.2) and last.wait_p99 == pytest.approx(0.02, rel=0.2)
    assert (two_ago.processed, two_ago.failed, two_ago.retried, two_ago.dead, two_ago.wait_p50) == (2, 2, 1, 1, None)
    assert sum(m.processed for m in q.minutes) == 7   # the cancelled run of 3 h ago is outside the window
    assert [(t.type, t.processed, t.failed) for t in q.types][:2] == [("t.a", 5, 0), ("t.b", 2, 2)]


def test_read_history_by_step_sums_each_points_minutes_and_takes_quantiles_of_all_their_runs(redis_url, now):
    seed(redis_url, [("default", "t.a", "succeeded", now - 60 * i) for i in range(10)],
         [("default", 0.01, now)] * 90 + [("default", 2.0, now - 60)] * 10)
    (q,) = read_history(Session(default_config(redis_url)), ["default"], 600, now=now, step=4)
    assert [m.at for m in q.minutes] == [int(now // 60 - 9 + i) * 60 for i in (0, 4, 8)]
    assert [m.processed for m in q.minutes] == [4, 4, 2]
    last = q.minutes[-1]
    assert last.wait_p50 == pytest.approx(0.01, rel=0.3) and last.wait_p99 == pytest.approx(2.0, rel=0.3)
    assert q.minutes[0].wait_p50 is None


def test_downsample_sums_counts_and_keeps_the_worst_wait(now):
    minutes = [Minute(60 * i, i, i, 0, 0, 0, None if i % 2 else float(i), None, None) for i in range(10)]
    points = downsample(minutes, 3)
    assert [p.at for p in points] == [0, 240, 480] and [p.processed for p in points] == [6, 22, 17]
    assert [p.wait_p50 for p in points] == [2.0, 6.0, 8.0]
    assert downsample(minutes, 100) == minutes and downsample([], 5) == []


def test_fleet_minutes_sums_queues_minute_by_minute():
    a = QueueHistory("a", [Minute(0, 1, 1, 0, 0, 0, 0.5, 1.0, 2.0), Minute(60, 2, 0, 2, 2, 0, None, None, None)], [])
    b = QueueHistory("b", [Minute(0, 3, 3, 0, 0, 0, 0.1, 4.0, 4.0), Minute(60, 0, 0, 0, 0, 0, None, None, None)], [])
    assert fleet_minutes([a, b]) == [Minute(0, 4, 4, 0, 0, 0, 0.5, 4.0, 4.0),
                                     Minute(60, 2, 0, 2, 2, 0, None, None, None)]


def test_stats_history_json_gives_each_queue_its_minutes_and_types(cli_json, redis_url, now):
    seed(redis_url, [("default", "t.a", "succeeded", now - 60), ("bulk", "t.b", "dead", now - 60)])
    out = cli_json("stats", "--history", "--since", "5m")
    assert set(out) == {"since", "from", "to", "queues"} and out["since"] == 300
    assert out["to"] - out["from"] == 300
    default = out["queues"]["default"]
    assert len(default["minutes"]) == 5 and set(default["minutes"][0]) == {f.name for f in dataclasses.fields(Minute)}
    assert sum(m["succeeded"] for m in default["minutes"]) == 1
    assert default["types"] == [{"type": "t.a", "processed": 1, "succeeded": 1, "failed": 0, "retried": 0, "dead": 0}]
    only = cli_json("stats", "--history", "--queue", "bulk")
    assert list(only["queues"]) == ["bulk"] and len(only["queues"]["bulk"]["minutes"]) == 60
    assert only["queues"]["bulk"]["types"][0]["dead"] == 1


def test_stats_history_prints_a_row_per_busy_minute_then_the_types(cli, redis_url, now):
    seed(redis_url, [("default", "t.a", "succeeded", now - 60)] * 3 + [("default", "t.a", "retried", now - 60)],
         [("default", 0.5, now - 60)])
    done = cli("stats", "--history", "--since", "10m")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "queue default, last 10m00s:"
    assert lines[1].split() == ["TIME", "PROCESSED", "SUCCEEDED", "FAILED", "RETRIED", "DEAD", "WAIT", "P50",
                                "WAIT", "P95", "WAIT", "P99"]
    assert lines[2].split()[1:6] == ["4", "3", "1", "1", "0"] and len(lines[2].split()) == 9
    assert lines[4].split() == ["TYPE", "PROCESSED", "SUCCEEDED", "FAILED", "RETRIED", "DEAD"]
    assert lines[5].split() == ["t.a", "4", "3", "1", "1", "0"]


def test_a_long_window_prints_a_row_per_hour_and_an_idle_queue_says_so(cli, redis_url, now):
    seed(redis_url, [("default", "t.a", "succeeded", now - 3600 * k) for k in range(5)])
    done = cli("stats", "--history", "--since", "1d", "--queue", "default")
    assert done.returncode == 0, done.stderr
    assert "(per hour; waits: its worst minute's)" in done.stdout.splitlines()[0]
    rows = done.stdout.split("\n\n")[0].splitlines()[2:]
    assert len(rows) == 5 and all(r.split()[2] == "1" for r in rows)
    idle = cli("stats", "--history", "--queue", "quiet")
    assert idle.stdout.strip() == "queue quiet, last 1h00m: no jobs"


@pytest.mark.parametrize("args, message", [
    (["--since", "0"], "--since: expected a duration > 0"),
    (["--since", "soon"], "--since: "),
    (["--since", "400d"], "stats: --since: expected at most 366d, got 400d00h"),
    (["--queue", "no queue"], "queue name 'no queue' must be"),
    (["--watch", "1s"], "stats: --watch does not go with --history"),
])
def test_bad_history_options_are_one_line_usage_errors(cli, error_line, args, message):
    line = error_line(cli("stats", "--history", *args), 2)
    assert message in line


def test_since_or_queue_without_history_is_a_usage_error(cli, error_line):
    assert "--since and --queue go with --history" in error_line(cli("stats", "--since", "1h"), 2)
