"""The metrics endpoint served by a greenlet in a patched process, over real HTTP against real Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import geoq
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from tests.metrics.conftest import MetricsProcess, families, sample
from tests.support.keyspace import places
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not on PATH: bin/test installs Debian's prometheus package"
    return path


def test_metrics_are_prometheus_text_or_openmetrics_when_the_scraper_asks(metrics_process: MetricsProcess) -> None:
    text = metrics_process.get("/metrics")
    assert text.status == 200 and text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "geoq_jobs" in families(text.body)
    om = metrics_process.get("/metrics", headers={"Accept": OPENMETRICS})
    assert om.status == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.body.endswith("# EOF\n")
    parsed = {f.name: f for f in openmetrics_families(om.body)}
    assert parsed["geoq_jobs"].type == "counter" and parsed["geoq_queue_depth"].type == "gauge"


def test_health_and_readiness_answer_200_while_redis_answers(metrics_process: MetricsProcess) -> None:
    assert (metrics_process.get("/healthz").status, metrics_process.get("/readyz").status) == (200, 200)
    assert metrics_process.get("/nothing-here").status == 404


def test_hooks_of_a_served_worker_move_the_scraped_counters(metrics_process: MetricsProcess) -> None:
    for name in ("Succeeded", "Succeeded", "RetryAt", "Dead"):
        metrics_process.command("outcome", "t.ok", "default", name, 0.2)
    metrics_process.command("outcome", "junk", "default", "Succeeded", 0.2)
    metrics_process.command("doa", "bulk", "-")
    metrics_process.command("batch", 25)
    metrics_process.command("error", "fetch")
    text = metrics_process.scrape()
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="succeeded") == 2
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="retried") == 1
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="dead") == 1
    assert sample(text, "geoq_jobs_total", type="_unknown", queue="default", outcome="succeeded") == 1
    assert sample(text, "geoq_jobs_total", type="_unknown", queue="bulk", outcome="dead") == 1
    assert sample(text, "geoq_job_duration_seconds_count", type="t.ok", queue="default") == 4
    assert sample(text, "geoq_fetch_batch_size_sum") == 25
    assert sample(text, "geoq_redis_errors_total", op="fetch") == 1
    assert sample(text, "geoq_jobs_in_flight") == 7 and sample(text, "geoq_pool_size") == 50


def test_scraped_depths_equal_llen_and_zcard(metrics_process: MetricsProcess, redis_url, redis_client) -> None:
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.ok", {"i": i}) for i in range(6)])
    client.enqueue_many([("t.bulk", {"i": i}, {"queue": "bulk"}) for i in range(2)])
    client.enqueue("t.ok", {}, delay=3600)
    text = metrics_process.scrape()
    seen = places(redis_client, ["default", "bulk"])
    for queue in ("default", "bulk"):
        assert sample(text, "geoq_queue_depth", queue=queue, state="ready") == redis_client.llen(
            f"geoq:{{{queue}}}:ready") == seen.ready[queue]
        assert sample(text, "geoq_queue_depth", queue=queue, state="scheduled") == redis_client.zcard(
            f"geoq:{{{queue}}}:scheduled") == seen.scheduled[queue]
        assert sample(text, "geoq_queue_depth", queue=queue, state="processing") == seen.processing[queue] == 0
        assert sample(text, "geoq_queue_depth", queue=queue, state="dead") == len(seen.dead[queue]) == 0
    assert (seen.ready["default"], seen.scheduled["default"], seen.ready["bulk"]) == (6, 1, 2)


def _scrape_errors(served: MetricsProcess) -> float:
    reply = served.get("/metrics", timeout=3.0)
    assert reply.status == 200
    value = sample(reply.body, "geoq_redis_errors_total", op="scrape")
    assert value is not None
    return value


def test_with_redis_stopped_readyz_fails_fast_metrics_answer_and_errors_grow(tmp_path: Path) -> None:
    with RedisServer() as server:
        served = MetricsProcess(tmp_path, server.url_for(1))
        try:
            assert served.get("/readyz").status == 200
            server.stop()
            assert served.get("/readyz", timeout=2.0).status == 503
            first = _scrape_errors(served)
            assert first >= 1
            assert _scrape_errors(served) > first
            assert sample(served.scrape(), "geoq_queue_depth", queue="default", state="ready") is None
            assert served.get("/healthz", timeout=2.0).status == 200
            server.restart()
            wait_until(lambda: served.get("/readyz", timeout=2.0).status == 200, timeout=10,
                       message="/readyz did not recover after Redis came back")
            wait_until(lambda: sample(served.scrape(), "geoq_queue_depth", queue="default", state="ready") == 0,
                       timeout=10, message="depths did not come back")
        finally:
            served.close()


def test_with_redis_frozen_readyz_answers_503_within_2s_and_metrics_still_answer(tmp_path: Path) -> None:
    with RedisServer() as server:
        served = MetricsProcess(tmp_path, server.url_for(1))
        try:
            assert served.get("/readyz").status == 200
            server.pause()
            try:
                assert served.get("/readyz", timeout=2.0).status == 503
                assert _scrape_errors(served) >= 1
                assert served.get("/healthz", timeout=2.0).status == 200
            finally:
                server.resume()
            wait_until(lambda: served.get("/readyz", timeout=2.0).status == 200, timeout=10,
                       message="/readyz did not recover after Redis resumed")
        finally:
            served.close()


def test_a_greenlet_busy_for_a_second_is_counted_and_logged_with_its_stack(metrics_process: MetricsProcess) -> None:
    assert sample(metrics_process.scrape(), "geoq_hub_blocked_seconds_total") == 0
    metrics_process.command("block", 1.0)
    assert 0.5 < sample(metrics_process.scrape(), "geoq_hub_blocked_seconds_total") < 5
    assert metrics_process.get("/healthz").status == 200
    stalls = [line for line in metrics_process.log().splitlines() if "hub blocked" in line]
    assert len(stalls) == 1, metrics_process.log()
    assert "spin_without_yielding" in stalls[0] and "serve_metrics.py" in stalls[0]


def test_promtool_accepts_a_real_scrape(metrics_process: MetricsProcess) -> None:
    for name in ("Succeeded", "RetryAt", "Dead"):
        metrics_process.command("outcome", "t.ok", "default", name, 0.3)
    metrics_process.command("batch", 10)
    scraped = metrics_process.scrape()
    checked = subprocess.run([promtool(), "check", "metrics"], input=scraped, capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
