"""What a failover looks like to the broker: each answer of a master being replaced is a BrokerError
that callers wait out, never an unknown redis-py exception."""

from __future__ import annotations

import threading

import pytest
import redis.exceptions as rex
from redis.sentinel import MasterNotFoundError

import geoq
from geoq.broker.broker import Broker
from geoq.broker.connection import connect
from geoq.broker.errors import translate
from geoq.broker.retry import passing
from geoq.config import default_config
from geoq.errors import BrokerError, RedisAuthError, RedisFull, RedisUnavailable
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until


@pytest.fixture
def pair():
    """Two plain servers: the first will be turned into a replica of the second."""
    with RedisServer() as old, RedisServer() as new:
        yield old, new


def test_a_blocking_fetch_cut_short_by_a_demotion_is_redis_unavailable(pair):
    old, new = pair
    broker = Broker(connect(default_config(old.url).redis))
    blocking = connect(default_config(old.url).redis, read_timeout=10)
    raised: list[BaseException] = []

    def fetch() -> None:
        try:
            # The fetch script rides behind the BLMOVE (it marks the job running): it meets the
            # connection Redis closes right after its UNBLOCKED answer, so which of the two errors
            # is read first depends on timing; either is the same RedisUnavailable.
            broker.fetch(blocking, "default", "w1", 1, block=8)
        except BaseException as e:  # handed to the test thread
            raised.append(e)

    thread = threading.Thread(target=fetch)
    thread.start()
    admin = old.client()
    wait_until(lambda: admin.info("clients")["blocked_clients"] == 1, timeout=5, message="the fetch blocked")
    admin.replicaof(new.host, new.port)  # Redis unblocks it: UNBLOCKED ... (master -> replica?)
    thread.join(10)
    assert len(raised) == 1 and isinstance(raised[0], RedisUnavailable), raised
    message = str(raised[0])
    assert message.startswith("redis fetch: ") and "\n" not in message
    assert "UNBLOCKED" in message or "Connection closed by server" in message, message


def test_a_write_to_a_demoted_master_is_redis_full_readonly(pair):
    old, new = pair
    old.client().replicaof(new.host, new.port)
    with geoq.Client(old.url) as producer:
        with pytest.raises(RedisFull, match="read only replica"):
            producer.enqueue("t.ok", {})


@pytest.mark.parametrize("error, expected", [
    (rex.ClusterDownError("The cluster is down"), RedisUnavailable),
    (rex.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."), RedisUnavailable),
    (rex.TryAgainError("Multiple keys request during rehashing of slot"), RedisUnavailable),
    (rex.ClusterError("TTL exhausted."), RedisUnavailable),   # MOVED and ASK kept coming
    (rex.ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed"), RedisUnavailable),
    (rex.ConnectionError("The previous master is now a slave"), RedisUnavailable),
    (rex.ReadOnlyError("You can't write against a read only replica."), RedisFull),
    (rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), RedisFull),
    # A restarted server still reading its data: it will answer soon, as after a failover.
    (rex.BusyLoadingError("Redis is loading the dataset in memory"), RedisUnavailable),
    (rex.ResponseError("LOADING Redis is loading the dataset in memory"), RedisUnavailable),
    (rex.SlotNotCoveredError('Slot "12" is not covered by the cluster.'), RedisUnavailable),
    (rex.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node: "
                               "Error 111 connecting to 127.0.0.1:7000. Connection refused."), RedisUnavailable),
    (rex.ResponseError("NOPERM this user has no permissions to run the 'cluster|slots' command"), RedisAuthError),
    (rex.ConnectionError("Error while reading: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"), RedisAuthError),
    (rex.RedisClusterException("EVALSHA - all keys must map to the same key slot"), BrokerError),
])
def test_failover_and_cluster_client_errors_translate_to_one_line_geoq_errors(error, expected):
    translated = translate(error, "fetch")
    assert type(translated) is expected and str(translated).startswith("redis fetch: ")


def _sentinel_client(port: int) -> str:
    return (f"<redis.client.Redis(<redis.connection.ConnectionPool(<redis.connection.Connection(db=0,"
            f"username=<REDACTED>,password=<REDACTED>,host=127.0.0.1,port={port})>)>)>")


def test_no_master_from_unreachable_sentinels_is_one_short_line_naming_each_problem():
    refused = "ConnectionError('Error 111 connecting to 127.0.0.1:{}. Connection refused.')"
    error = MasterNotFoundError("No master found for 'geoq' : " + ", ".join(
        f"{_sentinel_client(p)} - {refused.format(p)}" for p in (26379, 26380)))
    translated = translate(error, "fetch")
    assert type(translated) is RedisUnavailable
    assert str(translated) == ("redis fetch: no master found for 'geoq' (sentinels: "
                               f"{refused.format(26379)}; {refused.format(26380)})")


def test_no_master_because_the_sentinels_refused_the_login_is_an_auth_error():
    error = MasterNotFoundError("No master found for 'geoq' : " + ", ".join(
        f"{_sentinel_client(p)} - auth:AuthenticationError" for p in (26379, 26380)))
    translated = translate(error, "ping")
    assert type(translated) is RedisAuthError and "redis.sentinel.password" in str(translated)


def test_a_cluster_client_error_caused_by_a_refused_login_is_an_auth_error():
    try:
        try:
            raise rex.NoPermissionError("this user has no permissions to run the 'cluster|slots' command")
        except rex.ResponseError:
            raise rex.RedisClusterException("Cluster mode is not enabled on this node")
    except rex.RedisClusterException as e:
        translated = translate(e, "ping")
    assert isinstance(translated, RedisAuthError) and "cluster|slots" in str(translated)


@pytest.mark.parametrize("error, waited_out", [
    (rex.ConnectionError("Error 111 connecting to 127.0.0.1:7000. Connection refused."), True),
    (rex.TimeoutError("Timeout reading from socket"), True),
    (rex.ClusterDownError("The cluster is down"), True),
    (rex.TryAgainError("Multiple keys request during rehashing of slot"), True),
    (rex.ClusterError("TTL exhausted."), True),
    (rex.BusyLoadingError("Redis is loading the dataset in memory"), True),
    (rex.ReadOnlyError("You can't write against a read only replica."), True),
    (RedisUnavailable("redis lookup: Error 111 connecting to 127.0.0.1:7000. Connection refused."), True),
    (rex.AuthenticationError("invalid username-password pair"), False),
    (rex.NoPermissionError("this user has no permissions to run the 'hget' command"), False),
    (RedisAuthError("redis lookup: WRONGPASS invalid username-password pair"), False),
    (RedisFull("redis enqueue: OOM command not allowed when used memory > 'maxmemory'."), False),
    (rex.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
])
def test_a_read_waits_out_a_failover_but_never_a_refused_login_or_a_bad_command(error, waited_out):
    assert passing(error) is waited_out
