"""geoq.contrib.otel.Tracing with the real OpenTelemetry SDK and its in-memory exporter, in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from geoq import records
from geoq.contrib.otel import Tracing, fit
from geoq.errors import ConfigError
from geoq.job import Job
from geoq.outcome import DEAD, INTERRUPTED, RETRY, SUCCEEDED, Outcome
from geoq.records import META_LIMIT
from tests.support.otel_tracing import read

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPORTER = "tests.support.otel_tracing:FileExporter"


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


def test_an_interrupted_run_ends_its_span_and_leaves_no_run_behind(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    run(tracing, job(), Outcome(INTERRUPTED, duration=0.5))
    [span] = spans.get_finished_spans()
    assert span.attributes["geoq.job.outcome"] == "interrupted" and span.status.status_code == StatusCode.ERROR
    assert tracing._runs == {} and not trace.get_current_span().get_span_context().is_valid


def test_a_job_buried_without_a_run_gets_a_span_in_its_trace_saying_why(provider, spans) -> None:
    tracing = Tracing(tracer_provider=provider)
    stored = tracing.before_enqueue(job(type="email.sned"))
    tracing.after_run(stored, Outcome(DEAD, "no route for job type 'email.sned'", reason="unknown_type"))
    enqueue, buried = spans.get_finished_spans()
    assert (buried.name, buried.parent.span_id, buried.context.trace_id) == (
        "run email.sned", enqueue.context.span_id, enqueue.context.trace_id)
    assert buried.end_time - buried.start_time < 10_000_000   # no run: a span of (almost) no length
    assert (buried.attributes["geoq.job.outcome"], buried.attributes["geoq.job.dead_reason"]) == ("dead",
                                                                                                  "unknown_type")
    assert (buried.status.status_code, buried.status.description) == (StatusCode.ERROR,
                                                                       "no route for job type 'email.sned'")
    [event] = buried.events
    assert dict(event.attributes) == {"exception.message": "no route for job type 'email.sned'"}
    assert tracing._runs == {}


def test_the_trace_context_never_makes_an_enqueue_fail_by_outgrowing_the_meta(provider, spans, caplog) -> None:
    tracing = Tracing(tracer_provider=provider)
    big_baggage = baggage.set_baggage("b", "v" * 2000, baggage.set_baggage("a", "u" * 2500))
    token = context.attach(big_baggage)
    try:
        with_baggage = tracing.before_enqueue(job(meta={"tenant": "acme"}))
    finally:
        context.detach(token)
    near_limit = tracing.before_enqueue(job(meta={"pad": "p" * (META_LIMIT - 40)}))

    assert set(with_baggage.meta) == {"tenant", "traceparent"}    # the baggage left out, the trace kept
    assert near_limit.meta == {"pad": "p" * (META_LIMIT - 40)}     # no room even for the traceparent
    for stored in (with_baggage, near_limit):
        assert records.decode(records.encode(stored, 10**6), "default").meta == stored.meta
    dropped = [r.getMessage() for r in caplog.records if "left out of the meta" in r.getMessage()]
    assert dropped == ["trace context baggage left out of the meta of job default:abc (email.send, queue "
                       f"default): it would pass the meta's {META_LIMIT} bytes (logged once)"]


def test_fit_keeps_the_smallest_fields_that_fit_and_replaces_a_stale_context() -> None:
    stale = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "n": 1}
    fresh = {"traceparent": "00-" + "3" * 32 + "-" + "4" * 16 + "-01", "baggage": "k=" + "v" * META_LIMIT}
    assert fit(stale, fresh) == ({"n": 1, "traceparent": fresh["traceparent"]}, ["baggage"])
    assert fit({"n": 1}, {"traceparent": fresh["traceparent"]}) == ({"n": 1, "traceparent": fresh["traceparent"]},
                                                                    [])


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


def test_options_that_cannot_work_are_config_errors(provider, caplog) -> None:
    with pytest.raises(ConfigError, match="gave dict, not an opentelemetry SpanExporter"):
        Tracing(exporter="builtins:dict")
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        Tracing(exporter="no_such_module:Exporter")
    with caplog.at_level("WARNING", logger="geoq.contrib.otel"):
        Tracing(service_name="mailer")   # DESIGN.md's own example: it works, and says what it does not do
    assert "service_name 'mailer' names the provider Tracing builds for an exporter" in caplog.text
    with pytest.raises(ConfigError, match="give tracer_provider or exporter, not both"):
        Tracing(tracer_provider=provider, exporter=EXPORTER)


# The global provider can be set once per process: each case runs in a fresh interpreter.
GLOBAL_PROBE = r"""
import json, logging, sys
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from geoq.contrib.otel import Tracing
from geoq.job import Job
from geoq.middleware import WorkerInfo
from tests.support import otel_tracing

refused = []
class Refusals(logging.Handler):
    def emit(self, record):
        refused.append(record.getMessage())
logging.getLogger("opentelemetry").addHandler(Refusals())
tracing = Tracing(service_name="mailer", exporter="tests.support.otel_tracing:FileExporter")
job = Job(id="default:abc", type="email.send", queue="default", payload={}, attempt=1)
tracing.before_enqueue(job)
app = InMemorySpanExporter()
if sys.argv[1] == "producer":      # the application sets its provider after its client was built
    mine = TracerProvider()
    mine.add_span_processor(SimpleSpanProcessor(app))
    trace.set_tracer_provider(mine)
    tracing.before_enqueue(job)
else:                               # the worker: nothing else sets one
    tracing.worker_started(WorkerInfo("w", ("default",), 1, lambda: 0.0, lambda: 0))
    trace.get_tracer("handler").start_span("handler's own").end()
tracing.worker_stopping(WorkerInfo("w", ("default",), 1, lambda: 0.0, lambda: 0))
print(json.dumps({"refused": refused, "app": [s.name for s in app.get_finished_spans()],
                  "global_is_own": trace.get_tracer_provider() is tracing._own}))
"""


@pytest.mark.parametrize("side", ["producer", "worker"])
def test_the_exporters_provider_is_made_global_in_the_worker_and_never_in_a_producer(side, tmp_path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    done = subprocess.run([sys.executable, "-c", GLOBAL_PROBE, side], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
                                              "GEOQ_TEST_SPANS": str(spans_file)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    exported = sorted((r["name"], r["service"]) for r in read(str(spans_file)))
    assert seen["refused"] == []   # OpenTelemetry logs "Overriding of current TracerProvider is not allowed"
    if side == "producer":   # the application's provider won: the spans after it was set are its own
        assert (seen["global_is_own"], seen["app"]) == (False, ["enqueue email.send"])
        assert exported == [("enqueue email.send", "mailer")]
    else:                    # the worker's provider is global: the handler's own span is exported with geoq's
        assert seen["global_is_own"] is True and seen["app"] == []
        assert exported == [("enqueue email.send", "mailer"), ("handler's own", "mailer")]


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
    assert not [f for f in importers if f.startswith(str(REPO_ROOT / "geoq") + os.sep)], importers
