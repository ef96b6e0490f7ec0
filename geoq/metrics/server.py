"""The worker's HTTP endpoint, served by a greenlet on metrics.listen.

    /metrics   Prometheus text, or OpenMetrics when the Accept header asks for it
    /healthz   200 whenever it answers: a greenlet served it, so the hub is running
    /readyz    200 while Redis answers PING within READY_TIMEOUT, else 503 (and the failure
               counts as geoq_redis_errors_total{op="ping"})

Only a monkeypatched process may run it (the worker): it answers from the hub.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer
from prometheus_client import make_wsgi_app

from geoq.broker.broker import Broker
from geoq.config import Config
from geoq.errors import BrokerError, ConfigError
from geoq.metrics.metrics import Metrics

log = logging.getLogger(__name__)

READY_TIMEOUT = 1.0     # seconds a /readyz PING may take
SCRAPE_TIMEOUT = 1.0    # seconds the queue-depth reads of one scrape may take
MAX_CONNECTIONS = 32    # concurrent HTTP requests; scrapers and probes are few

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def start_metrics(config: Config, broker: Broker, metrics: Metrics) -> gevent.Greenlet | None:
    """Serve metrics.listen from a new greenlet; None when the config turns metrics off.

    Depths and readiness are read through `broker`. A port that cannot be bound is
    a ConfigError (the worker exits 2) rather than a worker nobody can watch.
    """
    if not config.metrics.enabled:
        return None
    metrics.watch_depths(broker, timeout=SCRAPE_TIMEOUT)
    address = (config.metrics.host, config.metrics.port)
    server = WSGIServer(address, make_app(metrics, broker), log=None, error_log=log,
                        spawn=Pool(MAX_CONNECTIONS))
    try:
        server.start()  # binds now, so a taken port is reported before the worker starts
    except OSError as e:
        raise ConfigError(f"{config.path}: metrics.listen: cannot listen on "
                          f"{config.metrics.listen}: {e.strerror or e}") from None
    log.info("metrics on http://%s:%d/metrics", address[0], server.server_port)
    return gevent.spawn(server.serve_forever)


def make_app(metrics: Metrics, broker: Broker, *, ready_timeout: float = READY_TIMEOUT) -> WSGIApp:
    """The WSGI app behind the three paths."""
    scrape: WSGIApp = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", "GET or HEAD\n", [("Allow", "GET, HEAD")])
        if path == "/metrics":
            return scrape(environ, start_response)
        if path == "/healthz":
            return _reply(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            why = redis_unready(broker, metrics, ready_timeout)
            if why is None:
                return _reply(start_response, "200 OK", "ok\n")
            return _reply(start_response, "503 Service Unavailable", f"redis: {why}\n")
        return _reply(start_response, "404 Not Found", "try /metrics, /healthz or /readyz\n")

    return app


def redis_unready(broker: Broker, metrics: Metrics, timeout: float) -> str | None:
    """None when Redis answered PING within `timeout`; else why not (and the error is counted)."""
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        broker.ping()
        return None
    except gevent.Timeout as t:
        if t is not timer:
            raise
        why = f"no reply within {timeout:g}s"
    except BrokerError as e:
        why = str(e)
    finally:
        timer.close()
    metrics.redis_error("ping")
    return why


def _reply(start_response: StartResponse, status: str, body: str,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
                            ("Cache-Control", "no-store"), *(headers or [])])
    return [data]
