"""End to end: `geoq-worker CONFIG --processes 2`, a parent keeping two worker processes running."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

import geoq
from geoq import records
from tests.metrics.conftest import get
from tests.support.handlers import ledger_counts
from tests.support.keyspace import assert_settled, places
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, run_worker_once, write_config

H = "tests.support.handlers"
ROUTES = {"t.ok": {"handler": f"{H}:ok"}}
TWO = ["--processes", "2"]
# Quick liveness so a killed child's jobs come back within seconds.
FAST_LIVENESS = {"heartbeat": "1s", "dead_after": "3s"}




def log_of(worker: WorkerProcess) -> str:
    """The parent's and its children's output (they share the file), readable after stop()."""
    return worker.log_path.read_text(errors="replace")


def registered(client: redis.Redis) -> dict[str, dict]:
    """Worker id -> its registered description (host, pid, ...)."""
    return {k.decode(): json.loads(v) for k, v in client.hgetall("geoq:workers").items()}


def held_by(client: redis.Redis, worker_id: str) -> list[str]:
    """Ids of the jobs in one worker's processing list of the default queue."""
    return [records.decode(e, "default").id for e in client.lrange(f"geoq:{{default}}:processing:{worker_id}", 0, -1)]


def two_children(client: redis.Redis, parent: int) -> dict[str, dict]:
    workers = wait_until(lambda: len(w := registered(client)) == 2 and w, timeout=20,
                         message="two worker processes did not register")
    pids = {w["pid"] for w in workers.values()}
    assert len(pids) == 2 and parent not in pids, workers
    return workers


def port_pair() -> int:
    """A port P with P and P + 1 both free now (child 0 serves on P, child 1 on P + 1)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue


def succeeded_total(port: int) -> float:
    reply = get(port, "/metrics")
    assert reply.status == 200, reply
    return sum(s.value for family in text_string_to_metric_families(reply.body) for s in family.samples
               if s.name == "geoq_jobs_total" and s.labels["outcome"] == "succeeded")


def test_two_processes_share_the_work_and_each_serves_metrics_on_its_own_port(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    port = port_pair()
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 50},
                          metrics={"listen": f"127.0.0.1:{port}"})
    with WorkerProcess(config, TWO, env={"GEOQ_TEST_LEDGER": ledger_url}) as parent:
        two_children(redis_client, parent.pid)  # both block on the queue before the jobs arrive
        ids = {j.id for j in geoq.Client(redis_url).enqueue_many([("t.ok", {"sleep": 0.01})] * 2000)}
        wait_until(lambda: len(ledger_counts(ledger_client)) == 2000, timeout=30, message="not every job succeeded")
        totals = wait_until(lambda: (t := [succeeded_total(port), succeeded_total(port + 1)]) and sum(t) == 2000
                            and t, timeout=10, message="the two endpoints do not add up to 2000 jobs")
        assert all(t > 0 for t in totals), totals
        assert parent.stop() == 0, log_of(parent)
    assert set(ledger_counts(ledger_client)) == ids
    assert_settled(redis_client, ["default"])
    assert registered(redis_client) == {}


def test_a_child_killed_while_it_holds_jobs_is_restarted_and_its_jobs_run_again(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 20, **FAST_LIVENESS})
    with WorkerProcess(config, TWO, env={"GEOQ_TEST_LEDGER": ledger_url}) as parent:
        before = two_children(redis_client, parent.pid)
        ids = {j.id for j in geoq.Client(redis_url).enqueue_many([("t.ok", {"sleep": 1.0})] * 120)}
        victim, held = wait_until(lambda: next(((w, h) for w in before if (h := held_by(redis_client, w))), None),
                                  timeout=10, message="no child took jobs")
        os.kill(before[victim]["pid"], signal.SIGKILL)
        wait_until(lambda: any(w not in before for w in registered(redis_client)), timeout=15,
                   message="the killed child was not restarted")
        wait_until(lambda: victim not in registered(redis_client), timeout=15,
                   message="the killed child's registration was not reaped")
        wait_until(lambda: set(ledger_counts(ledger_client)) == ids, timeout=30, message="not every job succeeded")
        assert parent.stop() == 0, log_of(parent)
    log = log_of(parent)
    assert f"(pid {before[victim]['pid']}) was killed by signal SIGKILL; restarting it in" in log, log
    client = geoq.Client(redis_url)
    # A run cut short by the kill counts: the job's next run was its second.
    assert any(client.result(i, timeout=1)["attempt"] >= 2 for i in held)
    assert_settled(redis_client, ["default"])


def test_sigterm_to_the_parent_lets_every_child_finish_its_jobs_and_exit_0(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 10})
    with WorkerProcess(config, TWO, env={"GEOQ_TEST_LEDGER": ledger_url}) as parent:
        workers = two_children(redis_client, parent.pid)
        ids = {j.id for j in geoq.Client(redis_url).enqueue_many([("t.ok", {"sleep": 1.0})] * 20)}
        wait_until(lambda: all(held_by(redis_client, w) for w in workers), timeout=10,
                   message="both children should hold jobs")
        assert parent.stop() == 0, log_of(parent)
    assert ledger_counts(ledger_client) == collections.Counter({i: 1 for i in ids})
    assert log_of(parent).count("has stopped") == 2
    assert_settled(redis_client, ["default"])
    assert registered(redis_client) == {}


def test_a_second_sigterm_is_forwarded_so_children_skip_their_grace_and_hand_jobs_back(
        redis_url, redis_client, ledger, tmp_path):
    ledger_url, _ = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES,
                          worker={"processes": 2, "concurrency": 10, "shutdown_grace": "60s"})
    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}) as parent:
        workers = two_children(redis_client, parent.pid)
        geoq.Client(redis_url).enqueue_many([("t.ok", {"sleep": 60})] * 20)
        wait_until(lambda: all(held_by(redis_client, w) for w in workers), timeout=10)
        parent.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: log_of(parent).count("waiting up to 60s") == 2, timeout=10)
        parent.proc.send_signal(signal.SIGTERM)
        assert parent.proc.wait(20) == 0, log_of(parent)
    p = places(redis_client, ["default"])
    assert (p.ready["default"], p.processing["default"]) == (20, 0)
    assert registered(redis_client) == {}


def test_a_child_whose_parent_is_killed_stops_by_itself(redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES)
    with WorkerProcess(config, TWO, env=ledger.env) as parent:
        two_children(redis_client, parent.pid)
        parent.kill()
        wait_until(lambda: registered(redis_client) == {}, timeout=15,
                   message="the orphaned children did not stop and deregister")
    assert log_of(parent).count("is gone: stopping") == 2


def test_a_child_that_cannot_bind_its_metrics_port_stops_the_others_and_the_parent_exits_2(
        redis_url, redis_client, tmp_path):
    port = port_pair()
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, metrics={"listen": f"127.0.0.1:{port}"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        done = run_worker_once(config, TWO)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port + 1}" in done.stderr
    assert "worker process 1" in done.stderr and "exited with status 2" in done.stderr
    assert registered(redis_client) == {}


@pytest.mark.parametrize("args, expected", [
    (["--processes", "0"], "geoq-worker: --processes: expected a positive integer, got 0"),
    (["--processes", "3"], "processes serve on ports 65534 to 65536, past 65535"),
])
def test_a_bad_processes_setting_exits_2_with_one_line_before_any_child_starts(
        redis_url, tmp_path, args, expected):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, metrics={"listen": "127.0.0.1:65534"})
    done = run_worker_once(config, args)
    assert done.returncode == 2
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
