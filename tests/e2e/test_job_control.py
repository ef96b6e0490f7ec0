"""Job control end to end, with workers as subprocesses: cancel, expiry, unique jobs, pause."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import geoq
from geoq.broker import keys
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WorkerProcess, write_config

SLOW = {"handler": "tests.support.control_handlers:slow"}


def geoq_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "--redis-url", redis_url, *args],
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})


def workers(n: int, config: Path, ledger, tmp_path: Path, name: str = "w") -> list[WorkerProcess]:
    return [WorkerProcess(config, env=ledger.env, log=tmp_path / f"{name}{i}.log") for i in range(n)]


def stop_all(procs: list[WorkerProcess]) -> None:
    for w in procs:
        assert w.stop() == 0, w.log()


def test_three_hundred_jobs_ready_scheduled_and_running_all_end_cancelled_within_a_second(
        redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW},
                          worker={"queues": ["default", "held"], "concurrency": 50})
    client = geoq.Client(redis_url)
    client.pause("held")   # its 100 jobs stay ready
    procs = workers(3, config, ledger, tmp_path)
    try:
        running = client.enqueue_many([("t.slow", {"sleep": 60}) for _ in range(100)])
        wait_until(lambda: ledger.client.llen("ledger:started") == 100, timeout=30, message="100 runs started")
        ready = client.enqueue_many([("t.slow", {"sleep": 0}, {"queue": "held"}) for _ in range(100)])
        scheduled = client.enqueue_many([("t.slow", {"sleep": 0}, {"delay": 600}) for _ in range(100)])
        ids = [j.id for j in running + ready + scheduled]
        assert redis_client.llen(keys.queue_keys("held").ready) == 100
        started = time.monotonic()
        assert all(client.cancel(job_id) for job_id in ids)
        wait_until(lambda: all(client.status(i).state == "cancelled" for i in ids), timeout=10,
                   message="every job cancelled")
        wait_until(lambda: places(redis_client, ["default"]).total("processing") == 0, timeout=10,
                   message="every running job interrupted")
        took = time.monotonic() - started
        print(f"300 cancels sent and every running job interrupted and settled in {took:.2f} s")
        assert took < 3.0, took   # within a second of its cancel, plus 300 cancels and a loaded machine
        assert redis_client.zcard(keys.queue_keys("default").scheduled) == 0
        client.resume("held")   # the cancelled ready jobs are dropped by the fetch, never run
        wait_until(lambda: redis_client.llen(keys.queue_keys("held").ready) == 0, timeout=10)
        time.sleep(1.5)   # a retry, were there one, would be promoted and started by now
        stop_all(procs)
    finally:
        for w in procs:
            w.kill()
    assert ledger.client.llen("ledger:succeeded") == 0
    assert sorted(x.decode() for x in ledger.client.lrange("ledger:started", 0, -1)) == sorted(j.id for j in running)
    assert all(client.status(i).state == "cancelled" for i in ids)
    assert not any(client.cancel(i) for i in ids[:5] + ids[100:105] + ids[200:205])  # finished now
    assert_settled(redis_client, ["default", "held"])
    assert places(redis_client, ["default", "held"]).total("dead") == 0
    client.close()


def test_geoq_cancel_of_a_finished_job_exits_1_and_of_a_waiting_one_exits_0(redis_url, redis_client, ledger,
                                                                            tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW})
    client = geoq.Client(redis_url)
    done = client.enqueue("t.slow", {"sleep": 0})
    with WorkerProcess(config, env=ledger.env, log=tmp_path / "w.log") as w:
        client.result(done.id, timeout=20)
        assert w.stop() == 0
    later = client.enqueue("t.slow", {}, delay=600)
    finished = geoq_cli(redis_url, "cancel", done.id)
    assert finished.returncode == 1 and finished.stderr.count("\n") == 1, finished
    assert geoq_cli(redis_url, "cancel", later.id).returncode == 0
    assert client.status(later.id).state == "cancelled"
    assert_settled(redis_client, ["default"])
    client.close()


def test_jobs_expiring_behind_a_backlog_die_expired_and_those_in_time_run(redis_url, redis_client, ledger,
                                                                         tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW}, worker={"concurrency": 1})
    client = geoq.Client(redis_url)
    late = client.enqueue_many([("t.slow", {}, {"delay": 1, "expires": 1.5}) for _ in range(5)])
    time.sleep(2.0)   # due, and past their expiry, with no worker to promote them: promotion buries them
    backlog = client.enqueue_many([("t.slow", {"sleep": 0.2}) for _ in range(15)])   # about 3 s of work
    doomed = client.enqueue_many([("t.slow", {}, {"expires": 1}) for _ in range(10)])
    in_time = client.enqueue_many([("t.slow", {}, {"expires": 600}) for _ in range(5)])
    with WorkerProcess(config, env=ledger.env, log=tmp_path / "w.log") as w:
        wait_until(lambda: ledger.client.llen("ledger:succeeded") == 20, timeout=60)
        wait_until(lambda: redis_client.zcard(keys.queue_keys("default").dead) == 15, timeout=10)
        assert w.stop() == 0, w.log()
    ran = {x.decode() for x in ledger.client.lrange("ledger:succeeded", 0, -1)}
    assert ran == {j.id for j in backlog + in_time}
    dead = {d["id"]: d for d in assert_settled(redis_client, ["default"]).dead["default"]}
    assert set(dead) == {j.id for j in late + doomed}
    assert {d["reason"] for d in dead.values()} == {"expired"}
    for j in late + doomed:
        st = client.status(j.id)
        assert (st.state, st.reason, st.attempts) == ("dead", "expired", 0)
    client.close()


def test_twenty_producers_enqueueing_one_unique_key_a_thousand_times_store_one_job(redis_url, redis_client,
                                                                                     ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW})
    client = geoq.Client(redis_url)
    got: list[str] = []
    go = threading.Barrier(20)

    def produce() -> None:
        go.wait()
        for _ in range(50):
            got.append(client.enqueue("t.slow", {"user": 7}, unique_for=2).id)

    threads = [threading.Thread(target=produce) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 1000 and len(set(got)) == 1
    assert redis_client.llen(keys.queue_keys("default").ready) == 1
    first = got[0]
    with WorkerProcess(config, env=ledger.env, log=tmp_path / "w.log") as w:
        client.result(first, timeout=20)
        assert client.enqueue("t.slow", {"user": 7}, unique_for=2).id == first   # within its window
        assert client.enqueue("t.slow", {"user": 8}, unique_for=2).id != first   # another key
        second = wait_until(lambda: _fresh(client, first), timeout=10, interval=0.2,
                            message="a new job accepted once the window passed")
        client.result(second, timeout=20)
        assert w.stop() == 0, w.log()
    assert ledger.client.lrange("ledger:succeeded", 0, -1).count(first.encode()) == 1
    assert_settled(redis_client, ["default"])
    client.close()


def _fresh(client: geoq.Client, old: str) -> str | None:
    job = client.enqueue("t.slow", {"user": 7}, unique_for=2)
    return job.id if job.id != old else None


def test_a_paused_queue_keeps_its_depth_while_workers_serve_others_and_drains_on_resume(
        redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW},
                          worker={"queues": ["paused", "other"], "concurrency": 20})
    client = geoq.Client(redis_url)
    procs = workers(2, config, ledger, tmp_path)
    try:
        wait_until(lambda: len(json.loads(geoq_cli(redis_url, "--json", "workers").stdout)) == 2, timeout=30)
        assert geoq_cli(redis_url, "pause", "paused").returncode == 0
        time.sleep(1.2)   # every worker has read the flag (blocked fetches take nothing regardless)
        held = client.enqueue_many([("t.slow", {}, {"queue": "paused"}) for _ in range(200)])
        procs += workers(1, config, ledger, tmp_path, name="late")   # started after the pause
        served = client.enqueue_many([("t.slow", {"sleep": 0.01}, {"queue": "other"}) for _ in range(300)])
        wait_until(lambda: ledger.client.llen("ledger:succeeded") >= 300, timeout=60)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert redis_client.llen(keys.queue_keys("paused").ready) == 200
            time.sleep(0.1)
        stats = json.loads(geoq_cli(redis_url, "-c", str(config), "--json", "stats").stdout)
        assert stats["queues"]["paused"]["paused"] is True and stats["queues"]["other"]["paused"] is False
        assert geoq_cli(redis_url, "resume", "paused").returncode == 0
        wait_until(lambda: ledger.client.llen("ledger:succeeded") == 500, timeout=60)
        stats = json.loads(geoq_cli(redis_url, "-c", str(config), "--json", "stats").stdout)
        assert stats["queues"]["paused"]["paused"] is False
        stop_all(procs)
    finally:
        for w in procs:
            w.kill()
    ran = {x.decode() for x in ledger.client.lrange("ledger:succeeded", 0, -1)}
    assert ran == {j.id for j in held + served}
    assert_settled(redis_client, ["paused", "other"])
    client.close()


def test_jobs_cancelled_while_their_worker_lies_dead_are_reaped_to_nowhere_and_never_run_again(
        redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.slow": SLOW},
                          worker={"heartbeat": "1s", "dead_after": "3s"})
    client = geoq.Client(redis_url)
    first = WorkerProcess(config, env=ledger.env, log=tmp_path / "first.log")
    try:
        jobs = client.enqueue_many([("t.slow", {"sleep": 60}) for _ in range(3)])
        wait_until(lambda: ledger.client.llen("ledger:started") == 3, timeout=30)
        first.kill()
        assert all(client.cancel(j.id) for j in jobs)   # the requests nobody reads: their worker is gone
        with WorkerProcess(config, env=ledger.env, log=tmp_path / "second.log") as second:
            wait_until(lambda: places(redis_client, ["default"]).total("processing") == 0, timeout=30,
                       message="the dead worker's jobs were not reaped")
            time.sleep(1.0)   # a job put back would have started by now
            assert second.stop() == 0, second.log()
    finally:
        first.kill()
    assert ledger.client.llen("ledger:started") == 3 and ledger.client.llen("ledger:succeeded") == 0
    assert all(client.status(j.id).state == "cancelled" for j in jobs)
    assert_settled(redis_client, ["default"])
    client.close()
