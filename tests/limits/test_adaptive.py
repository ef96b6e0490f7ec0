"""Adaptive limits: a server that asks us to slow down pauses that key for every worker, for the
time it asked; other keys go on at their pace, and the paused job spends no attempt.

Real servers from tests/support: the HTTP server answers 429 Retry-After: 2 once for one host
(localhost, while 127.0.0.1 is another host of the same server), the SMTP server 421 once for one
recipient domain. Routes allow no retries (max_retries: 0), so an attempt spent would be a dead job.
"""

from __future__ import annotations

import re

import geoq
from geoq.handlers.smtp import job_message_id
from tests.support.http_server import HttpServer
from tests.support.keyspace import assert_settled
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

PAUSE = 2.0
EARLY = 0.05    # the pause is timed by Redis's clock, the requests by this host's: the same clock here
IN_FLIGHT = 0.1  # runs granted before the worker heard the 429 may still reach the server this soon after it


def adaptive_route(handler: str, key: str, options: dict, **per_key) -> dict:
    return {"handler": handler, "max_retries": 0, "options": options,
            "limits": {"adaptive": True, "pause": "30s", "per_key": {"key": key, **per_key}}}


def test_a_429_with_retry_after_pauses_that_host_for_every_worker_and_not_the_others(
        redis_url, redis_client, tmp_path):
    with HttpServer() as server:
        other, paused = server.url(""), server.url("").replace("127.0.0.1", "localhost")
        routes = {"l.http": adaptive_route("geoq.handlers.http:fetch", "url_host", {"timeout": "5s"}, rate="20/s")}
        client = geoq.Client(redis_url)
        first = client.enqueue("l.http", {"url": f"{paused}/first?status=429&retry_after=2&times=1", "json": {}})
        rest = client.enqueue_many([("l.http", {"url": f"{base}/n/{i}", "json": {"n": i}})
                                    for i in range(60) for base in (paused, other)])
        config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"concurrency": 200})
        workers = [WorkerProcess(config, log=tmp_path / f"w{i}.log") for i in range(2)]
        try:
            ids = [first.id, *(j.id for j in rest)]
            wait_until(lambda: all(client.status(i).state == "succeeded" for i in ids), timeout=60, interval=0.2,
                       message="every request to succeed")
        finally:
            for w in workers:
                assert w.stop() == 0, w.log()
        seen = list(server.requests)
    throttled_at = next(r.at for r in seen if r.path.startswith("/first"))
    to_paused = [r for r in seen if r.headers["host"].startswith("localhost")]
    during = [r for r in to_paused if throttled_at + IN_FLIGHT < r.at < throttled_at + PAUSE - EARLY]
    assert during == [], f"requests to the paused host during its pause, at {[r.at - throttled_at for r in during]}"
    assert len([r for r in to_paused if throttled_at < r.at <= throttled_at + IN_FLIGHT]) <= 2   # the burst of 20/s
    assert any(r.at >= throttled_at + PAUSE - EARLY for r in to_paused)   # and it goes on after
    to_other = [r for r in seen if r.headers["host"].startswith("127.0.0.1")
                and throttled_at < r.at < throttled_at + PAUSE]
    assert len(to_other) >= 0.75 * 20 * PAUSE or len(to_other) == 60, f"{len(to_other)} to the other host"
    status = client.status(first.id)
    assert status.state == "succeeded" and status.attempts == 1   # the paused run spent no attempt
    keys = [r.headers.get("idempotency-key") for r in seen if r.path.startswith("/first")]
    assert keys == [first.id, first.id]   # the run repeated is recognisable downstream
    assert_settled(redis_client, ["default"])


def test_an_smtp_421_pauses_that_recipient_domain_for_every_worker(redis_url, redis_client, tmp_path):
    with SmtpServer(tempfail_domain="slow.example", tempfail_code=421) as server:
        routes = {"l.mail": adaptive_route("geoq.handlers.smtp:send", "recipient_domain",
                                           {**server.options(), "from": "app@geoq.example"}, concurrency=5)}
        routes["l.mail"]["limits"]["pause"] = f"{PAUSE:g}s"
        client = geoq.Client(redis_url)
        mail = {"subject": "s", "body": "b"}
        jobs = client.enqueue_many([("l.mail", {**mail, "to": f"u{i}@{domain}"})
                                    for i in range(30) for domain in ("slow.example", "fast.example")])
        config = write_config(tmp_path / "w.yaml", redis_url, routes)
        workers = [WorkerProcess(config, log=tmp_path / f"w{i}.log") for i in range(2)]
        try:
            wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in jobs), timeout=60,
                       interval=0.2, message="every mail to be sent")
        finally:
            for w in workers:
                assert w.stop() == 0, w.log()
        rcpts, messages = list(server.rcpts), list(server.messages)
    refused_at = next(at for at, _ in rcpts if server.tempfails and _ == "slow.example")
    slow = [at for at, domain in rcpts if domain == "slow.example" and at > refused_at + IN_FLIGHT]
    assert slow and min(slow) >= refused_at + PAUSE - EARLY, f"slow.example again after {min(slow) - refused_at:.2f}s"
    fast = [at for at, domain in rcpts if domain == "fast.example"]
    assert max(fast) < refused_at + PAUSE   # the other domain never waited for the pause
    assert all(client.status(j.id).attempts == 1 for j in jobs)   # the refused mail spent no attempt
    ids = {re.search(rb"Message-ID: (<[^>]+>)", m.data)[1].decode() for m in messages}
    assert ids == {job_message_id(j.id, "app@geoq.example") for j in jobs}   # each mail names its job
    assert_settled(redis_client, ["default"])
