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
a retried job shows one "run" span per attempt, all in the enqueue's trace. A job buried
without a run (unknown type, oversize, undecodable; or decided by an earlier middleware's
before_run) gets a span of no length, dead with its reason, so its trace says why it never ran.

The trace context never makes an enqueue fail: when the job's own meta leaves too little room
under geoq.records.META_LIMIT, the propagator's largest fields (a big `baggage`, say) are left
out, then the `traceparent` itself, and a warning says so once.

Attributes, after OpenTelemetry's messaging conventions: messaging.system "geoq",
messaging.operation.type ("send" or "process"), messaging.destination.name (the queue),
messaging.message.id (the job id); and geoq.job.type, geoq.job.attempt, geoq.job.outcome
(succeeded | retry | dead | interrupted), geoq.job.dead_reason, geoq.job.retry_delay.

Which provider, as with other instrumentation libraries: `tracer_provider=` when one is given
(Python); else the application's global provider, once it has set one (in a producer, a web
app's own); else, with `exporter` ("module:callable" building a SpanExporter), an SDK
TracerProvider of Tracing's own with the resource service.name = `service_name` (default "geoq")
and a BatchSpanProcessor, flushed when the worker stops. Only in the worker (worker_started)
does that provider become the global one, if the program has none, so the handlers' spans are
exported too; a producer's global slot is left to its application. With neither, spans go to
the global provider's proxy: nothing is traced until the application sets one. `service_name`
without `exporter` names nothing and is a configuration error.

Only this module imports OpenTelemetry: `import geoq` does not.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from geoq import plugins, records
from geoq.errors import ConfigError
from geoq.job import Job
from geoq.middleware import Middleware, WorkerInfo
from geoq.outcome import DEAD, RETRY, SUCCEEDED, Outcome

log = logging.getLogger(__name__)

SYSTEM = "geoq"
FLUSH_SECONDS = 5.0   # the most worker_stopping waits for the last spans to be exported
WHERE = "geoq.contrib.otel.Tracing"


