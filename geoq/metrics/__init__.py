"""Prometheus metrics, health endpoints and hub-stall detection for the worker.

    metrics = Metrics.from_config(config)            # own CollectorRegistry; hooks() for the Worker
    start_metrics(config, broker, metrics)           # greenlet serving /metrics, /healthz, /readyz
    install_hubwatch(metrics, threshold=0.1)         # counts and logs greenlets that block the hub

This package imports gevent: only the (monkeypatched) worker imports it.
"""

from geoq.metrics.hubwatch import HubWatch, install_hubwatch
from geoq.metrics.metrics import UNKNOWN, Metrics
from geoq.metrics.server import start_metrics

__all__ = ["UNKNOWN", "HubWatch", "Metrics", "install_hubwatch", "start_metrics"]
