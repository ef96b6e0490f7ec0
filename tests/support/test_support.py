"""The test helpers do what the rest of the suite relies on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
import yaml

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, RedisServerError
from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, which it may stop, kill or pause."""
    with RedisServer(config={"appendonly": "yes"}) as server:
        yield server


def test_the_session_server_is_private_and_never_the_system_redis(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    config = redis_client.config_get("*")
    assert config["port"] == str(redis_server.port)
    assert config["dir"] == str(redis_server.dir.resolve())
    assert config["save"] == ""
    assert redis_client.info("server")["process_id"] == redis_server.pid


def test_a_test_may_leave_data_in_every_database(redis_server: RedisServer) -> None:
    for db in range(1, 16):
        redis_server.client(db).set("left-behind", db)


def test_each_test_gets_its_own_empty_database(
    redis_server: RedisServer, redis_db: int, redis_url: str, redis_client: redis.Redis
) -> None:
    # Runs right after the test above, so only the fixture's FLUSHDB explains an empty db.
    assert 1 <= redis_db <= 15
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/{redis_db}"
    assert redis_client.dbsize() == 0
    redis_client.set("mine", "1")
    assert redis.Redis.from_url(redis_url).get("mine") == b"1"
    assert redis_server.client(0).get("mine") is None


def test_restart_keeps_the_port_the_dir_and_the_aof_data(own_server: RedisServer) -> None:
    port, old_pid = own_server.port, own_server.pid
    own_server.client().set("survives", "restart")
    own_server.restart()
    assert own_server.port == port
    assert own_server.pid != old_pid
    assert own_server.client().get("survives") == b"restart"


def test_kill_then_restart_brings_the_server_back_on_the_same_port(own_server: RedisServer) -> None:
    port = own_server.port
    own_server.kill()
    assert not own_server.is_running()
    with pytest.raises(redis.ConnectionError):
        own_server.client(socket_connect_timeout=1).ping()
    own_server.restart()
    assert own_server.port == port and own_server.client().ping()


def test_pause_makes_ping_time_out_and_resume_restores_it(own_server: RedisServer) -> None:
    client = own_server.client(socket_timeout=0.3, socket_connect_timeout=0.3)
    assert client.ping()
    own_server.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            client.ping()
    finally:
        own_server.resume()
    assert wait_until(lambda: client.ping(), ignore=(redis.RedisError,), message="PING after resume")


def test_stop_ends_the_process_even_while_it_is_paused() -> None:
    server = RedisServer().start()
    try:
        pid = server.pid
        server.pause()
        server.stop()
        assert not server.is_running()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        server.close()
    assert not server.dir.exists()


def test_a_server_that_cannot_start_says_why() -> None:
    server = RedisServer(extra_args=["--no-such-directive", "1"])
    try:
        with pytest.raises(RedisServerError, match="(?i)bad directive|no-such-directive"):
            server.start()
        assert not server.is_running()
    finally:
        server.close()


def test_free_port_is_bindable_and_never_6379() -> None:
    port = free_port()
    assert port != 6379
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", "ready"])
    assert wait_until(lambda: next(calls), timeout=5) == "ready"


def test_wait_until_fails_with_the_message_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"queue drained \(waited 0.05s; last value: \[\]\)"):
        wait_until(lambda: [], timeout=0.05, message="queue drained")


def test_tmp_config_writes_yaml_from_text_or_a_mapping(
    tmp_config: Callable[..., Path], tmp_path: Path
) -> None:
    from_text = tmp_config(
        """
        redis:
          url: ${REDIS_URL:-redis://localhost}
        """
    )
    from_dict = tmp_config({"queues": {"default": {"concurrency": 10}}})
    assert from_text.parent == from_dict.parent == tmp_path
    assert from_text != from_dict
    assert from_text.read_text() == "redis:\n  url: ${REDIS_URL:-redis://localhost}\n"
    assert yaml.safe_load(from_dict.read_text()) == {"queues": {"default": {"concurrency": 10}}}


def test_a_skip_is_a_failure_when_ci_is_set(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_skips.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_skipped():
                pytest.skip("no redis-server")

            @pytest.mark.xfail(reason="known")
            def test_expected_failure():
                assert False
            """
        )
    )

    def run(ci: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
        if ci is not None:
            env["CI"] = ci
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.support.no_skips",
             "-p", "no:cacheprovider", "-rA", str(tmp_path)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )

    in_ci = run("true")
    assert in_ci.returncode == 1, in_ci.stdout
    assert "1 failed, 1 xfailed" in in_ci.stdout
    assert "a skip is a failure when CI is set" in in_ci.stdout

    locally = run(None)
    assert locally.returncode == 0, locally.stdout
    assert "1 skipped, 1 xfailed" in locally.stdout