class Tracing(Middleware):
    """Spans for enqueues and runs, the trace context carried in job.meta (see the module's docstring)."""

    def __init__(self, service_name: str | None = None, exporter: str | None = None, *,
                 tracer_provider: trace.TracerProvider | None = None) -> None:
        _check_options(service_name, exporter, tracer_provider)
        self._own = _provider(service_name or SYSTEM, exporter) if exporter is not None else None
        self._given = trace.get_tracer(SYSTEM, tracer_provider=tracer_provider) if tracer_provider else None
        self._fallback = trace.get_tracer(SYSTEM, tracer_provider=self._own)  # the global proxy without one
        self._runs: dict[tuple[str, int], tuple[trace.Span, Any]] = {}  # (job id, attempt) -> span, token
        self._dropped_logged = False

    @property
    def tracer(self) -> trace.Tracer:
        """The given provider's tracer; else the global provider's once one is set; else the fallback."""
        if self._given is None and _global_is_set():
            self._given = trace.get_tracer(SYSTEM)
        return self._given or self._fallback

    # -- producer ----------------------------------------------------------------------------

    def before_enqueue(self, job: Job) -> Job:
        span = self.tracer.start_span(f"enqueue {job.type}", kind=SpanKind.PRODUCER,
                                      attributes=_attributes(job, "send"))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        span.end()  # the enqueue's own round trip follows; this span marks where the trace forks
        return replace(job, meta=self._fit(job, carrier)) if carrier else job

    def _fit(self, job: Job, carrier: dict[str, str]) -> Mapping[str, Any]:
        meta, dropped = fit(job.meta, carrier)
        if dropped and not self._dropped_logged:
            self._dropped_logged = True
            log.warning("trace context %s left out of the meta of job %s (%s, queue %s): it would pass the "
                        "meta's %d bytes (logged once)", ",".join(dropped), job.id, job.type, job.queue,
                        records.META_LIMIT)
        return meta

    # -- worker ------------------------------------------------------------------------------

    def worker_started(self, worker: WorkerInfo) -> None:
        """The worker's process is geoq's: the provider built for `exporter` becomes the global one
        if the program has none, so the spans the handlers make are exported with the runs'."""
        if self._own is not None and self._given is None and not _global_is_set():
            trace.set_tracer_provider(self._own)

    def before_run(self, job: Job) -> None:
        parent = _parent(job)
        span = self._run_span(job, parent)
        self._runs[(job.id, job.attempt)] = (span, context.attach(trace.set_span_in_context(span, parent)))

    def after_run(self, job: Job, outcome: Outcome) -> None:
        """Ends the run's span; a job without one (buried as fetched, or decided before this
        middleware's before_run) gets one of no length, so its trace shows how it ended."""
        span, token = self._runs.pop((job.id, job.attempt), None) or (self._run_span(job, _parent(job)), None)
        try:
            _finish(span, outcome)
        finally:
            if token is not None:
                context.detach(token)
            span.end()

    def _run_span(self, job: Job, parent: context.Context) -> trace.Span:
        return self.tracer.start_span(f"run {job.type}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=_attributes(job, "process"))

    def worker_stopping(self, worker: WorkerInfo) -> None:
        if self._own is not None and not self._own.force_flush(int(FLUSH_SECONDS * 1000)):
            log.warning("some spans were not exported within %.0fs of the worker's stop", FLUSH_SECONDS)


def fit(meta: Mapping[str, Any], carrier: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """`meta` with the carrier's fields that fit within records.META_LIMIT, smallest first (the
    `traceparent` before a big `baggage`), and the names of those left out."""
    merged = {**meta, **carrier}
    try:
        if records.meta_size(merged) <= records.META_LIMIT:
            return merged, []
        fitted = {k: v for k, v in meta.items() if k not in carrier}  # no stale context of another trace
        for key, value in sorted(carrier.items(), key=lambda kv: len(kv[0]) + len(kv[1])):
            if records.meta_size({**fitted, key: value}) <= records.META_LIMIT:
                fitted[key] = value
    except (TypeError, ValueError):
        return merged, []  # the caller's own meta is not JSON: records.encode names that error
    return fitted, [k for k in carrier if k not in fitted]


def _check_options(service_name: str | None, exporter: str | None,
                   tracer_provider: trace.TracerProvider | None) -> None:
    if tracer_provider is not None and exporter is not None:
        raise ConfigError(f"{WHERE}: give tracer_provider or exporter, not both")
    if service_name is not None and exporter is None:  # DESIGN's own example: a warning, not a refusal
        log.warning("%s: service_name %r names the provider Tracing builds for an exporter, and no exporter "
                    "is given: spans go to the global provider, whose service name is its own "
                    "(OTEL_SERVICE_NAME)", WHERE, service_name)


def _provider(service_name: str, exporter: str) -> TracerProvider:
    """An SDK provider exporting in batches through `exporter`'s SpanExporter."""
    found = plugins.load(exporter, f"{WHERE}: exporter")
    made = found() if callable(found) else found   # a SpanExporter class or factory, or an instance
    if not isinstance(made, SpanExporter):
        raise ConfigError(f"{WHERE}: exporter {exporter} gave {type(made).__name__}, "
                          "not an opentelemetry SpanExporter")
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(made))
    return provider


def _global_is_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _parent(job: Job) -> context.Context:
    """The context the producer put in the job's meta (an empty one without: the run starts a trace)."""
    return propagate.extract(_text_items(job.meta))


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
    elif outcome.error:  # buried as fetched: no exception was raised, only the reason's words
        span.add_event("exception", {"exception.message": outcome.error})
    span.set_status(Status(StatusCode.ERROR, outcome.error or outcome.state))


def _text_items(meta: Any) -> dict[str, str]:
    """The string entries of a job's meta: the carrier the W3C propagator reads."""
    return {k: v for k, v in meta.items() if isinstance(v, str)}
