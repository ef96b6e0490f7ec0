"""The per-job metric families, kept as plain numbers and updated without a lock.

prometheus_client guards every value with a lock; once gevent has patched threading that
is a gevent lock, and a count, a duration and a wait for every job took about a tenth of a
busy worker's CPU. Only the hub's thread touches these families: greenlets never
interleave inside an update, and the scrape, a greenlet of the same hub, reads them
between updates. The exposition is what prometheus_client's Counter and Histogram give.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class Count:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Buckets:
    """One histogram series: counts per bucket (the last one past every bound), and the sum."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' "le"
        self.sum += value


class _Family(Collector):
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)

    def describe(self) -> list[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]


class CounterFamily(_Family):
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._series: dict[tuple[str, ...], Count] = {}

    def labels(self, *values: str) -> Count:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = Count()
        return series

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, series in list(self._series.items()):
            labels = dict(zip(self.labelnames, values))
            metric.add_sample(self.name + "_total", labels, series.value)
            metric.add_sample(self.name + "_created", labels, series.created)
        yield metric


class HistogramFamily(_Family):
    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (), *,
                 buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [str(floatToGoString(b)) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._series: dict[tuple[str, ...], Buckets] = {}
        if not self.labelnames:
            self.labels()  # an unlabelled histogram is exposed, at zero, from the start

    def labels(self, *values: str) -> Buckets:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = Buckets(self.bounds)
        return series

    def observe(self, value: float) -> None:
        """For an unlabelled histogram."""
        self.labels().observe(value)

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, series in list(self._series.items()):
            labels = dict(zip(self.labelnames, values))
            total = 0
            for le, count in zip(self._les, list(series.counts)):
                total += count
                metric.add_sample(self.name + "_bucket", {**labels, "le": le}, float(total))
            metric.add_sample(self.name + "_count", labels, float(total))
            metric.add_sample(self.name + "_sum", labels, series.sum)
            metric.add_sample(self.name + "_created", labels, series.created)
        yield metric
