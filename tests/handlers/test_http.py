"""The HTTP handler called directly (no worker, no monkeypatching) against a real HTTP server."""

from __future__ import annotations

import email.utils
import json
import socket
import time

import pytest

from geoq.errors import ConfigError, Fail, Retry
from geoq.handlers.http import Fetch, fetch, retry_after
from geoq.job import Job
from tests.support.http_server import HttpServer
from tests.support.ports import free_port
from tests.support.waiting import wait_until

SECRETS = ("s3cret-token", "k3y-value", "hunter2", "qu3ry-secret")


@pytest.fixture
def server():
    with HttpServer() as s:
        yield s


def job(payload, attempt=1):
    return Job(id="q:1", type="http.fetch", queue="q", payload=payload, attempt=attempt)


def outcome(handler, payload):
    """The result, or the Retry / Fail the handler raised."""
    try:
        return handler(job(payload))
    except (Retry, Fail) as e:
        return e


def test_the_design_name_builds_the_class_once_per_route():
    assert fetch is Fetch


def test_a_2xx_answer_gives_status_selected_headers_and_the_body(server):
    result = Fetch()(job({"url": server.url("/hello")}))
    assert result == {"status": 200, "body": "GET /hello\n", "truncated": False,
                      "headers": {"content-type": "text/plain; charset=utf-8", "content-length": "11", "etag": '"v1"'}}
    assert json.loads(json.dumps(result)) == result


def test_the_body_is_cut_at_max_body_and_the_connection_is_not_reused_for_the_rest(server):
    handler = Fetch(max_body="1kb")
    result = handler(job({"url": server.url("/big?size=100000")}))
    assert result["truncated"] is True and result["body"] == "x" * 1024
    assert handler(job({"url": server.url("/small")}))["truncated"] is False
    assert server.connections == 2


def test_sequential_jobs_reuse_one_keep_alive_connection(server):
    handler = Fetch(max_connections=4)
    for i in range(20):
        assert handler(job({"url": server.url(f"/n/{i}")}))["status"] == 200
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_without_failing_the_job():
    with HttpServer(idle_timeout=0.2) as server:
        handler = Fetch()
        handler(job({"url": server.url("/one")}))
        wait_until(lambda: server.open_connections == 0, message="server closed the idle connection")
        assert handler(job({"url": server.url("/two")}))["status"] == 200
        assert server.connections == 2


def test_json_goes_out_as_a_post_with_default_and_payload_headers(server):
    handler = Fetch(headers={"Authorization": "Bearer s3cret-token", "X-Team": "core"})
    handler(job({"url": server.url("/hook"), "json": {"n": 1}, "headers": {"X-Team": "edge"}}))
    seen = server.requests_to("/hook")[0]
    assert seen.method == "POST" and json.loads(seen.body) == {"n": 1}
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["authorization"] == "Bearer s3cret-token" and seen.headers["x-team"] == "edge"


def test_url_credentials_become_basic_auth(server):
    Fetch()(job({"url": server.url("/a").replace("://", "://user:hunter2@"), "method": "DELETE"}))
    seen = server.requests_to("/a")[0]
    assert seen.method == "DELETE" and seen.headers["authorization"] == "Basic dXNlcjpodW50ZXIy"


def test_503_with_retry_after_seconds_asks_for_that_delay(server):
    error = outcome(Fetch(), {"url": server.url("/busy?status=503&retry_after=7")})
    assert isinstance(error, Retry) and error.delay == 7.0
    assert "HTTP 503" in str(error) and "/busy" in str(error)


def test_429_with_an_http_date_asks_for_the_time_until_then(server):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = outcome(Fetch(), {"url": server.url(f"/slow?status=429&retry_after={when}")})
    assert isinstance(error, Retry) and 25 <= error.delay <= 30


def test_retry_after_reads_seconds_and_dates_and_ignores_nonsense():
    assert retry_after("120", 0) == 120.0
    assert retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 400.0) == 0.0
    assert retry_after("soon", 0) is None and retry_after(None, 0) is None
    assert retry_after("99999999", 0) == 86400.0


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_errors_and_throttling_without_retry_after_retry_with_backoff(server, status):
    error = outcome(Fetch(), {"url": server.url(f"/e?status={status}")})
    assert isinstance(error, Retry) and error.delay is None and f"HTTP {status}" in str(error)


@pytest.mark.parametrize("status", [404, 400, 401, 410, 301])
def test_other_unexpected_statuses_fail_at_once(server, status):
    error = outcome(Fetch(), {"url": server.url(f"/e?status={status}")})
    assert isinstance(error, Fail) and f"HTTP {status}" in str(error)


