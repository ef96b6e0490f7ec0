"""Fixtures of the scale tests: the run ledger, and a Redis Cluster shared by the tests that do not break it.

Handlers record each run in database 0 of the session's plain redis-server
(GEOQ_TEST_LEDGER), outside the Redis under test, so a failover there cannot
touch the record of what ran.
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from redis.cluster import RedisCluster

from tests.support.cluster import LocalCluster
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
