"""The workers, scheduled, dead and job pages over HTTP, and the moves their forms make."""

from __future__ import annotations

import html
import json
import re
from typing import Callable

import redis

import geoq
from geoq.admin import groups
from geoq.broker import keys
from tests.support.dashboard import Http, bury

Serve = Callable[..., Http]
SCRIPT = "<script>alert('x')</script>"



def test_every_page_answers_200(serve: Serve, redis_client: redis.Redis) -> None:
    job = bury(redis_client, "mail", [{"n": 1}])[0]
    http = serve()
    for path in ("/workers", "/scheduled", "/scheduled?queue=mail", "/dead", "/dead?queue=mail&type=t.job&text=boom",
                 "/job", f"/job?id={job.id}"):
        answer = http.get(path)
        assert answer.status == 200, (path, answer.message[:300])


def test_run_now_moves_a_scheduled_job_to_the_head_of_its_ready_list(serve: Serve, redis_url: str,
                                                                     redis_client: redis.Redis) -> None:
    http = serve()
    with geoq.Client(redis_url) as client:
        first = client.enqueue("t.job", {"n": 1}, queue="mail")
        later = client.enqueue("t.job", {"n": 2}, queue="mail", delay=3600)
        page = http.get("/scheduled?queue=mail")
        answer = http.submit(page.form("/scheduled/run", id=later.id))
        assert answer.status == 303
        assert client.status(later.id).state == "queued"
    ready = redis_client.lrange(keys.queue_keys("mail").ready, 0, -1)
    assert [r.split(b'"')[3].decode() for r in ready] == [later.id, first.id]
    assert redis_client.zcard(keys.queue_keys("mail").scheduled) == 0
    again = http.submit(page.form("/scheduled/run", id=later.id))
    assert again.status == 404 and "no longer scheduled" in again.message


def test_delete_cancels_a_scheduled_job(serve: Serve, redis_url: str, redis_client: redis.Redis) -> None:
    http = serve()
    with geoq.Client(redis_url) as client:
        job = client.enqueue("t.job", {"n": 1}, queue="mail", delay=3600)
        http.submit(http.get("/scheduled?queue=mail").form("/scheduled/delete", id=job.id))
        assert client.status(job.id).state == "cancelled"
    assert redis_client.zcard(keys.queue_keys("mail").scheduled) == 0


def test_a_payload_holding_a_script_tag_is_shown_as_text_everywhere(serve: Serve, redis_url: str,
                                                                     redis_client: redis.Redis) -> None:
    dead = bury(redis_client, "mail", [{"html": SCRIPT}], error=f"ValueError: bad {SCRIPT}")[0]
    with geoq.Client(redis_url) as client:
        waiting = client.enqueue("t.job", {"html": SCRIPT}, queue="mail", delay=3600)
    http = serve()
    for path in ("/scheduled?queue=mail", f"/job?id={waiting.id}", f"/job?id={dead.id}", "/dead"):
        text = http.get(path).text
        assert "<script>alert" not in text and "&lt;script&gt;alert(" in text, path


def test_secrets_in_a_payload_are_masked_on_the_job_page(serve: Serve, redis_client: redis.Redis) -> None:
    job = bury(redis_client, "mail", [{"to": "a@example.com", "password": "hunter2",
                                       "headers": {"Authorization": "Bearer abc123"},
                                       "url": "https://user:pw123@example.com/x"}])[0]
    text = serve().get(f"/job?id={job.id}").text
    assert "a@example.com" in text and "https://user:••••••@example.com/x" in text
    assert "hunter2" not in text and "abc123" not in text and "pw123" not in text


def test_dead_jobs_are_grouped_by_their_error(serve: Serve, redis_client: redis.Redis) -> None:
    bury(redis_client, "mail", [{"n": n} for n in range(3)], error="RuntimeError: timeout after 30 s on 10.0.0.7")
    bury(redis_client, "mail", [{"n": 9}], error="KeyError: 'user'")
    text = serve().get("/dead?queue=mail").text
    assert "2 groups" in text and text.count('action="/dead/retry"') == 2 + 1   # + "Retry all of mail"


def test_a_filtered_count_over_many_groups_is_shown_as_about(serve: Serve, redis_client: redis.Redis) -> None:
    many = groups.EXACT_TOTAL + 1
    bury(redis_client, "mail", [{"n": n} for n in range(many)], [f"t.kind{n}" for n in range(many)])
    http = serve()
    assert f"<h2>{many:,} groups</h2>" in http.get("/dead?queue=mail").text   # no filter: counted exactly
    about = re.search(r"<h2>about ([\d,]+) groups</h2>", http.get("/dead?queue=mail&text=boom").text)
    assert about is not None and int(about.group(1).replace(",", "")) > groups.EXACT_TOTAL // 2


