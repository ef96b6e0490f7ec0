"""The dashboard over plain HTTP: guards (auth, form tokens, read-only), escaping, errors, headers."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any, Callable

import redis

import geoq
from geoq.broker import keys
from geoq.dashboard import wsgi_app
from tests.support.dashboard import Http, ServedApp, bury

Serve = Callable[..., Http]
PAGES = ("/", "/?window=24h", "/?window=7d", "/queues")


def test_every_page_answers_200_with_a_content_security_policy(serve: Serve) -> None:
    http = serve()
    for path in PAGES:
        answer = http.get(path)
        assert answer.status == 200, (path, answer.text[:300])
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert "<script>" not in answer.text and "onclick" not in answer.text   # no inline script at all


def test_the_queues_page_shows_each_queue_with_its_depths(serve: Serve, redis_url: str) -> None:
    http = serve()
    with geoq.Client(redis_url) as client:
        client.enqueue("t.job", {}, queue="mail")
        client.enqueue("t.job", {}, queue="mail", delay=600)
    text = http.get("/queues").text
    row = text[text.index("<strong>mail</strong>"):].split("</tr>")[0]
    assert [cell for cell in row.split("<td>")[2:4]] == ["1</td>", '<a href="/scheduled?queue=mail">1</a></td>']


def test_a_post_without_a_form_token_is_refused_with_403(serve: Serve, redis_client: redis.Redis) -> None:
    http = serve()
    http.get("/queues")   # has a cookie now, but the form field is missing
    answer = http.post("/queues/pause", {"queue": "mail"})
    assert answer.status == 403 and "CSRF" in answer.text
    assert not redis_client.exists(keys.queue_keys("mail").paused)


def test_a_token_of_another_browser_is_refused(serve: Serve, redis_client: redis.Redis) -> None:
    http = serve()
    form = http.get("/queues").form("/queues/pause", queue="mail")
    stranger = Http(http.base)
    stranger.get("/queues")   # a cookie of its own
    assert stranger.submit(form).status == 403
    assert not redis_client.exists(keys.queue_keys("mail").paused)


def test_pause_and_resume_through_the_page_forms(serve: Serve, redis_client: redis.Redis) -> None:
    http = serve()
    answer = http.submit(http.get("/queues").form("/queues/pause", queue="mail"))
    assert answer.status == 303 and "paused" in answer.headers["Location"]
    assert redis_client.exists(keys.queue_keys("mail").paused)
    page = http.get(answer.headers["Location"])
    assert "queue mail paused" in page.text and 'badge warn">paused' in page.text
    http.submit(page.form("/queues/resume", queue="mail"))
    assert not redis_client.exists(keys.queue_keys("mail").paused)


def test_purge_empties_a_queue(serve: Serve, redis_url: str, redis_client: redis.Redis) -> None:
    http = serve()
    with geoq.Client(redis_url) as client:
        client.enqueue_many([("t.job", {"n": n}, {"queue": "mail"}) for n in range(3)])
    answer = http.submit(http.get("/queues").form("/queues/purge", queue="mail"))
    assert answer.status == 303 and "purged+3+ready" in answer.headers["Location"]
    assert redis_client.llen(keys.queue_keys("mail").ready) == 0


def test_read_only_shows_no_actions_and_refuses_posts(serve: Serve, redis_client: redis.Redis) -> None:
    acting = serve()
    form = acting.get("/queues").form("/queues/pause", queue="mail")
    http = serve(read_only=True)
    assert 'method="post"' not in http.get("/queues").text
    http.jar = acting.jar   # a valid token and cookie do not help
    answer = http.submit({**form, "action": "/queues/pause"})
    assert answer.status == 403 and "read-only" in answer.text
    assert not redis_client.exists(keys.queue_keys("mail").paused)


def test_read_only_from_the_config_file(serve: Serve) -> None:
    assert 'method="post"' not in serve(dashboard={"read_only": True}).get("/queues").text


def test_basic_auth_wrong_or_missing_gets_401(serve: Serve) -> None:
    http = serve(dashboard={"username": "ops", "password": "s3cret"})
    assert http.get("/").status == 401
    assert http.get("/static/dashboard.css").status == 401
    wrong = Http(http.base, ("ops", "guess"))
    answer = wrong.get("/queues")
    assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert Http(http.base, ("ops", "s3cret")).get("/queues").status == 200


def test_text_from_the_request_is_shown_escaped(serve: Serve) -> None:
    text = serve().get("/queues?done=%3Cscript%3Ealert(1)%3C/script%3E").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text


def test_an_unknown_page_is_404(serve: Serve) -> None:
    answer = serve().get("/nowhere")
    assert answer.status == 404 and answer.message == "no page /nowhere"


def test_a_get_on_an_action_is_405(serve: Serve) -> None:
    assert serve().get("/queues/pause").status == 405


def test_a_bad_page_number_is_400_naming_the_parameter(serve: Serve) -> None:
    answer = serve().get("/queues?page=abc")
    assert answer.status == 400 and "page: expected a whole number from 1" in answer.text


def test_a_bad_window_is_400(serve: Serve) -> None:
    answer = serve().get("/?window=2d")
    assert answer.status == 400 and answer.message == "window: expected one of 1h, 24h, 7d, got '2d'"


def test_a_cursor_the_groups_layer_refuses_is_400_with_one_line(serve: Serve, redis_client: redis.Redis) -> None:
    bury(redis_client, "mail", [{"n": 1}])
    http = serve()
    fp = re.search(r"fp=([0-9a-z]+)", http.get("/dead?queue=mail").text)
    assert fp is not None
    message = "cursor: not one this page gave; start again from the first page"
    for path in ("/dead?cursor=garbage", "/dead?queue=mail&cursor=1.5%2Fabc%2Fno%20such%7Bqueue",
                 f"/dead/group?queue=mail&fp={fp.group(1)}&cursor=otherfp%3A1%3Ax"):
        answer = http.get(path)
        assert (answer.status, answer.message) == (400, message), path


def test_a_bad_queue_name_in_an_action_is_400(serve: Serve) -> None:
    http = serve()
    form = http.get("/queues").form("/queues/pause", queue="mail")
    answer = http.submit({**form, "queue": "a b{c}"})
    assert answer.status == 400 and answer.text.startswith("400 Bad Request: queue: ")


def test_static_files_are_served_with_their_types(serve: Serve) -> None:
    http = serve()
    assert http.get("/static/uPlot.iife.min.js").headers["Content-Type"].endswith("javascript; charset=utf-8")
    assert http.get("/static/dashboard.css").headers["Content-Type"] == "text/css; charset=utf-8"
    assert "MIT" in http.get("/static/uPlot.LICENSE").text
    assert http.get("/static/../app.py").status == 404


def test_mounted_under_a_prefix_every_link_and_form_keeps_it(config_file: Callable[..., Path]) -> None:
    app = wsgi_app(str(config_file()))

    def mounted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ["PATH_INFO"]
        if not path.startswith("/ops/geoq"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not here"]
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/ops/geoq", path[len("/ops/geoq"):] or "/"
        return app(environ, start_response)

    served = ServedApp(mounted)
    try:
        http = Http(served.url + "/ops/geoq")
        page = http.get("/queues")
        links = re.findall(r'(?:href|action|src)="([^"]+)"', page.text)
        assert links and all(link.startswith("/ops/geoq/") for link in links), links
        answer = http.submit(page.form("/queues/pause", queue="mail"))
        assert answer.status == 303 and answer.headers["Location"].startswith("/ops/geoq/queues?")
        assert "Path=/ops/geoq;" in page.headers["Set-Cookie"]
    finally:
        served.close()


def test_redis_unreachable_is_a_503_page_saying_so(serve: Serve) -> None:
    http = serve(redis={"url": "redis://127.0.0.1:1/0"})
    answer = http.get("/queues")
    assert answer.status == 503 and answer.message.startswith("Redis is not answering: ")
    assert http.get("/static/dashboard.css").status == 200   # the files need no Redis


def test_a_head_request_answers_as_a_get_would(serve: Serve) -> None:
    http = serve()
    answer = http._open(urllib.request.Request(http.base + "/queues", method="HEAD"))
    assert answer.status == 200 and answer.text == ""
