"""One trace from enqueue to run across two processes: this test's producer and bin/geoq-worker,
both with geoq.contrib.otel.Tracing and the real OpenTelemetry SDK."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import geoq
from geoq.contrib.otel import Tracing
from tests.support.keyspace import assert_settled
from tests.support.otel_tracing import read
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.handlers"
ROUTES = {"t.ok": {"handler": f"{H}:ok"}, "t.broken": {"handler": f"{H}:broken", "max_retries": 1,
                                                       "backoff": {"base": "10ms", "max": "20ms"}}}
TRACING = {"handler": "geoq.contrib.otel:Tracing",
           "options": {"service_name": "mailer", "exporter": "tests.support.otel_tracing:FileExporter"}}


def test_a_trace_runs_from_the_producers_request_to_every_run_in_the_worker(redis_url, redis_client, ledger,
                                                                          tmp_path):
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    client = geoq.Client(redis_url, middleware=[Tracing(tracer_provider=provider)])
    with provider.get_tracer("app").start_as_current_span("POST /signup") as request:
        ok = client.enqueue("t.ok", {})
        broken = client.enqueue("t.broken", {})
        unknown = client.enqueue("t.unknown", {})   # no route in the worker: buried without a run
    spans_file = tmp_path / "spans.jsonl"
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, middleware=[TRACING])

    with WorkerProcess(config, env={**ledger.env, "GEOQ_TEST_SPANS": str(spans_file)}) as worker:
        wait_until(lambda: client.status(ok.id).state == "succeeded" and client.status(broken.id).state == "dead"
                   and client.status(unknown.id).state == "dead",
                   timeout=20, message="the jobs did not finish")
        assert worker.stop() == 0, worker.log()   # worker_stopping flushes the batch of spans

    trace_id = request.get_span_context().trace_id
    enqueues = {s.attributes["messaging.message.id"]: s for s in exported.get_finished_spans()
                if s.name.startswith("enqueue")}
    runs = read(str(spans_file))
    assert {r["pid"] for r in runs} == {worker.pid} and {r["service"] for r in runs} == {"mailer"}
    assert all(r["trace_id"] == trace_id and r["kind"] == "CONSUMER" for r in runs)

    [ran] = [r for r in runs if r["attributes"]["messaging.message.id"] == ok.id]
    assert ran["name"] == "run t.ok" and ran["parent_id"] == enqueues[ok.id].context.span_id
    assert ran["attributes"] == {"messaging.system": "geoq", "messaging.operation.type": "process",
                                 "messaging.destination.name": "default", "messaging.message.id": ok.id,
                                 "geoq.job.type": "t.ok", "geoq.job.attempt": 1, "geoq.job.outcome": "succeeded"}
    assert ran["status"] == "UNSET" and ran["events"] == []

    failed = sorted((r for r in runs if r["attributes"]["messaging.message.id"] == broken.id),
                    key=lambda r: r["attributes"]["geoq.job.attempt"])
    assert [(r["attributes"]["geoq.job.attempt"], r["attributes"]["geoq.job.outcome"]) for r in failed] == [
        (1, "retry"), (2, "dead")]
    assert all(r["status"] == "ERROR" and r["events"] == ["exception"] for r in failed)
    assert all(r["parent_id"] == enqueues[broken.id].context.span_id for r in failed)

    [buried] = [r for r in runs if r["attributes"]["messaging.message.id"] == unknown.id]
    assert (buried["name"], buried["parent_id"], buried["status"]) == ("run t.unknown",
                                                                       enqueues[unknown.id].context.span_id, "ERROR")
    assert (buried["attributes"]["geoq.job.outcome"], buried["attributes"]["geoq.job.dead_reason"]) == (
        "dead", "unknown_type")
    assert len(runs) == 4   # one span per run (ok 1, broken 2) and one for the burial
    settled = assert_settled(redis_client, ["default"])
    assert sorted(d["id"] for d in settled.dead["default"]) == sorted([broken.id, unknown.id])