def test_retrying_a_group_puts_its_jobs_back_on_the_ready_list(serve: Serve, redis_client: redis.Redis) -> None:
    jobs = bury(redis_client, "mail", [{"n": n} for n in range(3)], error="RuntimeError: boom")
    other = bury(redis_client, "mail", [{"n": 9}], error="KeyError: 'user'")
    http = serve()
    page = http.get("/dead?queue=mail")
    form = next(f for f in page.forms() if f["action"] == "/dead/retry" and f["scope"] == "group"
                and "boom" in page.text.split(f'value="{f["fp"]}"')[0].rsplit("<tr>", 1)[-1])
    answer = http.submit(form)
    assert answer.status == 303 and "retried+3+dead+jobs" in answer.headers["Location"]
    assert answer.headers["Location"].startswith("/dead?queue=mail")
    k = keys.queue_keys("mail")
    assert sorted(r.split(b'"')[3].decode() for r in redis_client.lrange(k.ready, 0, -1)) == sorted(j.id for j in jobs)
    assert [json.loads(m)["id"] for m in redis_client.zrange(k.dead, 0, -1)] == [other[0].id]


def test_one_dead_job_deleted_from_its_page_and_all_retried_from_the_list(serve: Serve,
                                                                          redis_client: redis.Redis) -> None:
    a, b, c = bury(redis_client, "mail", [{"n": n} for n in range(3)])
    http = serve()
    answer = http.submit(http.get(f"/job?id={a.id}").form("/dead/delete", id=a.id))
    assert answer.status == 303 and answer.headers["Location"].startswith("/dead?queue=mail&done=dead+job")
    assert http.get(f"/job?id={a.id}").status == 404
    http.submit(http.get("/dead?queue=mail").form("/dead/retry", scope="all"))
    k = keys.queue_keys("mail")
    assert redis_client.zcard(k.dead) == 0 and redis_client.llen(k.ready) == 2


def test_the_job_page_of_an_unknown_or_bad_id(serve: Serve) -> None:
    http = serve()
    missing = http.get("/job?id=mail.nothing-here")
    assert missing.status == 404 and missing.message == "no job mail.nothing-here (unknown id, or its record has expired)"
    bad = http.get("/job?id=a%20b")
    assert bad.status == 400 and bad.message.startswith("id: ")


def test_bad_parameters_of_the_dead_pages_are_400(serve: Serve) -> None:
    http = serve()
    assert http.get("/dead/group?queue=mail&fp=..%2F").message.startswith("fp: expected a group's fingerprint")
    form = http.get("/dead?queue=mail").form("/dead/retry", scope="all")
    answer = http.submit({**form, "scope": "everything"})
    assert answer.status == 400 and answer.message == "400 Bad Request: scope: expected job, group or all, got 'everything'"


def test_an_action_never_sends_the_browser_to_another_site(serve: Serve) -> None:
    http = serve()
    form = http.get("/dead?queue=mail").form("/dead/retry", scope="all")
    for back in ("https://evil.example/dead", "//evil.example/dead", "/queues"):
        assert http.submit({**form, "back": back}).headers["Location"].startswith("/dead?done=")


def test_the_workers_page_lists_registered_workers(serve: Serve, redis_client: redis.Redis) -> None:
    redis_client.hset(keys.WORKERS, "w-1", '{"id": "w-1", "host": "box", "pid": 7, "queues": ["mail"], '
                                           '"concurrency": 200, "in_flight": 50, "beat_at": 1}')
    text = serve().get("/workers").text
    assert "<code>w-1</code>" in text and "box (pid 7)" in text and "(25%)" in text and "0 alive, 1 silent" in text


def test_the_overview_charts_each_window_at_its_resolution(serve: Serve) -> None:
    http = serve(worker={"queues": ["mail", "other"]})
    for window, points, title in (("1h", 60, "minute"), ("24h", 144, "10 minutes"), ("7d", 168, "hour")):
        text = http.get(f"/?window={window}").text
        charts = [json.loads(html.unescape(raw)) for raw in re.findall(r'data-chart="([^"]+)"', text)]
        assert f"<h2>Jobs per {title}</h2>" in text
        assert len(charts) == 3   # throughput, then the wait of each queue
        assert all(points // 2 < len(c["x"]) <= points for c in charts), window   # read_history's step
        assert [s["label"] for s in charts[0]["series"]] == ["processed", "failed", "dead"]
        assert [s["label"] for s in charts[1]["series"]] == ["p50", "p95", "p99"]


def test_a_queued_job_is_cancelled_from_its_page(serve: Serve, redis_url: str) -> None:
    http = serve()
    with geoq.Client(redis_url) as client:
        job = client.enqueue("t.job", {"n": 1}, queue="mail")
        page = http.get(f"/job?id={job.id}")
        assert 'badge info">queued' in page.text
        answer = http.submit(page.form("/job/cancel", id=job.id))
        assert answer.status == 303 and client.status(job.id).state == "cancelled"
    assert "cancelled" in http.get(answer.headers["Location"]).text
