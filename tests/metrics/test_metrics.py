"""Metrics in process: names and labels as DESIGN.md section 6 fixes them, hooks, depths, log lines.

Everything is read back the way Prometheus would read it: the registry's
text exposition, parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from prometheus_client import REGISTRY, generate_latest

import geoq
from geoq import logs
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.broker.connection import connect
from geoq.broker.liveness import Registry
from geoq.config import default_config
from geoq.job import Job
from geoq.metrics import UNKNOWN, Metrics
from geoq.middleware import WorkerInfo
from geoq.outcome import CANCELLED, DEAD, RETRY, SUCCEEDED, Outcome
from tests.metrics.conftest import families, sample
from tests.support.keyspace import places
from tests.support.redis_server import RedisServer

ROUTES = {"t.ok": "default", "t.bulk": "bulk"}

# DESIGN.md section 6, as exposed: sample names -> label names (histogram buckets add "le").
DESIGNED = {
    "geoq_jobs_total": {"type", "queue", "outcome"},
    "geoq_job_duration_seconds_bucket": {"type", "queue", "le"},
    "geoq_job_duration_seconds_count": {"type", "queue"},
    "geoq_job_duration_seconds_sum": {"type", "queue"},
    "geoq_job_wait_seconds_bucket": {"queue", "le"},
    "geoq_job_wait_seconds_count": {"queue"},
    "geoq_job_wait_seconds_sum": {"queue"},
    "geoq_jobs_in_flight": set(),
    "geoq_pool_size": set(),
    "geoq_queue_depth": {"queue", "state"},
    "geoq_fetch_batch_size_bucket": {"le"},
    "geoq_fetch_batch_size_count": set(),
    "geoq_fetch_batch_size_sum": set(),
    "geoq_redis_errors_total": {"op"},
    "geoq_hub_blocked_seconds_total": set(),
    "geoq_reaped_jobs_total": set(),
    "geoq_middleware_errors_total": {"hook"},
}
EXTRA = {"geoq_fenced_outcomes_total": set()}  # not in DESIGN: outcomes of jobs reaped from under us


def scrape(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def job(job_type: str = "t.ok", queue: str = "default", **kw: object) -> Job:
    return Job(id=f"{queue}:x", type=job_type, queue=queue, payload={"secret": "hunter2"}, **kw)  # type: ignore[arg-type]


UNRUN = Outcome(DEAD, "no route for job type", reason="unknown_type")   # buried as fetched: never ran


def ended(name: str, duration: float) -> Outcome:
    """A run's Outcome by the name the tests give it."""
    state = {"Succeeded": SUCCEEDED, "RetryAt": RETRY, "Dead": DEAD}[name]
    return Outcome(state, None if state == SUCCEEDED else "RuntimeError: boom", duration=duration,
                   reason="max_retries" if state == DEAD else None, delay=1.0 if state == RETRY else None)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(ROUTES, ["default", "bulk"], in_flight=lambda: 3, pool_size=50)


@pytest.fixture
def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis, max_connections=4))


def test_every_designed_metric_is_exposed_with_exactly_its_labels(metrics: Metrics, broker: Broker) -> None:
    metrics.watch_depths(broker)
    metrics.fetched(3)
    metrics.before_run(job(attempt=1, enqueued_at=1.0))
    exposed: dict[str, set[str]] = {}
    for family in families(scrape(metrics)).values():
        for s in family.samples:
            if not s.name.endswith("_created"):
                exposed.setdefault(s.name, set()).update(s.labels)
    assert exposed == {**DESIGNED, **EXTRA}


def test_the_label_values_are_bounded_by_the_config(metrics: Metrics, broker: Broker) -> None:
    metrics.watch_depths(broker)
    for i in range(50):
        metrics.after_run(job(f"junk.{i}", f"q{i}"), ended("Dead", 0.1))
    values: dict[str, set[str]] = {}
    for family in families(scrape(metrics)).values():
        for s in family.samples:
            for label, value in s.labels.items():
                values.setdefault(label, set()).add(value)
    assert values["type"] == {"t.ok", "t.bulk", UNKNOWN}
    assert values["queue"] == {"default", "bulk", UNKNOWN}
    assert values["outcome"] == {"succeeded", "retried", "dead", "cancelled"}
    assert values["state"] == {"ready", "scheduled", "processing", "dead"}


