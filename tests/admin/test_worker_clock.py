"""A worker (or a producer) whose clock runs 2 h behind leaks nothing (issue 11, item 9).

The worker runs as a real subprocess whose time.time() is shifted by a sitecustomize
shim on its PYTHONPATH: its host clock is wrong, Redis's is right. `stats` and `workers`
must show it beating now, its jobs must run on time, every time it stores (history,
deaths, due times) must be Redis's, and so must the clock its wait-time metric reads. The CLI enqueuing with the same shift must store
Redis's enqueue time too.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path

import geoq
from geoq.broker import keys
from tests.admin.helpers import cli_env, redis_now, run_geoq
from tests.support.keyspace import places
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WorkerProcess, write_config

SHIFT = -7200.0     # the worker's clock runs 2 h behind
NEAR = 60.0         # a stored time within a minute of Redis's is Redis's, not the shifted one
H = "tests.support.handlers"
ROUTES = {
    "t.started": {"handler": f"{H}:started"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": {"base": "500ms", "max": "500ms"}},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 1, "backoff": {"base": "500ms", "max": "500ms"}},
}
K = keys.queue_keys("default")


def shifted_clock(tmp_path: Path) -> str:
    """A PYTHONPATH on which every time.time() of the process runs SHIFT seconds off."""
    shim = tmp_path / "clock_shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        f"import time\n_real = time.time\ntime.time = lambda: _real() + {SHIFT!r}\n")
    return f"{shim}{os.pathsep}{ROOT}"


def test_a_worker_2h_behind_shows_a_fresh_heartbeat_and_runs_and_stores_jobs_by_redis_time(
        redis_url, redis_client, ledger, tmp_path):
    port = free_port()
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"heartbeat": "1s", "dead_after": "4s"},
                          metrics={"listen": f"127.0.0.1:{port}"})
    pythonpath = shifted_clock(tmp_path)
    client = geoq.Client(redis_url)
    with WorkerProcess(config, env={**ledger.env, "PYTHONPATH": pythonpath}):
        wait_until(lambda: redis_client.hlen(keys.WORKERS) == 1, timeout=20, message="the worker never registered")
        now_job = client.enqueue("t.started", {})
        delayed = client.enqueue("t.started", {}, delay=2)
        retried = client.enqueue("t.flaky", {"failures": 1})
        broken = client.enqueue("t.broken", {})
        due = redis_now(redis_client) + 2 - 0.01
        for job in (now_job, delayed, retried):
            wait_until(lambda: client.status(job.id).state == "succeeded", timeout=30,
                       message=f"{job.id} did not run on time")
        wait_until(lambda: client.status(broken.id).state == "dead", timeout=30, message="the broken job never died")

        started = {k.decode(): float(v) for k, v in ledger.client.hgetall("ledger:started_at").items()}
        assert abs(started[now_job.id] - SHIFT - redis_now(redis_client)) < NEAR   # the shim does shift it
        assert started[delayed.id] - SHIFT >= due                                    # not before its due time

        (stat,) = run_json(config, pythonpath, "stats")["workers"]
        (listed,) = run_json(config, pythonpath, "workers")
        assert stat["heartbeat_age"] < 5 and listed["heartbeat_age"] < 5, (stat, listed)
        assert abs(listed["started_at"] - redis_now(redis_client)) < NEAR

        (record,) = [json.loads(m) for m in redis_client.zrange(K.dead, 0, -1)]
        assert abs(record["died_at"] - redis_now(redis_client)) < NEAR
        assert [abs(at - redis_now(redis_client)) < NEAR for at, _ in record["history"]] == [True, True]
        runs, waited = wait_metric(port)
        assert runs == 6 and 0 < waited < NEAR, (runs, waited)   # not clipped to 0, nor 2 h

        later = run_geoq("-c", str(config), "enqueue", "t.started", "--delay", "1h",
                         env=cli_env(PYTHONPATH=pythonpath))
        assert later.returncode == 0, later.stderr
    ((envelope, score),) = redis_client.zrange(K.scheduled, 0, -1, withscores=True)
    body = json.loads(envelope)
    assert body["i"] == later.stdout.strip() and abs(body["e"] - redis_now(redis_client)) < NEAR
    assert abs(body["u"] - score) < 1
    p = places(redis_client, ["default"])
    assert (p.total("ready"), p.total("scheduled"), p.total("processing"), len(p.dead["default"])) == (0, 1, 0, 1)


def run_json(config: Path, pythonpath: str, *args: str) -> object:
    done = run_geoq("-c", str(config), "--json", *args, env=cli_env(PYTHONPATH=pythonpath))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return json.loads(done.stdout)


def wait_metric(port: int) -> tuple[float, float]:
    """(count, sum) of geoq_job_wait_seconds for the default queue, scraped from the worker."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = dict(re.findall(r'^geoq_job_wait_seconds_(count|sum)\{queue="default"\} (\S+)$', text, re.M))
    return float(found["count"]), float(found["sum"])
