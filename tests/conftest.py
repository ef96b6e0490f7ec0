"""Session-wide fixtures: one private redis-server, a database per test.

Fixtures:
    redis_server   (session)  the RedisServer all tests share; never port 6379.
    redis_db       (function) a database number of this test's own, emptied first.
    redis_url      (function) ``redis://127.0.0.1:PORT/<redis_db>``.
    redis_client   (function) ``redis.Redis`` on that database (bytes replies).
    tmp_config     (function) ``make_config(text_or_dict, name=None) -> Path``.

A test that needs to stop, kill, pause or reconfigure Redis starts its own
``tests.support.redis_server.RedisServer`` instead of touching the shared one.
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pytest
import redis
import yaml

from tests.support.ledger import Ledger
from tests.support.redis_server import RedisServer

pytest_plugins = ["tests.support.no_skips"]

# Database 0 is left alone; tests cycle through 1..15 (redis' default 16 dbs).
_TEST_DBS = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer) -> int:
    if not redis_server.is_running():  # a test killed it by mistake: do not fail every later test
        redis_server.restart()
    db = next(_TEST_DBS)
    client = redis_server.client(db)
    try:
        client.flushdb()
    finally:
        client.close()
    return db


@pytest.fixture
def redis_url(redis_server: RedisServer, redis_db: int) -> str:
    return redis_server.url_for(redis_db)


@pytest.fixture
def redis_client(redis_server: RedisServer, redis_db: int) -> Iterator[redis.Redis]:
    client = redis_server.client(redis_db)
    try:
        yield client
    finally:
        client.close()


MakeConfig = Callable[..., Path]


@pytest.fixture
def tmp_config(tmp_path: Path) -> MakeConfig:
    """A factory writing a YAML config file into tmp_path and returning its path.

    Text is dedented and written as is (so tests can write invalid YAML or
    ``${VAR}`` references); a mapping is dumped with yaml.safe_dump.
    """
    counter = itertools.count(1)

    def make_config(text_or_dict: str | Mapping[str, Any], name: str | None = None) -> Path:
        n = next(counter)
        path = tmp_path / (name or ("config.yaml" if n == 1 else f"config-{n}.yaml"))
        if isinstance(text_or_dict, str):
            text = textwrap.dedent(text_or_dict).lstrip("\n")
        else:
            text = yaml.safe_dump(dict(text_or_dict), sort_keys=False)
        path.write_text(text)
        return path

    return make_config


@pytest.fixture
def ledger(redis_server: RedisServer) -> Iterator[Ledger]:
    """Database 0 of the session server, outside the queues', where test handlers record what ran.

    Handlers find it through GEOQ_TEST_LEDGER (ledger.env); it unpacks as ``url, client`` too.
    Queues never use it, and no test breaks the session server.
    """
    client = redis_server.client(0)
    client.flushdb()
    try:
        yield Ledger(redis_server.url_for(0), client)
    finally:
        client.close()
