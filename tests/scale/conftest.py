"""Fixtures of the scale tests: the run ledger, and a Redis Cluster shared by the tests that do not break it.

Handlers record each run in database 0 of the session's plain redis-server
(GEOQ_TEST_LEDGER), outside the Redis under test, so a failover there cannot
touch the record of what ran.
"""

from __future__ import annotations

import collections
import re
from typing import Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from tests.support.cluster import LocalCluster
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT

ROUTES = {"t.ok": {"handler": "tests.support.scale_handlers:ok"}}
PASSWORD = "s3cret-geoq"


def readme_acl_line() -> list[str]:
    """The arguments of the README's `ACL SETUSER geoq ...` line, with PASSWORD as the password."""
    line = re.search(r"^ACL SETUSER geoq .*$", (ROOT / "README.md").read_text(), re.M)
    assert line, "README.md has no ACL SETUSER geoq line"
    return [">" + PASSWORD if word == ">PASSWORD" else word for word in line[0].split()[2:]]
# A worker declared dead within seconds, so a test never waits on the default 15 s.
FAST_LIVENESS = {"heartbeat": "1s", "dead_after": "4s"}


class Ledger:
    """What the handlers recorded (tests.support.handlers), read from outside the queues."""

    def __init__(self, url: str, client: redis.Redis) -> None:
        self.url, self.client = url, client

    @property
    def env(self) -> dict[str, str]:
        return {"GEOQ_TEST_LEDGER": self.url}

    def succeeded(self) -> collections.Counter[str]:
        return collections.Counter(x.decode() for x in self.client.lrange("ledger:succeeded", 0, -1))

    def by_process(self) -> dict[int, int]:
        """Runs per worker process id."""
        return {int(pid): int(n) for pid, n in self.client.hgetall("ledger:by_pid").items()}

    def count(self) -> int:
        return int(self.client.llen("ledger:succeeded"))

    def wait_for(self, n: int, timeout: float, message: str) -> None:
        wait_until(lambda: self.count() >= n, timeout=timeout, interval=0.05, message=message)

    def wait_for_ids(self, ids: list[str], timeout: float, message: str) -> None:
        """Until each of these jobs has succeeded at least once (duplicates do not count twice)."""
        wanted = set(ids)
        wait_until(lambda: self.count() >= len(wanted) and wanted <= set(self.succeeded()),
                   timeout=timeout, interval=0.1, message=message)

    def assert_each_ran(self, ids: list[str], *, exactly_once: bool) -> int:
        """Every job succeeded, no other did; the number of duplicate runs (0 when exactly_once)."""
        done = self.succeeded()
        missing = set(ids) - set(done)
        assert not missing, f"{len(missing)} jobs never completed, e.g. {sorted(missing)[:5]}"
        assert set(done) == set(ids), f"jobs nobody enqueued ran: {sorted(set(done) - set(ids))[:5]}"
        duplicates = sum(n - 1 for n in done.values())
        if exactly_once:
            assert duplicates == 0, f"{duplicates} jobs ran more than once"
        return duplicates


@pytest.fixture
def ledger(redis_server: RedisServer) -> Iterator[Ledger]:
    client = redis_server.client(0)
    client.flushdb()
    yield Ledger(redis_server.url_for(0), client)
    client.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three masters, one replica each, for tests that leave every node running."""
    with LocalCluster() as c:
        yield c


@pytest.fixture
def cluster_client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = cluster.client()
    client.flushall()  # each test starts from an empty keyspace on every master
    yield client
    client.close()
