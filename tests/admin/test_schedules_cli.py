"""`geoq schedules [--json]` and `geoq schedules run NAME`, run as a user would."""

from __future__ import annotations

import json

from geoq import records
from geoq.broker import keys

from tests.admin.helpers import redis_now, run_geoq

CONFIG = """
redis: {{url: "{url}"}}
routes: {{report.build: {{handler: "m:f", queue: bulk}}}}
schedules:
  nightly: {{cron: "0 3 * * *", timezone: Europe/Berlin, type: report.build, payload: {{kind: nightly}}}}
  often: {{every: 10m, type: report.build, queue: default}}
"""


def test_schedules_json_lists_each_with_its_next_run_and_last_run_once_known(redis_url, redis_client, tmp_config):
    config = str(tmp_config(CONFIG.format(url=redis_url)))
    now = redis_now(redis_client)
    redis_client.hset(keys.queue_keys("default").ticks, "often", "1800000000")
    done = run_geoq("-c", config, "schedules", "--json")
    assert (done.returncode, done.stderr) == (0, "")
    nightly, often = json.loads(done.stdout)
    assert (nightly["name"], nightly["queue"], nightly["cron"], nightly["timezone"]) == \
        ("nightly", "bulk", "0 3 * * *", "Europe/Berlin")
    assert now < nightly["next_run"] <= now + 86400 and nightly["last_run"] is None
    assert now < often["next_run"] <= now + 600 and often["next_run"] % 600 == 0
    assert (often["every"], often["last_run"]) == (600.0, 1800000000.0)


def test_schedules_prints_a_table_with_times_in_each_schedules_zone(redis_url, tmp_config):
    config = str(tmp_config(CONFIG.format(url=redis_url)))
    done = run_geoq("-c", config, "schedules")
    assert done.returncode == 0, done.stderr
    head, nightly, often = done.stdout.splitlines()
    assert head.split() == ["SCHEDULE", "TYPE", "QUEUE", "WHEN", "NEXT", "RUN", "LAST", "RUN"]
    assert "03:00:00 CE" in nightly and nightly.rstrip().endswith("-")
    assert "every 10m00s" in often and " UTC" in often


def test_schedules_run_enqueues_one_job_now_and_leaves_the_ticks_alone(redis_url, redis_client, tmp_config):
    config = str(tmp_config(CONFIG.format(url=redis_url)))
    done = run_geoq("-c", config, "schedules", "run", "nightly")
    assert (done.returncode, done.stderr) == (0, "")
    (envelope,) = redis_client.lrange(keys.queue_keys("bulk").ready, 0, -1)
    job = records.decode(envelope, "bulk")
    assert (job.id, job.type, job.payload) == (done.stdout.strip(), "report.build", {"kind": "nightly"})
    assert redis_client.exists(keys.queue_keys("bulk").ticks) == 0


def test_schedules_run_of_an_unknown_name_exits_1_with_one_line(redis_url, redis_client, tmp_config, error_line):
    config = str(tmp_config(CONFIG.format(url=redis_url)))
    line = error_line(run_geoq("-c", config, "schedules", "run", "nighty"), 1)
    assert line == f"geoq: no schedule named 'nighty' in {config} (schedules: nightly, often)"
    assert redis_client.dbsize() == 0
