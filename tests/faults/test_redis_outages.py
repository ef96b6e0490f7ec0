"""Redis crashing, freezing, filling up or absent at start: the worker waits it out and loses nothing.

Each test runs the queue on a Redis of its own (AOF on, fsync on every write),
since it kills, freezes or fills it; the ledger stays on the session server.
"""

from __future__ import annotations

import threading
import time

import redis

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until


def test_redis_killed_and_restarted_mid_run_the_worker_resumes_by_itself_and_all_5000_jobs_complete(
        private_redis, ledger, workers):
    url = private_redis.url
    client = geoq.Client(url)
    ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 0.02}) for _ in range(5000)])]
    concurrency = 200
    worker = workers.start(url, worker={"concurrency": concurrency})
    ledger.wait_for(1500, timeout=60)
    private_redis.kill()
    assert ledger.count() < 5000, "the run was over before the crash"
    wait_until(lambda: "fetch failed" in worker.log(), message="the worker noticed Redis was gone")
    private_redis.restart()

    wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=60, interval=0.1,
               message="every job done after the restart")
    assert worker.proc.poll() is None, worker.log()  # the same process, never restarted
    assert worker.stop() == 0, worker.log()
    log = worker.log_path.read_text()
    assert "fetch failed" in log and "fetching again" in log and "Traceback" not in log
    # Only a job running at the crash could run twice (its outcome lost with Redis).
    ledger.assert_accounted_for(ids, in_flight_at_fault=concurrency)
    assert_settled(private_redis.client(), ["default"])


def test_redis_frozen_for_10s_mid_run_loses_nothing_and_an_enqueue_retried_meanwhile_stores_one_job(
        private_redis, ledger, workers):
    url = private_redis.url
    concurrency = 200
    worker = workers.start(url, worker={"concurrency": concurrency})
    producer = _Producer(url).start()
    try:
        ledger.wait_for(200, timeout=30)
        private_redis.pause()
        time.sleep(10)  # the fault itself: Redis answers nothing for 10 s
        private_redis.resume()
        resumed_at = producer.enqueued
        wait_until(lambda: producer.enqueued >= resumed_at + 200, timeout=30, message="the producer went on")
        ids = producer.stop()
    finally:
        producer.abort()

    assert producer.retried, "no enqueue was caught by the freeze"
    wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=60, interval=0.1,
               message="every job done after the freeze")
    assert worker.proc.poll() is None, worker.log()
    assert worker.stop() == 0, worker.log()
    assert "Traceback" not in worker.log_path.read_text()
    done = ledger.succeeded()
    assert all(done[i] == 1 for i in producer.retried), {i: done[i] for i in producer.retried}
    ledger.assert_accounted_for(ids, in_flight_at_fault=concurrency)
    assert_settled(private_redis.client(), ["default"])


class _Producer:
    """A thread enqueueing jobs with ids of its own, retrying the same id after RedisUnavailable."""

    def __init__(self, url: str) -> None:
        self.client = geoq.Client(url)
        self.enqueued = 0
        self.retried: list[str] = []
        self._stop = threading.Event()
        self._abort = threading.Event()  # give up even in the middle of retrying (the test failed)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> "_Producer":
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive() and self.error is None, self.error
        return [f"p-{n}" for n in range(self.enqueued)]

    def abort(self) -> None:
        self._abort.set()
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._enqueue(f"p-{self.enqueued}")
                self.enqueued += 1
                self._stop.wait(0.005)
        except BaseException as e:  # reported by stop()
            self.error = e

    def _enqueue(self, job_id: str) -> None:
        while not self._abort.is_set():
            try:
                self.client.enqueue("f.sleep", {"sleep": 0.05}, id=job_id)
                return
            except geoq.RedisUnavailable:
                if job_id not in self.retried:
                    self.retried.append(job_id)


