"""geoq.contrib.otel.Tracing with the real OpenTelemetry SDK and its in-memory exporter, in one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from geoq.contrib.otel import Tracing
from geoq.errors import ConfigError
from geoq.job import Job
from geoq.outcome import DEAD, INTERRUPTED, RETRY, SUCCEEDED, Outcome

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(spans))
    return made


def job(attempt: int = 0, **kw: object) -> Job:
    base: dict[str, object] = dict(id="default:abc", type="email.send", queue="default", payload={},
                                   attempt=attempt)
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def run(tracing: Tracing, stored: Job, outcome: Outcome, attempt: int = 1) -> None:
    ran = Job(**{**{f: getattr(stored, f) for f in stored.__dataclass_fields__}, "attempt": attempt})
    tracing.before_run(ran)
    tracing.after_run(ran, outcome)


def test_the_run_span_continues_the_trace_of_the_enqueue_through_job_meta(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    with provider.get_tracer("app").start_as_current_span("web request") as request:
        stored = tracing.before_enqueue(job(meta={"tenant": "acme"}))
    assert stored.meta["tenant"] == "acme" and stored.meta["traceparent"].startswith("00-")

    run(tracing, stored, Outcome(SUCCEEDED, result=1, duration=0.01))

    web, enqueue, ran = sorted(spans.get_finished_spans(), key=lambda s: s.start_time)
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (web, enqueue, ran)} == {trace_id}
    assert (enqueue.name, enqueue.kind, enqueue.parent.span_id) == ("enqueue email.send", SpanKind.PRODUCER,
                                                                    web.context.span_id)
    assert (ran.name, ran.kind, ran.parent.span_id) == ("run email.send", SpanKind.CONSUMER, enqueue.context.span_id)
    assert dict(ran.attributes) == {
        "messaging.system": "geoq", "messaging.operation.type": "process", "messaging.destination.name": "default",
        "messaging.message.id": "default:abc", "geoq.job.type": "email.send", "geoq.job.attempt": 1,
        "geoq.job.outcome": "succeeded"}
    assert ran.status.status_code == StatusCode.UNSET


def test_a_failed_run_records_its_exception_and_each_attempt_has_its_own_span(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    stored = tracing.before_enqueue(job())
    error = RuntimeError("smtp down")
    run(tracing, stored, Outcome(RETRY, "RuntimeError: smtp down", "Traceback ...", delay=2.0, exception=error), 1)
    run(tracing, stored, Outcome(DEAD, "RuntimeError: smtp down", reason="max_retries", exception=error), 2)

    first, second = [s for s in spans.get_finished_spans() if s.name == "run email.send"]
    assert (first.attributes["geoq.job.attempt"], second.attributes["geoq.job.attempt"]) == (1, 2)
    assert first.attributes["geoq.job.outcome"] == "retry" and first.attributes["geoq.job.retry_delay"] == 2.0
    assert second.attributes["geoq.job.dead_reason"] == "max_retries"
    for span in (first, second):
        assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "RuntimeError: smtp down")
        [event] = span.events
        assert event.name == "exception" and event.attributes["exception.type"] == "RuntimeError"
    assert first.parent.span_id == second.parent.span_id  # both runs are children of the one enqueue


def test_the_run_span_is_current_while_the_job_runs_and_not_after(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    ran = job(attempt=1)
    tracing.before_run(ran)
    with provider.get_tracer("handler").start_as_current_span("http call"):
        pass
    tracing.after_run(ran, Outcome(SUCCEEDED))
    assert not trace.get_current_span().get_span_context().is_valid
    http, run_span = spans.get_finished_spans()
    assert http.parent.span_id == run_span.context.span_id


def test_a_job_without_a_trace_context_starts_a_trace_of_its_own(provider, spans) -> None:
    run(Tracing(tracer_provider=provider), job(meta={"tenant": "acme", "n": 3}), Outcome(SUCCEEDED))
    [span] = spans.get_finished_spans()
    assert span.parent is None and span.context.is_valid


def test_interrupted_runs_end_their_span_and_burials_start_none(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    run(tracing, job(), Outcome(INTERRUPTED, duration=0.5))
    tracing.after_run(job(), Outcome(DEAD, "no route for job type", reason="unknown_type"))  # never ran
    [span] = spans.get_finished_spans()
    assert span.attributes["geoq.job.outcome"] == "interrupted" and span.status.status_code == StatusCode.ERROR
    assert tracing._runs == {}


def test_runs_interleaved_in_many_greenlets_each_end_their_own_span(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    stored = [tracing.before_enqueue(job(id=f"default:{n}")) for n in range(200)]

    def one(s: Job) -> None:
        ran = Job(**{**{f: getattr(s, f) for f in s.__dataclass_fields__}, "attempt": 1})
        tracing.before_run(ran)
        gevent.sleep(0.001 * (hash(s.id) % 5))   # the runs overlap and end out of order
        with provider.get_tracer("handler").start_as_current_span(f"work {s.id}"):
            gevent.sleep(0)
        tracing.after_run(ran, Outcome(SUCCEEDED))

    gevent.joinall([gevent.spawn(one, s) for s in stored], raise_error=True)
    by_id = {s.span_id: s for s in (x.context for x in spans.get_finished_spans())}
    runs = {s.attributes["messaging.message.id"]: s for s in spans.get_finished_spans() if s.name.startswith("run")}
    enqueues = {s.attributes["messaging.message.id"]: s for s in spans.get_finished_spans()
                if s.name.startswith("enqueue")}
    works = [s for s in spans.get_finished_spans() if s.name.startswith("work")]
    assert len(runs) == len(enqueues) == len(works) == 200 and len(by_id) == 600
    for w in works:
        job_id = w.name.removeprefix("work ")
        assert w.parent.span_id == runs[job_id].context.span_id
        assert runs[job_id].parent.span_id == enqueues[job_id].context.span_id
    assert tracing._runs == {}


def test_an_exporter_that_is_not_a_span_exporter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gave dict, not an opentelemetry SpanExporter"):
        Tracing(exporter="builtins:dict")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        Tracing(exporter="no_such_module:Exporter")


PROBE = r"""
import importlib.abc, json, sys, traceback
importers = []
class Who(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            frames = [f for f in traceback.extract_stack() if "importlib" not in f.filename]
            importers.append(frames[-2].filename if len(frames) > 1 else "?")
        return None
sys.meta_path.insert(0, Who())
import geoq
print(json.dumps(sorted(set(importers))))
"""


def test_import_geoq_imports_no_opentelemetry_of_its_own() -> None:
    # redis-py 8 imports the OpenTelemetry API itself when it is installed (its own optional
    # instrumentation); geoq's modules must not, so every importer found must be outside geoq.
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    importers = json.loads(done.stdout.splitlines()[-1])
    assert not [f for f in importers if "/geoq/" in f and "site-packages" not in f], importers
