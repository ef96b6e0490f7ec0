"""The lock-free per-job families expose exactly what prometheus_client's Counter and Histogram would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from geoq.metrics.tallies import CounterFamily, HistogramFamily

BUCKETS = (0.005, 0.25, 1, 600)
VALUES = (0.0, 0.001, 0.005, 0.0051, 0.25, 0.3, 1.0, 600.0, 700.0)  # bounds themselves, between, past all


def exposition(registry: CollectorRegistry) -> list[str]:
    """The text format, with the _created timestamps (the moment each series was made) left out."""
    lines = generate_latest(registry).decode().splitlines()
    return [line.rsplit(" ", 1)[0] if "_created" in line else line for line in lines]


def test_counters_and_histograms_labelled_or_not_expose_the_same_text():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = CounterFamily("t_jobs", "Jobs", ["type", "outcome"])
    labelled = HistogramFamily("t_seconds", "Seconds", ["type"], buckets=BUCKETS)
    plain = HistogramFamily("t_batch", "Batch", buckets=(1, 10))
    for family in (counter, labelled, plain):
        ours.register(family)
    counter_ref = Counter("t_jobs", "Jobs", ["type", "outcome"], registry=theirs)
    labelled_ref = Histogram("t_seconds", "Seconds", ["type"], buckets=BUCKETS, registry=theirs)
    plain_ref = Histogram("t_batch", "Batch", buckets=(1, 10), registry=theirs)

    for i, value in enumerate(VALUES):
        kind = "a" if i % 2 else "b"
        counter.labels(kind, "ok").inc()
        counter_ref.labels(kind, "ok").inc()
        labelled.labels(kind).observe(value)
        labelled_ref.labels(kind).observe(value)
        plain.observe(value * 20)
        plain_ref.observe(value * 20)
    counter.labels("a", "dead").inc(2.5)
    counter_ref.labels("a", "dead").inc(2.5)
    labelled.labels("never")
    labelled_ref.labels("never")

    assert exposition(ours) == exposition(theirs)
    assert 'le="+Inf"' in "\n".join(exposition(ours))
