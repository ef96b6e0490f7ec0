"""The built-in SMTP and HTTP handlers under bin/geoq-worker (gevent-patched), routed from YAML alone."""

from __future__ import annotations

import json

import pytest

import geoq
from tests.support.http_server import HttpServer
from tests.support.keyspace import assert_settled, places
from tests.support.ports import free_port
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

FAST_BACKOFF = {"base": "10ms", "max": "50ms"}
PASSWORD = "hunter2-smtp-pw"
TOKEN = "s3cret-http-token"


def settled(redis_client, timeout=60):
    wait_until(lambda: places(redis_client, ["default"]).total("live_states") == 0, timeout=timeout,
               message="every job finished")


def dead_by_id(redis_client):
    return {d["id"]: d for d in assert_settled(redis_client, ["default"]).dead["default"]}


def test_a_thousand_mails_at_concurrency_200_arrive_over_at_most_max_connections(redis_url, redis_client, tmp_path):
    with SmtpServer() as server:
        route = {"handler": "geoq.handlers.smtp:send",
                 "options": {**server.options(), "from": "app@example.com", "max_connections": 10}}
        config = write_config(tmp_path / "w.yaml", redis_url, {"email.send": route}, worker={"concurrency": 200})
        client = geoq.Client(redis_url)
        jobs = client.enqueue_many([("email.send", {"to": f"u{i}@example.com", "subject": f"n{i}", "body": "hi"})
                                    for i in range(1000)])
        with WorkerProcess(config) as worker:
            wait_until(lambda: len(server.messages) >= 1000, timeout=60, message="1000 mails received")
            settled(redis_client)
            assert worker.stop() == 0, worker.log()
        assert sorted(server.recipients()) == sorted(f"u{i}@example.com" for i in range(1000))
        assert server.connections <= 10 and server.peak_connections <= 10
    assert dead_by_id(redis_client) == {}
    assert client.result(jobs[7].id, timeout=1)["accepted"] == ["u7@example.com"]


def test_mail_over_starttls_and_auth_retries_4xx_and_dead_letters_5xx(redis_url, redis_client, tmp_path):
    with SmtpServer(starttls=True, auth=("mailer", PASSWORD), fail_every=5, reject_domain="bad.example") as server:
        route = {"handler": "geoq.handlers.smtp:send", "backoff": FAST_BACKOFF, "max_retries": 10,
                 "options": {**server.options(), "from": "app@example.com", "max_connections": 5}}
        config = write_config(tmp_path / "w.yaml", redis_url, {"email.send": route}, worker={"concurrency": 50})
        client = geoq.Client(redis_url)
        good = [f"g{i}@example.com" for i in range(180)]
        bad = [f"b{i}@bad.example" for i in range(20)]
        jobs = client.enqueue_many([("email.send", {"to": to, "subject": "s", "body": "b"}) for to in good + bad])
        with WorkerProcess(config) as worker:
            settled(redis_client)
            assert worker.stop() == 0
        log = worker.log_path.read_text()
        assert sorted(server.recipients()) == sorted(good)
        assert server.data_commands > len(good)  # some messages were refused with 451 and sent again
        assert server.connections <= 5 and set(server.logins) == {"mailer"}
    dead = dead_by_id(redis_client)
    assert set(dead) == {j.id for j in jobs[180:]}
    for record in dead.values():
        assert record["reason"] == "fail" and record["attempts"] == 1
        assert "550 5.1.1" in record["error"] and "recipient domain bad.example is not accepted" in record["error"]
    assert all(client.status(j.id).state == "succeeded" for j in jobs[:180])
    assert any(client.status(j.id).attempts > 1 for j in jobs[:180])
    assert PASSWORD not in log and PASSWORD not in json.dumps(dead)


def test_mail_after_the_server_closed_idle_connections_goes_out_on_new_ones_without_a_retry(
        redis_url, redis_client, tmp_path):
    with SmtpServer(idle_timeout=0.5) as server:
        route = {"handler": "geoq.handlers.smtp:send", "options": {**server.options(), "from": "app@example.com"}}
        config = write_config(tmp_path / "w.yaml", redis_url, {"email.send": route}, worker={"concurrency": 20})
        client = geoq.Client(redis_url)

        def batch(name):
            return client.enqueue_many([("email.send", {"to": f"{name}{i}@example.com", "subject": "s", "body": "b"})
                                        for i in range(20)])

        with WorkerProcess(config) as worker:
            first = batch("early")
            settled(redis_client)
            opened = server.connections
            wait_until(lambda: server.open_connections == 0, timeout=10, message="server closed idle connections")
            second = batch("late")
            settled(redis_client)
            assert worker.stop() == 0
        assert len(server.recipients()) == 40 and server.connections > opened
    assert dead_by_id(redis_client) == {}
    assert all(client.status(j.id).attempts == 1 for j in first + second)


