"""redis.max_connections bounds a worker process's Redis connections, all pools together.

The worker splits it: one connection per queue plus one for blocking fetches, one for
the heartbeat thread, two for /metrics (none with metrics off), and the rest for
outcomes, non-blocking fetches, scheduler and reaper (at least four). Each test counts
the worker's connections on a redis-server of its own with CLIENT LIST, by the names
the worker gives them.
"""

from __future__ import annotations

import threading
from typing import Iterator

import pytest

import geoq
from tests.support.keyspace import assert_settled
from tests.support.redis_server import RedisServer
from tests.support.worker_process import WorkerProcess, run_worker_once, write_config

ROUTES = {"t.ok": {"handler": "tests.support.handlers:ok"}}
QUEUES = ["critical", "default", "bulk"]
WORKER_NAMES = ("geoq-worker:", "geoq-fetch:", "geoq-heartbeat:", "geoq-metrics")


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class _Counter:
    """Samples the worker's connections (CLIENT LIST) in a thread; `most` is the largest count seen."""

    def __init__(self, server: RedisServer) -> None:
        self.client = server.client()
        self.most, self.samples = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Counter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            names = [c["name"] for c in self.client.client_list()]
            self.most = max(self.most, sum(1 for n in names if n.startswith(WORKER_NAMES)))
            self.samples += 1


@pytest.mark.parametrize("max_connections", [12, 40])
def test_a_worker_running_2000_jobs_at_once_never_opens_more_than_max_connections(
        own_redis, ledger, tmp_path, max_connections):
    url = own_redis.url
    client = geoq.Client(url)
    ids = [j.id for j in client.enqueue_many([("t.ok", {"sleep": 2.0}, {"queue": q}) for q in QUEUES * 700])]
    config = write_config(tmp_path / "w.yaml", url, ROUTES, redis={"max_connections": max_connections},
                          worker={"concurrency": 2000, "queues": QUEUES, "heartbeat": "1s", "dead_after": "3s"})
    with _Counter(own_redis) as counter, WorkerProcess(config, env=ledger.env) as worker:
        ledger.wait_for_ids(ids, timeout=60, message="every job ran")
        assert worker.stop() == 0, worker.log()
    assert "Traceback" not in worker.log() and "No connection available" not in worker.log(), worker.log()
    assert 0 < counter.most <= max_connections, counter.most
    ledger.assert_each_ran(ids, exactly_once=True)
    assert_settled(own_redis.client(), QUEUES)
    print(f"max_connections {max_connections}: at most {counter.most} connections in {counter.samples} samples")


def test_a_max_connections_too_small_for_the_worker_is_one_config_error_naming_the_key(own_redis, tmp_path):
    config = write_config(tmp_path / "w.yaml", own_redis.url, ROUTES, redis={"max_connections": 8},
                          worker={"queues": QUEUES}, metrics={"listen": "127.0.0.1:0"})
    done = run_worker_once(config)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"geoq-worker: {config}: redis.max_connections: expected at least 11 for this worker (4 for fetches "
        "on 3 queues, 1 heartbeat, 2 metrics, 4 for outcomes, scheduler and reaper), got 8")
    assert own_redis.client().dbsize() == 0