def test_at_maxmemory_enqueue_raises_redis_full_while_the_worker_keeps_beating_and_acking(
        private_redis, ledger, workers):
    url = private_redis.url
    admin = private_redis.client()
    admin.config_set("maxmemory-policy", "noeviction")
    client = geoq.Client(url)
    held = [j.id for j in client.enqueue_many([("f.hold", {}) for _ in range(50)])]
    worker = workers.start(url, worker={"heartbeat": "1s", "dead_after": "3s"})
    worker_id = workers.id_of(admin, worker)
    ledger.wait_for(50, "started", timeout=30)
    heartbeat = f"geoq:heartbeat:{worker_id}"

    admin.config_set("maxmemory", admin.info("memory")["used_memory"] + 64 * 1024)
    stored, refusal = _fill(client)
    assert "\n" not in str(refusal) and "maxmemory" in str(refusal) and "enqueue" in str(refusal), refusal

    # Refreshed while writes are refused: a TTL that goes up again, three times in a row.
    for _ in range(3):
        wait_until(_ttl_raised(admin, heartbeat), timeout=3, message="heartbeat refreshed at maxmemory")
    assert admin.hexists("geoq:workers", worker_id)

    ledger.set("release")
    wait_until(lambda: places(admin, ["default"]).total("processing") == 0, timeout=15,
               message="the held jobs acked while Redis is full")
    assert client.status(held[0]).state == "succeeded"

    admin.config_set("maxmemory", 0)
    stored.append(client.enqueue("f.sleep", {}).id)
    wait_until(lambda: set(ledger.succeeded()) >= set(held + stored), timeout=30,
               message="every job done once Redis has room again")
    assert worker.stop() == 0, worker.log()
    assert "cannot write job outcomes" not in worker.log_path.read_text()
    assert ledger.assert_accounted_for(held + stored, in_flight_at_fault=0) == 0
    assert_settled(admin, ["default"])


def _ttl_raised(client: redis.Redis, key: str):
    """A predicate true once the key's TTL is higher than at the previous call (it was refreshed)."""
    last = [client.pttl(key)]

    def raised() -> bool:
        ttl = client.pttl(key)
        assert ttl > 0, f"{key} expired"
        up, last[0] = ttl > last[0], ttl
        return up
    return raised


def _fill(client: geoq.Client) -> tuple[list[str], geoq.RedisFull]:
    """Enqueue 2 kB jobs until Redis refuses one; the ids stored before that, and the refusal."""
    stored = []
    for _ in range(1000):
        try:
            stored.append(client.enqueue("f.sleep", {"pad": "x" * 2048}).id)
        except geoq.RedisFull as e:
            return stored, e
    raise AssertionError("Redis never refused an enqueue")


def test_a_worker_started_while_redis_is_down_waits_for_it_and_then_works(ledger, workers):
    with RedisServer() as server:
        server.stop()  # keeps its port: the worker is pointed at a Redis that is not there yet
        worker = workers.start(server.url)
        wait_until(lambda: "waiting for redis" in worker.log(), timeout=15, message="the worker waits")
        assert worker.proc.poll() is None
        server.restart()
        client = geoq.Client(server.url)
        ids = [j.id for j in client.enqueue_many([("f.sleep", {}) for _ in range(100)])]
        wait_until(lambda: set(ledger.succeeded()) >= set(ids), timeout=30, message="every job done")
        assert worker.stop() == 0, worker.log()
        assert "redis is reachable again" in worker.log_path.read_text()
        assert ledger.assert_accounted_for(ids, in_flight_at_fault=0) == 0
        assert_settled(server.client(), ["default"])


def test_a_worker_still_waiting_for_redis_stops_on_sigterm_with_exit_0(workers):
    with RedisServer() as server:
        server.stop()
        worker = workers.start(server.url)
        wait_until(lambda: "waiting for redis" in worker.log(), timeout=15, message="the worker waits")
        # A service manager's stop: well inside its usual kill timeout, without a second signal.
        assert worker.stop(timeout=10) == 0, worker.log()
        # Nothing was taken, registered or written: the Redis it never reached holds nothing of it.
        server.restart()
        assert server.client().keys("geoq:*") == []
