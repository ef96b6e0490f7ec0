"""End to end: two worker processes write the job history of what they ran, and it outlives them."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import geoq
from geoq.admin.history import QueueHistory, read_history
from geoq.admin.session import Session
from geoq.config import default_config
from tests.support.dashboard import DashboardProcess, Http
from tests.support.handlers import ledger_counts
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.handlers"
ROUTES = {
    "t.ok": {"handler": f"{H}:ok"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": {"base": "10ms", "max": "20ms"}},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 2, "backoff": {"base": "10ms", "max": "20ms"}},
}
MIX = [("t.ok", {})] * 600 + [("t.flaky", {"failures": 1})] * 250 + [("t.broken", {})] * 150


def history(redis_url: str) -> QueueHistory:
    (q,) = read_history(Session(default_config(redis_url)), ["default"], 3600)
    return q


def totals(q: QueueHistory) -> tuple[int, ...]:
    return tuple(sum(getattr(m, f) for m in q.minutes) for f in ("processed", "succeeded", "failed", "retried", "dead"))


def by_type(q: QueueHistory) -> dict[str, tuple[int, ...]]:
    return {t.type: (t.processed, t.succeeded, t.failed, t.retried, t.dead) for t in q.types}


def dashboard_totals(config: Path) -> tuple[int, dict[str, str]]:
    """What a freshly started `geoq dashboard` shows over the last hour: the jobs-per-minute chart's
    processed points summed, and the job-types table's processed cell per type."""
    with DashboardProcess(config) as dashboard:
        page = Http(dashboard.url).get("/?window=1h")
        assert dashboard.stop()[0] == 0
    assert page.status == 200, page.text
    chart = re.search(r'data-chart="([^"]*)"', page.text)
    assert chart, page.text
    first_chart = json.loads(html.unescape(chart.group(1)))
    processed = next(s["values"] for s in first_chart["series"] if s["label"] == "processed")
    rows = re.findall(r"<tr><td>(t\.\w+)</td><td>([\d,]+)</td>", page.text)
    return sum(v or 0 for v in processed), dict(rows)


def test_two_workers_history_counts_every_run_once_and_survives_their_restart(redis_url, redis_client, ledger,
                                                                               tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 50},
                          history={"flush_every": "1s"})
    client = geoq.Client(redis_url)
    client.enqueue_many(MIX)
    env = {"GEOQ_TEST_LEDGER": ledger_url}
    workers = [WorkerProcess(config, env=env, log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        wait_until(lambda: places(redis_client, ["default"]).total("dead") == 150, timeout=30,
                   message="the always-failing jobs did not all die")
        wait_until(lambda: sum(ledger_counts(ledger_client, "succeeded").values()) == 850, timeout=30,
                   message="not every succeeding job succeeded")
        for w in workers:
            assert w.stop() == 0, w.log()   # the last counts are written at the stop
    finally:
        for w in workers:
            w.kill()
    assert_settled(redis_client, ["default"])
    ran = ledger_counts(ledger_client, "succeeded"), ledger_counts(ledger_client, "failed")
    assert sum(ran[0].values()) == 850 and sum(ran[1].values()) == 250 + 3 * 150

    # 850 succeeded; 250 flaky and 2 x 150 broken runs retried; 150 dead: 1,550 runs, 700 failed.
    expected = (1550, 850, 700, 550, 150)
    first = history(redis_url)
    assert totals(first) == expected
    assert by_type(first) == {"t.ok": (600, 600, 0, 0, 0), "t.flaky": (500, 250, 250, 250, 0),
                              "t.broken": (450, 0, 450, 300, 150)}
    assert any(m.wait_p50 is not None for m in first.minutes)
    assert all(m.wait_p50 is None for m in first.minutes if m.processed == 0)

    workers = [WorkerProcess(config, env=env, log=tmp_path / f"again{i}.log") for i in range(2)]
    try:
        assert totals(history(redis_url)) == expected   # Redis holds it: new workers start from it
        client.enqueue_many([("t.ok", {})] * 10)
        wait_until(lambda: totals(history(redis_url))[:2] == (1560, 860), timeout=15,
                   message="the restarted workers did not add their runs to the history")
        for w in workers:
            assert w.stop() == 0, w.log()
    finally:
        for w in workers:
            w.kill()
    assert by_type(history(redis_url))["t.ok"] == (610, 610, 0, 0, 0)

    # The dashboard keeps nothing of its own: one started afresh, and again after it stopped, charts it all.
    shown = (1560, {"t.ok": "610", "t.flaky": "500", "t.broken": "450"})
    assert dashboard_totals(config) == shown
    assert dashboard_totals(config) == shown
