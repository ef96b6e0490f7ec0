"""`geoq-worker CONFIG [--concurrency N] [--queues a,b]`: parse, load, run, exit with a clear status.

Called by bin/geoq-worker after gevent.monkey.patch_all(); never import this
module in a program that has not been patched.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Sequence

import gevent

from geoq import logs
from geoq.config import Config, load_config
from geoq.errors import ConfigError, RedisAuthError
from geoq.routing import build_router

EXIT_OK, EXIT_CONFIG = 0, 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="geoq-worker", description="Run a geoq worker.")
    p.add_argument("config", help="path to the YAML config file")
    p.add_argument("--concurrency", type=int, help="greenlet pool size (overrides worker.concurrency)")
    p.add_argument("--queues", help="comma-separated queues in priority order (overrides worker.queues)")
    return p.parse_args(argv)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    worker = config.worker
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ConfigError(f"--concurrency: expected a positive integer, got {args.concurrency}")
        worker = dataclasses.replace(worker, concurrency=args.concurrency)
    if args.queues:
        names = tuple(q.strip() for q in args.queues.split(",") if q.strip())
        if not names:
            raise ConfigError("--queues: expected comma-separated queue names")
        worker = dataclasses.replace(worker, queues=names, weights=None)
    return dataclasses.replace(config, worker=worker)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = apply_overrides(load_config(args.config), args)
        logs.configure(config.logging)
        router = build_router(config)
    except ConfigError as e:
        print(f"geoq-worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    from geoq.worker.worker import FENCED, Worker  # after the config is known good: nothing connects before
    from geoq.broker.broker import Broker
    from geoq.broker.connection import connect
    from geoq.metrics import Metrics, install_hubwatch, start_metrics

    metrics = Metrics.from_config(config)
    try:  # one endpoint for the process, kept across fenced restarts; its own small pool of connections
        start_metrics(config, Broker(connect(config.redis, max_connections=4, name="geoq-metrics")), metrics)
    except ConfigError as e:
        print(f"geoq-worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    install_hubwatch(metrics, threshold=0.1)

    while True:  # a worker declared dead while stalled starts afresh under a new identity
        worker = Worker(config, router, metrics.hooks())
        metrics.track(worker.in_flight)
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, worker.signal_stop)
        try:
            outcome = worker.run()
        except RedisAuthError as e:
            print(f"geoq-worker: {e}", file=sys.stderr)
            return EXIT_CONFIG
        if outcome != FENCED:
            return EXIT_OK