def test_five_thousand_fetches_at_concurrency_1000_reuse_connections(redis_url, redis_client, tmp_path):
    with HttpServer(delay=0.05) as server:
        route = {"handler": "geoq.handlers.http:fetch", "options": {"max_connections": 100}}
        config = write_config(tmp_path / "w.yaml", redis_url, {"http.fetch": route}, worker={"concurrency": 1000})
        client = geoq.Client(redis_url)
        jobs = client.enqueue_many([("http.fetch", {"url": server.url(f"/v/{i}")}) for i in range(5000)])
        with WorkerProcess(config) as worker:
            wait_until(lambda: len(server.requests) >= 5000, timeout=60, message="5000 requests served")
            settled(redis_client)
            assert worker.stop() == 0, worker.log()
        assert len(server.requests) == 5000
        assert server.connections <= 100
    assert dead_by_id(redis_client) == {}
    assert client.result(jobs[42].id, timeout=1)["body"] == "GET /v/42\n"


def test_fetch_outcomes_retry_after_404_refused_timeouts_and_private_hosts(redis_url, redis_client, tmp_path):
    with HttpServer() as server:
        routes = {
            "http.fetch": {"handler": "geoq.handlers.http:fetch", "max_retries": 2, "backoff": FAST_BACKOFF,
                           "options": {"timeout": "300ms", "headers": {"Authorization": f"Bearer {TOKEN}"}}},
            "http.guarded": {"handler": "geoq.handlers.http:fetch", "options": {"block_private_networks": True}},
        }
        config = write_config(tmp_path / "w.yaml", redis_url, routes)
        client = geoq.Client(redis_url)
        busy = client.enqueue("http.fetch", {"url": server.url("/busy?status=503&retry_after=1&times=1")})
        missing = client.enqueue("http.fetch", {"url": server.url("/missing?status=404")})
        refused = client.enqueue("http.fetch", {"url": f"http://127.0.0.1:{free_port()}/x"})
        slow = client.enqueue("http.fetch", {"url": server.url("/slow?delay=2")})
        private = client.enqueue("http.guarded", {"url": f"http://localhost:{server.port}/"})
        with WorkerProcess(config) as worker:
            settled(redis_client, timeout=30)
            assert worker.stop() == 0
        log = worker.log_path.read_text()
        first, second = server.requests_to("/busy")
        assert second.at - first.at >= 1.0
        assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in server.requests_to("/busy"))
        assert not any(r.headers.get("host", "").startswith("localhost") for r in server.requests)
    assert client.status(busy.id).state == "succeeded" and client.status(busy.id).attempts == 2
    assert client.result(busy.id, timeout=1)["status"] == 200
    dead = dead_by_id(redis_client)
    assert set(dead) == {missing.id, refused.id, slow.id, private.id}
    assert (dead[missing.id]["reason"], dead[missing.id]["attempts"]) == ("fail", 1)
    assert "HTTP 404" in dead[missing.id]["error"]
    assert (dead[refused.id]["reason"], dead[refused.id]["attempts"]) == ("max_retries", 3)
    assert "connection refused" in dead[refused.id]["error"]
    assert (dead[slow.id]["reason"], dead[slow.id]["attempts"]) == ("max_retries", 3)
    assert "timed out" in dead[slow.id]["error"]
    assert dead[private.id]["reason"] == "fail" and "block_private_networks refuses 'localhost'" in dead[private.id]["error"]
    assert TOKEN not in log and TOKEN not in json.dumps(dead)


@pytest.mark.parametrize("options, message", [
    ({"max_connections": 0}, "max_connections"), ({"allow_hosts": ["a*b.example"]}, "allow_hosts"),
])
def test_a_worker_with_bad_handler_options_stops_with_one_line_naming_them(redis_url, tmp_path, options, message):
    from tests.support.worker_process import run_worker_once

    routes = {"http.fetch": {"handler": "geoq.handlers.http:fetch", "options": options}}
    done = run_worker_once(write_config(tmp_path / "w.yaml", redis_url, routes))
    assert done.returncode == 2
    assert "routes.http.fetch.options" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
