"""The pieces the built-in handlers share, and the one home of the exit codes.

ConnectionPool is driven with real http.client connections to a real
keep-alive server (tests.support.http_server) from plain threads, the way a
script uses a handler; the server's own counts say how many connections were
opened and how many were open at once.
"""

from __future__ import annotations

import ast
import http.client
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from geoq import exits
from geoq.config.schema import Invalid, integer, optional_text
from geoq.errors import ConfigError
from geoq.handlers.http import Fetch
from geoq.handlers.options import checked
from geoq.handlers.pools import ConnectionPool, Stale
from geoq.handlers.smtp import Send
from tests.support.http_server import HttpServer
from tests.support.waiting import wait_until

GEOQ = Path(__file__).resolve().parents[2] / "geoq"
Pool = ConnectionPool[http.client.HTTPConnection]


@pytest.fixture
def server():
    with HttpServer() as s:
        yield s


def opener(server: HttpServer) -> Callable[[], http.client.HTTPConnection]:
    return lambda: http.client.HTTPConnection(server.host, server.port, timeout=5)


def get(pool: Pool, path: str) -> Callable[[http.client.HTTPConnection, bool], int]:
    """A job's work: one GET, read to the end, the connection given back."""
    def work(conn: http.client.HTTPConnection, reused: bool) -> int:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        pool.give(conn)
        return response.status
    return work