def test_the_metrics_live_in_a_registry_of_their_own(metrics: Metrics) -> None:
    other = Metrics(ROUTES, ["default"])  # a second set in the same process does not collide
    other.after_run(job(), ended("Succeeded", 0.1))
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("geoq")]
    assert sample(scrape(metrics), "geoq_jobs_total", type="t.ok", outcome="succeeded") == 0
    assert sample(scrape(other), "geoq_jobs_total", type="t.ok", outcome="succeeded") == 1


def test_each_finished_run_counts_once_under_its_outcome(metrics: Metrics) -> None:
    for name, duration in (("Succeeded", 0.2), ("Succeeded", 0.3), ("RetryAt", 1.0), ("Dead", 2.0)):
        metrics.after_run(job(), ended(name, duration))
    metrics.after_run(job("t.bulk", "bulk"), ended("RetryAt", 0.5))
    text = scrape(metrics)
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="succeeded") == 2
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="retried") == 1
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="dead") == 1
    assert sample(text, "geoq_jobs_total", type="t.bulk", queue="bulk", outcome="retried") == 1
    assert sample(text, "geoq_job_duration_seconds_count", type="t.ok", queue="default") == 4
    assert sample(text, "geoq_job_duration_seconds_sum", type="t.ok", queue="default") == pytest.approx(3.5)
    assert sample(text, "geoq_job_duration_seconds_bucket", type="t.ok", queue="default", le="0.25") == 1


def test_jobs_of_unknown_types_and_queues_count_under_unknown(metrics: Metrics) -> None:
    metrics.after_run(job("nope", "elsewhere"), ended("Succeeded", 0.1))
    metrics.after_run(job("?", "default"), UNRUN)             # undecodable, not a job, oversize
    metrics.after_run(job("no.such.type", "default"), UNRUN)  # unknown_type
    metrics.after_run(job("t.bulk", "bulk"), UNRUN)
    text = scrape(metrics)
    assert sample(text, "geoq_jobs_total", type=UNKNOWN, queue=UNKNOWN, outcome="succeeded") == 1
    assert sample(text, "geoq_jobs_total", type=UNKNOWN, queue="default", outcome="dead") == 2
    assert sample(text, "geoq_jobs_total", type="t.bulk", queue="bulk", outcome="dead") == 1


def test_a_dispatched_job_is_timed_from_enqueue_or_counted_dead_when_it_cannot_run(metrics: Metrics) -> None:
    metrics.before_run(job(attempt=1, enqueued_at=time.time() - 2))
    metrics.after_run(job("?", "default"), UNRUN)              # undecodable
    metrics.after_run(job("no.such.type", "bulk"), UNRUN)      # unknown type
    text = scrape(metrics)
    assert sample(text, "geoq_job_duration_seconds_count", type=UNKNOWN, queue="default") is None  # never ran
    assert sample(text, "geoq_job_wait_seconds_count", queue="default") == 1
    assert 1.5 < sample(text, "geoq_job_wait_seconds_sum", queue="default") < 60
    assert sample(text, "geoq_jobs_total", type=UNKNOWN, queue="default", outcome="dead") == 1
    assert sample(text, "geoq_jobs_total", type=UNKNOWN, queue="bulk", outcome="dead") == 1


def test_the_other_hooks_move_their_counters(metrics: Metrics) -> None:
    for n in (1, 7, 100):
        metrics.fetched(n)
    for op in ("fetch", "fetch", "settle"):
        metrics.redis_error(op)
    metrics.fenced(2)
    metrics.reaped(5)
    metrics.blocked(1.25)
    text = scrape(metrics)
    assert sample(text, "geoq_fetch_batch_size_count") == 3
    assert sample(text, "geoq_fetch_batch_size_sum") == 108
    assert sample(text, "geoq_fetch_batch_size_bucket", le="10.0") == 2
    assert sample(text, "geoq_redis_errors_total", op="fetch") == 2
    assert sample(text, "geoq_redis_errors_total", op="settle") == 1
    assert sample(text, "geoq_redis_errors_total", op="heartbeat") == 0
    assert sample(text, "geoq_fenced_outcomes_total") == 2
    assert sample(text, "geoq_reaped_jobs_total") == 5
    assert sample(text, "geoq_hub_blocked_seconds_total") == 1.25


