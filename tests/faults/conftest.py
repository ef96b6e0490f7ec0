"""Fixtures of the fault-injection tests: the ledger of runs, and workers that clean up after themselves.

Each test ends with the same accounting, done by Ledger.assert_accounted_for:
every enqueued job completed at least once, no unknown job ran, and the jobs that
completed more than once number no more than the jobs in flight at the fault.
Together with tests.support.keyspace.assert_settled (nothing left ready,
scheduled or in any processing list) that is "nothing lost".
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest
import redis

from tests.support.ledger import Ledger
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
