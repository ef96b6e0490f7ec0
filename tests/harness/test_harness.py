"""geoq.testing.Harness: a worker's rules in the test's own process, on a clock the test moves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from geoq.middleware import Middleware
from geoq.testing import Harness, HarnessError, StillRunning
from tests.support import harness_handlers
from tests.support.harness_handlers import RAN

MakeConfig = Callable[..., Path]
H = "tests.support.harness_handlers"
ROOT = Path(__file__).resolve().parents[2]

CONFIG = f"""
routes:
  report.build: {{handler: "{H}:report", queue: bulk}}
  sync.flaky: {{handler: "{H}:flaky", max_retries: 2, backoff: {{base: 1s, max: 10s}}}}
  sync.later: {{handler: "{H}:later"}}
  sync.stuck: {{handler: "{H}:stuck", timeout: 200ms}}
schedules:
  digest: {{every: 10m, type: report.build, payload: {{id: 0}}}}
"""


@pytest.fixture(autouse=True)
def fresh_record():
    RAN.clear()
    harness_handlers.RELEASE.clear()
    yield
    harness_handlers.RELEASE.set()   # a stuck handler's thread ends with its test


def test_a_readme_style_test_runs_delays_retries_and_a_schedule_in_well_under_a_second(tmp_config: MakeConfig):
    began = time.monotonic()
    with Harness(tmp_config(CONFIG), start=1_800_000_030.0) as h:
        job = h.client.enqueue("report.build", {"id": 7}, delay=3600)
        flaky = h.client.enqueue("sync.flaky", {"failures": 1})
        dead = h.client.enqueue("sync.flaky", {"failures": 9})
        assert h.drain() == 2                                   # first runs: the delayed job is not due
        assert h.client.status(job.id).state == "scheduled"
        assert h.client.status(flaky.id).state == "scheduled"  # its retry waits for the clock
        h.advance(3600)                                         # six ticks of digest on the way
        assert h.drain() == 1 + 6 + 1 + 1                       # the delayed job, the ticks, both retries
        h.advance(10)                                           # past the second backoff (at most 2s)
        h.drain()
        assert h.client.status(job.id).state == "succeeded"
        assert h.client.result(job.id) == {"rows": 12, "id": 7}
        assert h.client.status(flaky.id).state == "succeeded"
        st = h.client.status(dead.id)
        assert (st.state, st.reason, st.attempts) == ("dead", "max_retries", 3)
        assert h.drain() == 0
    digests = [i for t, i, _ in RAN if t == "report.build" and i != job.id]
    assert digests == [f"bulk:sched:digest:{1_800_000_000 + 600 * n}" for n in range(1, 7)]
    assert time.monotonic() - began < 5.0   # about 0.1s measured; generous for a loaded machine


def test_a_requested_retry_waits_exactly_its_delay_on_the_harness_clock(tmp_config: MakeConfig):
    with Harness(tmp_config(CONFIG), start=1_800_000_030.0) as h:   # no digest tick within the next minute
        job = h.client.enqueue("sync.later")
        h.drain()
        h.advance(59.999)
        assert h.drain() == 0
        h.advance(0.001)
        assert h.drain() == 1
        assert h.client.status(job.id).state == "succeeded"
    assert [a for _, _, a in RAN] == [1, 2]


def test_a_job_of_no_route_is_dead_as_a_worker_would_bury_it(tmp_config: MakeConfig):
    with Harness(tmp_config(CONFIG)) as h:
        job = h.client.enqueue("no.such", {}, queue="bulk")
        assert h.drain() == 1
        st = h.client.status(job.id)
        assert (st.state, st.reason) == ("dead", "unknown_type")


def test_drain_raises_for_a_job_still_running_after_its_timeout(tmp_config: MakeConfig):
    with Harness(tmp_config(CONFIG)) as h:
        job = h.client.enqueue("sync.stuck")
        began = time.monotonic()
        with pytest.raises(StillRunning, match=rf"job {job.id} of type sync.stuck was still running after its "
                                              r"timeout of 0.2s"):
            h.drain()
        assert time.monotonic() - began < 5.0


def test_a_berlin_cron_fires_at_the_right_instants_across_both_dst_changes_of_2026(tmp_config: MakeConfig):
    config = tmp_config(f"""