def starts_at(metrics: Metrics, started: Job, now: float) -> None:
    """before_run of `started` with a worker's clock reading `now`."""
    metrics.worker_started(WorkerInfo("w", ("default",), 50, lambda: now, lambda: 3))
    metrics.before_run(started)


def test_wait_is_observed_from_enqueue_or_from_the_due_time_of_a_delayed_or_retried_run(metrics: Metrics) -> None:
    starts_at(metrics, job(attempt=1, enqueued_at=100.0), now=102.5)
    starts_at(metrics, job(attempt=2, enqueued_at=100.0, due_at=149.0), now=150.0)   # a retry: from its due time
    starts_at(metrics, job(attempt=1, enqueued_at=200.0), now=199.0)   # a producer's clock ahead: 0, not < 0
    text = scrape(metrics)
    assert sample(text, "geoq_job_wait_seconds_count", queue="default") == 3
    assert sample(text, "geoq_job_wait_seconds_sum", queue="default") == 3.5


def test_in_flight_and_pool_size_read_their_sources(metrics: Metrics) -> None:
    assert sample(scrape(metrics), "geoq_jobs_in_flight") == 3
    assert sample(scrape(metrics), "geoq_pool_size") == 50
    metrics.track(lambda: 11, pool_size=20)
    assert sample(scrape(metrics), "geoq_jobs_in_flight") == 11
    assert sample(scrape(metrics), "geoq_pool_size") == 20


def test_from_config_takes_types_queues_and_pool_size_from_the_config(tmp_config) -> None:
    path = tmp_config({"worker": {"queues": ["critical", "default"], "concurrency": 123},
                       "routes": {"t.ok": {"handler": "geoq.handlers.builtin:noop", "queue": "bulk"}}})
    m = Metrics.from_config(geoq.config.load_config(str(path)))
    assert m.types == {"t.ok"} and m.queues == ("critical", "default", "bulk")
    assert sample(scrape(m), "geoq_pool_size") == 123


def _fill(client: geoq.Client, broker: Broker) -> None:
    """Jobs in every place of two queues, put there by the broker's own moves."""
    client.enqueue_many([("t.ok", {"i": i}) for i in range(9)])
    client.enqueue_many([("t.bulk", {"i": i}, {"queue": "bulk"}) for i in range(4)])
    for i in range(3):
        client.enqueue("t.ok", {"later": i}, delay=3600)
    registry = Registry(broker.client, broker.scripts)
    registry.register("w1", "{}", ["default", "bulk"], ttl=60)
    registry.register("w2", "{}", ["default"], ttl=60)
    broker.fetch(broker.client, "default", "w1", 3, None)
    broker.fetch(broker.client, "default", "w2", 2, None)
    broker.fetch(broker.client, "bulk", "w1", 1, None)
    doomed = broker.fetch(broker.client, "default", "w2", 2, None)
    burials = [Bury(e, json.dumps({"id": f"d{i}"}).encode(), True, f"d{i}", b"{}") for i, e in enumerate(doomed)]
    broker.settle("w2", [Settlement("default", burials=burials)], Retention(0, 1000, 86400))


def test_depth_gauges_equal_what_redis_holds(metrics: Metrics, broker: Broker, redis_url, redis_client) -> None:
    _fill(geoq.Client(redis_url), broker)
    metrics.watch_depths(broker)
    text = scrape(metrics)
    seen = places(redis_client, ["default", "bulk"])
    for queue in ("default", "bulk"):
        assert sample(text, "geoq_queue_depth", queue=queue, state="ready") == seen.ready[queue]
        assert sample(text, "geoq_queue_depth", queue=queue, state="scheduled") == seen.scheduled[queue]
        assert sample(text, "geoq_queue_depth", queue=queue, state="processing") == seen.processing[queue]
        assert sample(text, "geoq_queue_depth", queue=queue, state="dead") == len(seen.dead[queue])
    assert (seen.ready["default"], seen.scheduled["default"], seen.processing["default"]) == (2, 3, 5)
    assert (len(seen.dead["default"]), seen.ready["bulk"], seen.processing["bulk"]) == (2, 3, 1)