def in_threads(count: int, target: Callable[[], Any]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def joined(threads: list[threading.Thread], timeout: float = 10.0) -> bool:
    for t in threads:
        t.join(timeout)
    return not any(t.is_alive() for t in threads)


# --- ConnectionPool: bounds and reuse ---------------------------------------------------------


def test_the_pool_never_holds_more_connections_than_its_size_and_reuses_them():
    with HttpServer(delay=0.05) as server:
        pool: Pool = ConnectionPool(2, opener(server))
        statuses: list[int] = []
        threads = in_threads(8, lambda: statuses.append(pool.use(get(pool, "/slow"))))
        assert joined(threads)
        assert statuses == [200] * 8
        assert server.peak_connections == 2 and server.connections == 2
        pool.close()


def test_jobs_beyond_the_size_wait_for_a_slot_rather_than_fail():
    release, entered = threading.Event(), threading.Semaphore(0)
    pool: ConnectionPool[Any] = ConnectionPool(1, lambda: _Plain())

    def hold(conn: Any, reused: bool) -> None:
        entered.release()
        release.wait(10)

    first = in_threads(1, lambda: pool.use(hold))
    assert entered.acquire(timeout=10)
    second = in_threads(1, lambda: pool.use(hold))
    assert not entered.acquire(timeout=0.2)  # the second job waits while the only slot is held
    release.set()
    assert entered.acquire(timeout=10) and joined(first + second)


def test_a_slot_is_given_back_when_the_work_raises():
    pool: ConnectionPool[Any] = ConnectionPool(1, lambda: _Plain())

    def broken(conn: Any, reused: bool) -> None:
        raise ValueError("the job's own failure")

    with pytest.raises(ValueError):
        pool.use(broken)
    done = in_threads(1, lambda: pool.use(lambda conn, reused: None))
    assert joined(done, timeout=5), "the slot taken by the failed work was never released"


def test_the_newest_idle_connection_is_reused_first(server):
    pool: Pool = ConnectionPool(4, opener(server))
    older, newer = opener(server)(), opener(server)()
    for conn in (older, newer):
        get(pool, "/warm")(conn, False)
    taken = [pool.take(), pool.take(), pool.take()]
    older.close(), newer.close()
    assert taken == [newer, older, None]


def test_an_idle_connection_the_server_closed_is_dropped_and_a_new_one_opened():
    with HttpServer(idle_timeout=0.2) as server:
        pool: Pool = ConnectionPool(2, opener(server))
        seen: list[tuple[http.client.HTTPConnection, bool]] = []

        def work(conn: http.client.HTTPConnection, reused: bool) -> int:
            seen.append((conn, reused))
            return get(pool, "/x")(conn, reused)

        pool.use(work)
        wait_until(lambda: server.open_connections == 0, message="the server to close the idle connection")
        assert pool.use(work) == 200
        (first, _), (second, reused) = seen
        assert second is not first and not reused and first.sock is None  # the closed one was closed here too
        assert server.connections == 2


def test_a_closed_pool_closes_its_idle_connections_and_each_one_given_back(server):
    pool: Pool = ConnectionPool(2, opener(server))
    idle, busy = opener(server)(), opener(server)()
    get(pool, "/a")(idle, False)
    busy.connect()
    pool.close()
    pool.give(busy)  # a job that was running when the pool closed
    assert idle.sock is None and busy.sock is None and pool.take() is None
    wait_until(lambda: server.open_connections == 0, message="the server to see both connections closed")


# --- Stale --------------------------------------------------------------------------------------


def test_work_that_finds_a_reused_connection_stale_goes_again_once_on_a_new_one(server):
    pool: Pool = ConnectionPool(2, opener(server))
    pool.use(get(pool, "/warm"))
    calls: list[bool] = []

    def work(conn: http.client.HTTPConnection, reused: bool) -> int:
        calls.append(reused)
        if reused:
            conn.close()
            raise Stale("gone before anything was sent")
        return get(pool, "/again")(conn, reused)

    assert pool.use(work) == 200
    assert calls == [True, False] and server.connections == 2


def test_stale_on_a_new_connection_reaches_the_caller_after_one_try():
    pool: ConnectionPool[Any] = ConnectionPool(2, lambda: _Plain())
    calls: list[bool] = []

    def work(conn: Any, reused: bool) -> None:
        calls.append(reused)
        raise Stale("server closing: SMTP 421")

    with pytest.raises(Stale, match="421"):
        pool.use(work)
    assert calls == [False]


def test_the_smtp_and_http_handlers_share_the_one_stale_and_pool():
    from geoq.handlers import http, smtp

    assert smtp.Stale is http.Stale is Stale
    assert isinstance(Send(host="127.0.0.1").pool, ConnectionPool)
    assert isinstance(Fetch().pools.get(("http", "127.0.0.1", 80)), ConnectionPool)


class _Plain:
    """A connection with no socket: the pool's bookkeeping without a server (never reused: it looks closed)."""

    sock = None

    def close(self) -> None:
        pass


# --- the options checker ------------------------------------------------------------------------

CHECKS = {"host": optional_text, "port": integer(1), "password": optional_text}


def test_checked_returns_the_given_options_checked_and_leaves_out_the_rest():
    assert checked({"port": 25, "host": ""}, CHECKS) == {"port": 25, "host": None}


def test_an_unknown_option_is_named_with_the_options_there_are():
    with pytest.raises(ConfigError) as e:
        checked({"port": 25, "colour": "red", "bogus": 1}, CHECKS)
    assert str(e.value) == "unknown option 'bogus'; expected some of host, password, port"


def test_the_first_invalid_option_in_the_order_given_is_named_with_what_was_expected():
    with pytest.raises(ConfigError) as e:
        checked({"host": 5, "port": "x"}, CHECKS)
    assert str(e.value) == "option 'host': expected a string, got 5"
    with pytest.raises(ConfigError) as e:
        checked({"port": "x", "host": 5}, CHECKS)
    assert str(e.value) == "option 'port': expected an integer >= 1, got 'x'"


def test_a_hidden_option_never_shows_its_value():
    secret = ["hunter2-pw"]
    with pytest.raises(ConfigError) as e:
        checked({"password": secret}, CHECKS, hidden={"password"})
    assert str(e.value) == "option 'password': expected a string, got <hidden>"
    assert "hunter2" not in repr(e.value) and e.value.__cause__ is None and e.value.__suppress_context__


def test_a_handlers_own_check_is_worded_like_the_rest_or_in_its_own_words():
    def patterns(value: Any) -> list[str]:
        if not isinstance(value, list):
            raise Invalid("a list of host patterns")
        if "*.*" in value:
            raise ConfigError("option 'allow_hosts': pattern '*.*' has more than one wildcard")
        return value

    with pytest.raises(ConfigError) as e:
        checked({"allow_hosts": 3}, {"allow_hosts": patterns})
    assert str(e.value) == "option 'allow_hosts': expected a list of host patterns, got 3"
    with pytest.raises(ConfigError) as e:
        checked({"allow_hosts": ["*.*"]}, {"allow_hosts": patterns})
    assert str(e.value) == "option 'allow_hosts': pattern '*.*' has more than one wildcard"


@pytest.mark.parametrize(("handler", "options", "message"), [
    (Send, {"colour": 1}, "unknown option 'colour'; expected some of ca_file, from, host, max_connections, "
                          "password, port, ssl, starttls, timeout, username, verify"),
    (Send, {"port": 0}, "option 'port': expected an integer >= 1, got 0"),
    (Send, {"password": 7}, "option 'password': expected a string, got <hidden>"),
    (Fetch, {"colour": 1}, "unknown option 'colour'; expected some of allow_hosts, block_private_networks, "
                           "headers, idempotency_key, max_body, max_connections, timeout"),
    (Fetch, {"timeout": "soon"}, "option 'timeout': expected a duration > 0 such as 500ms, 30s, 5m, got 'soon'"),
    (Fetch, {"allow_hosts": {"a": 1}}, "option 'allow_hosts': expected a list of host patterns, got {'a': 1}"),
    (Fetch, {"headers": {"X-Key": ["s3cret"]}}, "option 'headers': header 'X-Key' must have a string value"),
])
def test_both_handlers_report_a_bad_option_in_one_line_through_the_checker(handler, options, message):
    with pytest.raises(ConfigError) as e:
        handler(**options)
    assert str(e.value) == message and "\n" not in message


# --- exit codes -----------------------------------------------------------------------------------


def test_the_exit_codes_keep_the_values_scripts_depend_on():
    worker = (exits.EXIT_OK, exits.EXIT_UNCLEAN, exits.EXIT_CONFIG, exits.EXIT_LEFT)
    admin = (exits.EXIT_OK, exits.EXIT_NOT_FOUND, exits.EXIT_USAGE, exits.EXIT_UNREACHABLE)
    assert worker == admin == (0, 1, 2, 3)


def int_constants_named_exit(path: Path) -> list[str]:
    """Names starting EXIT_ that a module binds to integers of its own."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Assign):
            names = [n for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            values = [v for v in ast.walk(node.value) if isinstance(v, ast.Constant) and type(v.value) is int]
            found += [n.id for n in names if n.id.startswith("EXIT_") and values]
    return found


def test_no_module_but_geoq_exits_defines_an_exit_code():
    own = {str(p.relative_to(GEOQ)): names for p in sorted(GEOQ.rglob("*.py"))
           if p.name != "exits.py" and (names := int_constants_named_exit(p))}
    assert own == {}
    assert int_constants_named_exit(GEOQ / "exits.py")  # the scan does find them where they are