def test_expect_lists_the_accepted_statuses(server):
    handler = Fetch()
    assert handler(job({"url": server.url("/gone?status=404"), "expect": [200, 404]}))["status"] == 404
    assert handler(job({"url": server.url("/moved?status=301"), "expect": ["3xx"]}))["status"] == 301
    assert isinstance(outcome(handler, {"url": server.url("/ok"), "expect": "201-204"}), Fail)


def test_a_refused_connection_retries():
    error = outcome(Fetch(), {"url": f"http://127.0.0.1:{free_port()}/x"})
    assert isinstance(error, Retry) and "connection refused" in str(error)


def test_a_read_timeout_retries(server):
    error = outcome(Fetch(timeout="100ms"), {"url": server.url("/slow?delay=1")})
    assert isinstance(error, Retry) and "timed out" in str(error)


def test_a_payload_timeout_overrides_the_route_timeout(server):
    error = outcome(Fetch(timeout="10s"), {"url": server.url("/slow?delay=1"), "timeout": 0.1})
    assert isinstance(error, Retry) and "timed out" in str(error)


def test_a_server_that_answers_garbage_retries():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        conn.close()

    import threading
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        error = outcome(Fetch(), {"url": f"http://127.0.0.1:{port}/"})
    finally:
        thread.join(5)
        listener.close()
    assert isinstance(error, Retry) and "malformed response" in str(error)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://[::1]/", "http://10.0.0.5/", "http://169.254.169.254/",
                                 "http://localhost:{port}/", "http://127.1:{port}/"])
def test_block_private_networks_fails_urls_that_reach_private_addresses(server, url):
    error = outcome(Fetch(block_private_networks=True), {"url": url.format(port=server.port)})
    assert isinstance(error, Fail) and "block_private_networks refuses" in str(error)
    assert server.connections == 0


def test_allow_hosts_fails_other_hosts_and_lets_listed_ones_through(server):
    assert isinstance(outcome(Fetch(allow_hosts=["api.example.com"]), {"url": server.url("/")}), Fail)
    assert Fetch(allow_hosts=["*.example.com", "127.0.0.1"])(job({"url": server.url("/")}))["status"] == 200


@pytest.mark.parametrize("payload, message", [
    (None, "'url'"), ({"url": "ftp://x/"}, "http:// or https://"), ({"url": "http://:80/"}, "with a host"),
    ({"url": "http://x/", "json": {}, "body": "b"}, "not both"), ({"url": "http://x/", "expect": [700]}, "expect"),
    ({"url": "http://x/", "headers": {"a": "b\r\nc: d"}}, "line break"), ({"url": "http://x/", "bogus": 1}, "bogus"),
    ({"url": "http://x/", "timeout": -1}, "timeout"), ({"url": "http://x/", "method": "G T"}, "method"),
])
def test_a_malformed_payload_fails_at_once(payload, message):
    error = outcome(Fetch(), payload)
    assert isinstance(error, Fail) and message in str(error)


@pytest.mark.parametrize("options, message", [
    ({"max_connections": 0}, "max_connections"), ({"timeout": "soon"}, "timeout"), ({"max_body": "lots"}, "max_body"),
    ({"allow_hosts": ["a*b"]}, "allow_hosts"), ({"headers": ["x"]}, "headers"), ({"retries": 3}, "unknown option"),
    ({"block_private_networks": "yes"}, "block_private_networks"),
])
def test_bad_route_options_are_a_clear_error_at_start_up(options, message):
    with pytest.raises(ConfigError, match=message):
        Fetch(**options)


def test_secrets_never_reach_results_errors_or_the_handlers_repr(server):
    handler = Fetch(headers={"Authorization": "Bearer s3cret-token"}, timeout="100ms")
    payloads = [
        {"url": server.url("/ok?token=qu3ry-secret"), "headers": {"X-Api-Key": "k3y-value"}},
        {"url": server.url("/e?status=500&token=qu3ry-secret").replace("://", "://u:hunter2@")},
        {"url": server.url("/e?status=404&token=qu3ry-secret"), "headers": {"X-Api-Key": "k3y-value"}},
        {"url": server.url("/e?delay=1&token=qu3ry-secret")},
        {"url": f"http://u:hunter2@127.0.0.1:{free_port()}/?token=qu3ry-secret"},
        {"url": "http://x/", "headers": {"X-Api-Key": ["k3y-value"]}},
    ]
    texts = [repr(handler), repr(handler.options)]
    for payload in payloads:
        result = outcome(handler, payload)
        texts.append(json.dumps(result) if isinstance(result, dict) else f"{result} {result!r}")
    for text in texts:
        assert not any(secret in text for secret in SECRETS), text
