"""bin/geoq against running workers: stats, workers and job agree with Redis, and
`dead retry --all` brings every dead job back exactly once while new jobs flow."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import geoq
from geoq.broker import keys
from tests.admin.helpers import GEOQ, cli_env, run_geoq
from tests.support.handlers import ledger_counts
from tests.support.admin_handlers import BREAK, RELEASE
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

AH = "tests.support.admin_handlers"
ROUTES = {
    "t.breakable": {"handler": f"{AH}:breakable", "max_retries": 0},
    "t.hold": {"handler": f"{AH}:hold"},
    "t.ok": {"handler": "tests.support.handlers:ok"},
}



def flow(client, fresh, problems):
    """1,000 new jobs in steps of 10, each step once the last one has run: a steady stream."""
    try:
        for _ in range(100):
            step = [j.id for j in client.enqueue_many([("t.ok", {}) for _ in range(10)])]
            fresh.extend(step)
            wait_until(lambda: client.status(step[-1]).state == "succeeded", timeout=20)
    except BaseException as e:  # noqa: BLE001 - reported by the test thread
        problems.append(e)


def cli_json(config, *args):
    done = run_geoq("-c", str(config), "--json", *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return json.loads(done.stdout)


def test_stats_workers_and_job_agree_with_redis_while_a_worker_runs_a_job(redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES,
                          worker={"concurrency": 7, "heartbeat": "200ms", "dead_after": "5s"})
    client = geoq.Client(redis_url)
    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        held = client.enqueue("t.hold", {})
        wait_until(lambda: ledger_client.llen("ledger:started") == 1, timeout=20, message="the job did not start")
        wait_until(lambda: client.status(held.id).state == "running", timeout=10)

        registered = {k.decode(): json.loads(v) for k, v in redis_client.hgetall(keys.WORKERS).items()}
        (worker_id,) = registered
        wait_until(lambda: cli_json(config, "workers")[0]["in_flight"] == 1, timeout=15,
                   message="the heartbeat never reported the job in flight")
        (listed,) = cli_json(config, "workers")
        info = json.loads(redis_client.hget(keys.WORKERS, worker_id))
        assert {k: listed[k] for k in ("id", "host", "pid", "queues", "concurrency", "in_flight", "started_at")} == {
            k: info[k] for k in ("id", "host", "pid", "queues", "concurrency", "in_flight", "started_at")}
        assert listed["alive"] is True and listed["pid"] == worker.pid and 0 <= listed["heartbeat_age"] < 15

        stats = cli_json(config, "stats")
        assert stats["queues"]["default"] == {"ready": 0, "scheduled": 0, "processing": 1, "dead": 0,
                                              "dead_trimmed": 0, "paused": False}
        (alive,) = stats["workers"]
        assert (alive["id"], alive["concurrency"], alive["in_flight"]) == (worker_id, 7, 1)
        assert alive["heartbeat_age"] >= 0
        assert redis_client.llen(keys.queue_keys("default").processing(worker_id)) == 1

        running = cli_json(config, "job", held.id)
        assert (running["state"], running["type"], running["attempts"]) == ("running", "t.hold", 1)

        ledger_client.set(RELEASE, 1)
        wait_until(lambda: client.status(held.id).state == "succeeded", timeout=10)
        assert worker.stop() == 0, worker.log()

    finished = cli_json(config, "job", held.id)
    assert (finished["state"], finished["type"], finished["attempts"], finished["result"]) == (
        "succeeded", "t.hold", 1, {"held": True})
    assert cli_json(config, "workers") == []
    assert_settled(redis_client, ["default"])


def test_dead_retry_all_while_two_workers_run_and_new_jobs_flow_runs_every_dead_job_once_more(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 100})
    env = {"GEOQ_TEST_LEDGER": ledger_url}
    client = geoq.Client(redis_url)
    dead = keys.queue_keys("default").dead
    ledger_client.set(BREAK, 1)
    broken = [j.id for j in client.enqueue_many([("t.breakable", {"n": n}) for n in range(300)])]

    with WorkerProcess(config, env=env, log=tmp_path / "w1.log") as w1, \
            WorkerProcess(config, env=env, log=tmp_path / "w2.log") as w2:
        wait_until(lambda: redis_client.zcard(dead) == 300, timeout=30, message="the broken jobs did not all die")
        assert {d["id"] for d in cli_json(config, "dead", "list", "--limit", "0")} == set(broken)
        ledger_client.delete(BREAK)

        fresh: list[str] = []
        problems: list[BaseException] = []
        producer = threading.Thread(target=flow, args=(client, fresh, problems))
        producer.start()
        wait_until(lambda: len(fresh) >= 200, timeout=20, message="new jobs are not flowing")
        admins = [subprocess.Popen([sys.executable, str(GEOQ), "-c", str(config), "--json", "dead", "retry", "--all"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
                  for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in admins]
        producer.join(60)
        assert problems == [] and not producer.is_alive()

        assert [p.returncode for p in admins] == [0, 0], [err for _, err in outs]
        retried = [set(json.loads(out)["ids"]) for out, _ in outs]
        assert not retried[0] & retried[1] and retried[0] | retried[1] == set(broken)
        wait_until(lambda: sum(ledger_counts(ledger_client, "succeeded").values()) == 1300, timeout=30,
                   message="not every retried and new job succeeded")
        stats = cli_json(config, "stats")
        assert len(stats["workers"]) == 2 and all(w["concurrency"] == 100 for w in stats["workers"])
        assert w1.stop() == 0, w1.log()
        assert w2.stop() == 0, w2.log()

    succeeded, failed = ledger_counts(ledger_client, "succeeded"), ledger_counts(ledger_client, "failed")
    assert set(succeeded) == set(broken) | set(fresh) and set(succeeded.values()) == {1}
    assert set(failed) == set(broken) and set(failed.values()) == {1}
    assert len(fresh) == 1000
    settled = assert_settled(redis_client, ["default"])
    assert settled.dead["default"] == []
    assert cli_json(config, "stats")["queues"]["default"] == {"ready": 0, "scheduled": 0, "processing": 0, "dead": 0,
                                                              "dead_trimmed": 0, "paused": False}
    again = cli_json(config, "job", broken[0])
    assert (again["state"], again["attempts"], again["result"]) == ("succeeded", 1, {"attempt": 1})