routes: {{report.build: {{handler: "{H}:report"}}}}
schedules:
  daily: {{cron: "30 2 * * *", timezone: Europe/Berlin, type: report.build}}
  hourly: {{cron: "0 * * * *", timezone: Europe/Berlin, type: report.build}}
""")
    fired: dict[str, list[str]] = {"daily": [], "hourly": []}
    for start in (datetime(2026, 3, 28, 20, tzinfo=timezone.utc), datetime(2026, 10, 24, 20, tzinfo=timezone.utc)):
        RAN.clear()
        with Harness(config, start=start) as h:
            for _ in range(3 * 4):
                h.advance(3 * 3600 / 2)   # 18 hours in steps of 1.5 h
                h.drain()
        for _, job_id, _ in RAN:
            name, tick = job_id.split(":")[2:]
            fired[name].append(datetime.fromtimestamp(int(tick), timezone.utc).strftime("%m-%d %H:%M"))
    # 02:30 CET = 01:30 UTC; 29 March has no 02:30: 03:00 CEST = 01:00 UTC; 25 October's first 02:30 only
    assert fired["daily"] == ["03-29 01:00", "10-25 00:30"]
    hours = fired["hourly"]
    assert len(hours) == len(set(hours)) == 2 * 18   # once per real hour through either change
    assert "03-29 01:00" in hours and "10-25 00:00" in hours and "10-25 01:00" in hours


def test_the_harness_uses_the_redis_geoq_test_redis_url_names(tmp_config: MakeConfig, redis_url: str, redis_client,
                                                               monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_REDIS_URL", redis_url)
    with Harness(tmp_config(CONFIG)) as h:
        job = h.client.enqueue("report.build", {"id": 1})
        assert redis_client.llen("geoq:{bulk}:ready") == 1
        h.drain()
        assert h.client.status(job.id).state == "succeeded"
    assert redis_client.exists(f"geoq:{{bulk}}:done:{job.id}") == 1


def test_without_redis_server_on_path_the_harness_says_so_in_one_line(tmp_config: MakeConfig, tmp_path: Path,
                                                                      monkeypatch):
    monkeypatch.delenv("GEOQ_TEST_REDIS_URL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarnessError) as e:
        with Harness(tmp_config(CONFIG)):
            pass
    assert str(e.value) == ("geoq.testing needs redis-server on PATH (or GEOQ_TEST_REDIS_URL naming a Redis "
                            "database it may empty)")


def test_importing_geoq_testing_imports_no_gevent():
    code = "import sys, geoq.testing; print('gevent' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


def test_the_readmes_testing_example_passes_against_a_config_with_that_route(tmp_path: Path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Testing your jobs\n", 1)[1].split("\n## ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dev.yaml").write_text(f'routes: {{report.build: {{handler: "{H}:report"}}}}\n')
    monkeypatch.chdir(tmp_path)
    space: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), space)
    space["test_report"]()  # type: ignore[operator]
    assert [t for t, _, _ in RAN] == ["report.build"]


def test_the_harness_runs_middleware_hooks_as_producer_and_worker_would(tmp_config: MakeConfig):
    seen: list[str] = []

    class Recorder(Middleware):
        def before_enqueue(self, job):  # type: ignore[no-untyped-def]
            seen.append(f"enqueue {job.type}")
            return job

        def before_run(self, job):  # type: ignore[no-untyped-def]
            seen.append(f"run {job.attempt}")

        def after_run(self, job, outcome):  # type: ignore[no-untyped-def]
            seen.append(f"{outcome.label} {job.attempt}")

    with Harness(tmp_config(CONFIG), start=1_800_000_030.0, middleware=[Recorder()]) as h:
        h.client.enqueue("sync.flaky", {"failures": 1})
        h.drain()
        h.advance(1)
        h.drain()
    assert seen == ["enqueue sync.flaky", "run 1", "retried 1", "run 2", "succeeded 2"]