def test_a_scrape_without_redis_still_answers_and_counts_the_error(metrics: Metrics) -> None:
    with RedisServer() as server:
        metrics.watch_depths(Broker(connect(default_config(server.url).redis, max_connections=2)))
        assert sample(scrape(metrics), "geoq_queue_depth", queue="default", state="ready") == 0
        server.stop()
        text = scrape(metrics)
        again = scrape(metrics)
    assert sample(text, "geoq_queue_depth", queue="default", state="ready") is None
    assert sample(text, "geoq_pool_size") == 50
    assert sample(text, "geoq_redis_errors_total", op="scrape") == 1
    assert sample(again, "geoq_redis_errors_total", op="scrape") == 2


def _outcome_lines(fmt: str) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"geoq.test.outcomes.{fmt}")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    ran = job(attempt=2, enqueued_at=1.0)
    logs.log_outcome(logger, ran, Outcome(SUCCEEDED, result={"token": "hunter2"}, duration=0.25))
    logs.log_outcome(logger, ran, Outcome(RETRY, "RuntimeError: boom\nsecond line", duration=0.5, delay=4.0))
    logs.log_outcome(logger, ran, Outcome(DEAD, "RuntimeError: boom", TRACE, duration=1.5, reason="max_retries"))
    return stream.getvalue().splitlines()


TRACE = 'Traceback (most recent call last):\n  File "h.py", line 3, in send\n    boom()\nRuntimeError: boom'



def test_each_outcome_is_one_plain_record_with_the_job_and_no_payload_and_a_death_carries_its_traceback() -> None:
    lines = _outcome_lines("plain")
    assert lines == [
        "INFO job default:x t.ok queue=default attempt=2 succeeded in 0.250s",
        "INFO job default:x t.ok queue=default attempt=2 retried in 0.500s, retry in 4.0s: RuntimeError: boom second line",
        "ERROR job default:x t.ok queue=default attempt=2 dead in 1.500s (max_retries): RuntimeError: boom",
        *TRACE.splitlines(),
    ]


def test_each_outcome_is_one_json_object_with_the_job_fields_and_no_payload() -> None:
    lines = _outcome_lines("json")
    assert len(lines) == 3 and not any("hunter2" in line for line in lines)
    records = [json.loads(line) for line in lines]
    assert [(r["outcome"], r["level"]) for r in records] == [("succeeded", "info"), ("retried", "info"),
                                                             ("dead", "error")]
    assert [r.get("exc") for r in records] == [None, None, TRACE]
    for r in records:
        assert (r["id"], r["type"], r["queue"], r["attempt"]) == ("default:x", "t.ok", "default", 2)
    assert [r["duration"] for r in records] == [0.25, 0.5, 1.5]
    assert records[1]["delay"] == 4.0 and records[2]["reason"] == "max_retries"


def test_a_job_the_reaper_buries_after_max_deliveries_counts_as_dead_under_its_type(metrics: Metrics) -> None:
    metrics.buried("default", "t.ok")
    metrics.buried("default", None)   # an envelope whose type the reaper could not read
    text = scrape(metrics)
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="dead") == 1
    assert sample(text, "geoq_jobs_total", type=UNKNOWN, queue="default", outcome="dead") == 1


def test_a_cancelled_run_and_a_job_expired_before_it_ran_or_was_promoted_are_counted(metrics: Metrics) -> None:
    metrics.after_run(job(), Outcome(CANCELLED, duration=0.5))
    metrics.after_run(job(), Outcome(DEAD, "Expired: not started by its expiry", reason="expired"))
    metrics.buried("default", "t.ok")   # expired at promotion: no run, no delivery
    text = scrape(metrics)
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="cancelled") == 1
    assert sample(text, "geoq_jobs_total", type="t.ok", queue="default", outcome="dead") == 2
    assert sample(text, "geoq_job_duration_seconds_count", type="t.ok", queue="default") == 1
