"""Fixtures of the fault-injection tests: the ledger of runs, and workers that clean up after themselves.

Each test ends with the same accounting, done by Ledger.assert_accounted_for:
every enqueued job completed at least once, no unknown job ran, and the jobs that
completed more than once number no more than the jobs in flight at the fault.
Together with tests.support.keyspace.assert_settled (nothing left ready,
scheduled or in any processing list) that is "nothing lost".
"""

from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pytest
import redis

from tests.support import fault_handlers
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.fault_handlers"
ROUTES: dict[str, Any] = {
    "f.sleep": {"handler": f"{H}:sleeper"},
    "f.long": {"handler": f"{H}:long"},
    "f.poison": {"handler": f"{H}:poison"},
    "f.hog": {"handler": f"{H}:hog"},
    "f.hold": {"handler": f"{H}:hold"},
}


class Ledger:
    """What the handlers recorded, read from outside the queue under test."""

    def __init__(self, url: str, client: redis.Redis) -> None:
        self.url, self.client = url, client

    def _ids(self, key: str) -> collections.Counter[str]:
        return collections.Counter(_text(x) for x in self.client.lrange(key, 0, -1))

    def started(self) -> collections.Counter[str]:
        return self._ids(fault_handlers.STARTED)

    def succeeded(self) -> collections.Counter[str]:
        return self._ids(fault_handlers.SUCCEEDED)

    def count(self, what: str = "succeeded") -> int:
        return int(self.client.llen(f"ledger:{what}"))

    def set(self, flag: str) -> None:
        self.client.set(f"ledger:{flag}", "1")

    def wait_for(self, n: int, what: str = "succeeded", timeout: float = 30.0) -> None:
        wait_until(lambda: self.count(what) >= n, timeout=timeout, message=f"{n} jobs recorded as {what}")

    def assert_accounted_for(self, expected: Iterable[str], in_flight_at_fault: int,
                             never_complete: Iterable[str] = ()) -> int:
        """Every expected job completed, nothing else ran; the number of duplicate completions.

        Jobs in `never_complete` (a poison job) may have started but must not have completed.
        """
        expected, never = set(expected), set(never_complete)
        done = self.succeeded()
        missing = expected - set(done)
        assert not missing, f"{len(missing)} jobs never completed, e.g. {sorted(missing)[:5]}"
        assert not never & set(done), f"jobs that cannot complete did: {sorted(never & set(done))}"
        unknown = (set(done) | set(self.started())) - expected - never
        assert not unknown, f"jobs nobody enqueued ran: {sorted(unknown)[:5]}"
        duplicates = sum(n - 1 for n in done.values())
        assert duplicates <= in_flight_at_fault, (
            f"{duplicates} duplicate completions, more than the {in_flight_at_fault} jobs in flight at the fault")
        return duplicates


@pytest.fixture
def ledger(redis_server: RedisServer) -> Iterator[Ledger]:
    """Database 0 of the session server: queues never use it, and the tests never break that server."""
    client = redis_server.client(0)
    client.flushdb()
    yield Ledger(redis_server.url_for(0), client)
    client.close()


class Workers:
    """Starts bin/geoq-worker processes for one test and kills any still running at its end."""

    def __init__(self, tmp_path: Path, ledger: Ledger) -> None:
        self.tmp_path, self.ledger = tmp_path, ledger
        self.started: list[WorkerProcess] = []
        self._n = itertools.count(1)

    def start(self, redis_url: str, *, args: Sequence[str] = (), routes: Mapping[str, Any] = ROUTES,
              **sections: Any) -> WorkerProcess:
        n = next(self._n)
        config = write_config(self.tmp_path / f"worker-{n}.yaml", redis_url, routes, **sections)
        worker = WorkerProcess(config, args, env={"GEOQ_TEST_LEDGER": self.ledger.url})
        self.started.append(worker)
        return worker

    @staticmethod
    def id_of(client: redis.Redis, worker: WorkerProcess, timeout: float = 15.0) -> str:
        """The id a worker process registered under (found by its pid in the registry)."""
        def find() -> str | None:
            for worker_id, info in client.hgetall("geoq:workers").items():
                if json.loads(info)["pid"] == worker.pid:
                    return _text(worker_id)
            assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}:\n{worker.log()}"
            return None
        return str(wait_until(find, timeout=timeout, ignore=(redis.RedisError,),
                              message=f"worker {worker.pid} registered"))

    @staticmethod
    def holding(client: redis.Redis, queue: str, worker_id: str) -> list[str]:
        """The ids in a worker's processing list of one queue, in order."""
        return [json.loads(e)["i"] for e in client.lrange(f"geoq:{{{queue}}}:processing:{worker_id}", 0, -1)]

    @staticmethod
    def blocked_fetches(client: redis.Redis) -> list[dict[str, Any]]:
        """Workers' fetch connections that Redis holds in a blocking command right now."""
        return [c for c in client.client_list() if c["name"].startswith("geoq-fetch") and "b" in c["flags"]]

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(tmp_path: Path, ledger: Ledger) -> Iterator[Workers]:
    w = Workers(tmp_path, ledger)
    try:
        yield w
    finally:
        w.kill_all()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A server of this test's own, to kill, freeze or fill. AOF on, fsynced on every write."""
    with RedisServer(config={"appendonly": "yes", "appendfsync": "always"}) as server:
        yield server


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
