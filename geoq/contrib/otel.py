"""OpenTelemetry tracing for geoq: one trace from the producer's enqueue to each run in a worker.

    pip install geoq[otel]

    middleware:
      - handler: geoq.contrib.otel:Tracing
        options: {service_name: mailer, exporter: "opentelemetry.exporter.otlp.proto.http.trace_exporter:OTLPSpanExporter"}

In the producer, `before_enqueue` starts and ends a PRODUCER span "enqueue <type>" (a child
of whatever span is current there) and puts its W3C trace context (`traceparent`, and
`tracestate` when there is one) into `job.meta`, which travels with the job through every
retry, the dead set and `dead retry`. In the worker, `before_run` starts a CONSUMER span
"run <type>" whose parent is that context, and makes it current for the run, so spans the
handler makes (an HTTP client's, a database's) are its children; `after_run` sets the
outcome, records the exception of a failed run and ends it. A run gets a span of its own:
a retried job shows one "run" span per attempt, all in the enqueue's trace.

Attributes, after OpenTelemetry's messaging conventions: messaging.system "geoq",
messaging.operation.type ("send" or "process"), messaging.destination.name (the queue),
messaging.message.id (the job id); and geoq.job.type, geoq.job.attempt, geoq.job.outcome
(succeeded | retry | dead | interrupted), geoq.job.dead_reason, geoq.job.retry_delay.

Which provider: `tracer_provider=` when one is given (Python); else, with `exporter`
("module:callable" building a SpanExporter), an SDK TracerProvider of its own with the
resource service.name = `service_name` and a BatchSpanProcessor, installed as the global
provider if none was (so the handlers' spans are exported too) and flushed when the worker
stops; else the global provider, configured by the application as it likes. Like every
instrumentation library, with neither this does nothing until the application sets one.

Only this module imports OpenTelemetry: `import geoq` does not.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from geoq import plugins
from geoq.errors import ConfigError
from geoq.job import Job
from geoq.middleware import Middleware, WorkerInfo
from geoq.outcome import DEAD, RETRY, SUCCEEDED, Outcome

log = logging.getLogger(__name__)

SYSTEM = "geoq"
FLUSH_SECONDS = 5.0   # the most worker_stopping waits for the last spans to be exported


class Tracing(Middleware):
    """Spans for enqueues and runs, the trace context carried in job.meta (see the module's docstring)."""

    def __init__(self, service_name: str | None = None, exporter: str | None = None, *,
                 tracer_provider: trace.TracerProvider | None = None) -> None:
        self._own: TracerProvider | None = None
        if tracer_provider is None and exporter is not None:
            tracer_provider = self._own = _provider(service_name or SYSTEM, exporter)
        self.tracer = trace.get_tracer("geoq", tracer_provider=tracer_provider)
        self._runs: dict[tuple[str, int], tuple[trace.Span, Any]] = {}  # (job id, attempt) -> span, token

    # -- producer ----------------------------------------------------------------------------

    def before_enqueue(self, job: Job) -> Job:
        span = self.tracer.start_span(f"enqueue {job.type}", kind=SpanKind.PRODUCER,
                                      attributes=_attributes(job, "send"))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        span.end()  # the enqueue's own round trip follows; this span marks where the trace forks
        return replace(job, meta={**job.meta, **carrier}) if carrier else job

    # -- worker ------------------------------------------------------------------------------

    def before_run(self, job: Job) -> None:
        parent = propagate.extract(_text_items(job.meta))
        span = self.tracer.start_span(f"run {job.type}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=_attributes(job, "process"))
        token = context.attach(trace.set_span_in_context(span, parent))
        self._runs[(job.id, job.attempt)] = (span, token)

    def after_run(self, job: Job, outcome: Outcome) -> None:
        started = self._runs.pop((job.id, job.attempt), None)
        if started is None:
            return  # buried as fetched, or before_run failed: no run span was started
        span, token = started
        try:
            _finish(span, outcome)
        finally:
            context.detach(token)
            span.end()

    def worker_stopping(self, worker: WorkerInfo) -> None:
        if self._own is not None and not self._own.force_flush(int(FLUSH_SECONDS * 1000)):
            log.warning("some spans were not exported within %.0fs of the worker's stop", FLUSH_SECONDS)


def _provider(service_name: str, exporter: str) -> TracerProvider:
    """An SDK provider exporting in batches through `exporter`'s SpanExporter; the global one if none was set."""
    found = plugins.load(exporter, "geoq.contrib.otel.Tracing: exporter")
    made = found() if callable(found) else found   # a SpanExporter class or factory, or an instance
    if not isinstance(made, SpanExporter):
        raise ConfigError(f"geoq.contrib.otel.Tracing: exporter {exporter} gave {type(made).__name__}, "
                          "not an opentelemetry SpanExporter")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(made))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def _attributes(job: Job, operation: str) -> dict[str, Any]:
    return {"messaging.system": SYSTEM, "messaging.operation.type": operation,
            "messaging.destination.name": job.queue, "messaging.message.id": job.id,
            "geoq.job.type": job.type, "geoq.job.attempt": job.attempt}


def _finish(span: trace.Span, outcome: Outcome) -> None:
    span.set_attribute("geoq.job.outcome", outcome.state)
    if outcome.state == SUCCEEDED:
        return
    if outcome.state == DEAD and outcome.reason:
        span.set_attribute("geoq.job.dead_reason", outcome.reason)
    if outcome.state == RETRY and outcome.delay is not None:
        span.set_attribute("geoq.job.retry_delay", outcome.delay)
    if outcome.exception is not None:
        span.record_exception(outcome.exception)
    span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.state))


def _text_items(meta: Any) -> dict[str, str]:
    """The string entries of a job's meta: the carrier the W3C propagator reads."""
    return {k: v for k, v in meta.items() if isinstance(v, str)}
