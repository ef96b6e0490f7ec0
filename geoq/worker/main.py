"""`geoq-worker CONFIG [--concurrency N] [--queues a,b] [--processes N]`: parse, load, run, exit clearly.

Called by bin/geoq-worker after gevent.monkey.patch_all(); never import this
module in a program that has not been patched.

With N > 1 processes this process becomes their parent (geoq.worker.supervisor)
and runs no worker itself; each child is bin/geoq-worker again, with the same
arguments plus the hidden `--child INDEX --parent PID`. Child INDEX serves its
metrics on metrics.listen's port + INDEX.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import Callable, NoReturn, Sequence

import gevent
from gevent.event import Event

from geoq import logs, names, plugins
from geoq.config import Config, connection_split, least_connections, load_config
from geoq.errors import ConfigError, RedisAuthError
from geoq.exits import EXIT_CONFIG, EXIT_LEFT, EXIT_OK, EXIT_UNCLEAN  # what each means: geoq.exits
from geoq.middleware import Chain, Middleware
from geoq.routing import Router, build_router

log = logging.getLogger(__name__)

PARENT_CHECK = 1.0  # seconds between a child's checks that its parent is still there


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2, never its usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = _Parser(prog="geoq-worker", description="Run a geoq worker.",
                epilog="exit status: 0 stopped, every job finished or handed back; 2 bad config or "
                       "credentials; 3 stopped, but Redis did not answer in time, so jobs were left in "
                       "the worker's processing lists for another worker's reaper (nothing is lost); "
                       "with --processes N, 1 if a worker process did not stop cleanly")
    p.add_argument("config", help="path to the YAML config file")
    p.add_argument("--concurrency", type=int, help="greenlet pool size (overrides worker.concurrency)")
    p.add_argument("--queues", help="comma-separated queues in priority order (overrides worker.queues)")
    p.add_argument("--processes", type=int, help="worker processes to run (overrides worker.processes)")
    # Given by the parent of --processes N to each child it starts; not for people.
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    worker = config.worker
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise ConfigError(f"--concurrency: expected a positive integer, got {args.concurrency}")
        worker = dataclasses.replace(worker, concurrency=args.concurrency)
    if args.queues:
        queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
        if not queues:
            raise ConfigError("--queues: expected comma-separated queue names")
        for name in queues:
            if not names.is_queue_name(name):
                raise ConfigError(f"--queues: expected queue names of {names.QUEUE_NAME_RULE}, got {name!r}")
        if len(set(queues)) != len(queues):
            raise ConfigError(f"--queues: expected distinct queue names, got {args.queues!r}")
        worker = dataclasses.replace(worker, queues=queues, weights=None)
    if args.processes is not None:
        if args.processes < 1:
            raise ConfigError(f"--processes: expected a positive integer, got {args.processes}")
        worker = dataclasses.replace(worker, processes=args.processes)
    return dataclasses.replace(config, worker=worker)


def check_metrics_ports(config: Config) -> None:
    """Each of N processes serves metrics on port + its index: all of them must be ports."""
    m, n = config.metrics, config.worker.processes
    if m.enabled and m.port and m.port + n - 1 > 65535:
        raise ConfigError(f"{config.path}: metrics.listen: {n} processes serve on ports {m.port} to "
                          f"{m.port + n - 1}, past 65535; choose a lower port")


def check_connections(config: Config) -> None:
    """redis.max_connections is the whole process's: it must cover the fixed pools and a main pool."""
    least = least_connections(config)
    if config.redis.max_connections < least:
        split = connection_split(config)
        raise ConfigError(f"{config.path}: redis.max_connections: expected at least {least} for this worker "
                          f"({split.fetch} for fetches on {len(config.worker.queues)} queues, {split.heartbeat} "
                          f"heartbeat, {split.metrics} metrics, 4 for outcomes, scheduler and reaper), "
                          f"got {config.redis.max_connections}")


def for_child(config: Config, index: int) -> Config:
    """Child `index` serves metrics on metrics.listen's port + index; port 0 (a free port) stays 0."""
    m = config.metrics
    if not m.enabled or m.port == 0 or index == 0:
        return config
    port = m.port + index
    listen = f"{m.listen.strip().rpartition(':')[0]}:{port}"
    return dataclasses.replace(config, metrics=dataclasses.replace(m, listen=listen, port=port))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        config = apply_overrides(load_config(args.config), args)
        check_metrics_ports(config)
        check_connections(config)
        logs.configure(config.logging)
        router = build_router(config)
        middleware = plugins.middleware(config)
    except ConfigError as e:
        print(f"geoq-worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.child is None and config.worker.processes > 1:
        return supervise(config, argv)
    if args.child is not None:
        config = for_child(config, args.child)
    return run_worker(config, router, middleware, parent=args.parent)


def supervise(config: Config, argv: Sequence[str]) -> int:
    """Be the parent of worker.processes children, each this same script run afresh."""
    from geoq.worker.supervisor import Supervisor

    script, parent = os.path.abspath(sys.argv[0]), os.getpid()

    def command(index: int) -> list[str]:
        return [sys.executable, script, *argv, "--child", str(index), "--parent", str(parent)]

    log.info("starting %d worker processes", config.worker.processes)
    return Supervisor(command, config.worker.processes).run()


def run_worker(config: Config, router: Router, middleware: Sequence[Middleware] = (),
               parent: int | None = None) -> int:
    """Run the worker in this process until it is stopped; `parent`: the pid of a --processes parent.

    geoq's metrics, job history and job log lines are the outermost middleware, then the config's,
    in order."""
    from geoq.worker.worker import FAILED, FENCED, Worker  # after the config is known good: nothing connects before
    from geoq.broker.broker import Broker
    from geoq.broker.connection import connect
    from geoq.metrics import Metrics, install_hubwatch, start_metrics
    from geoq.worker.recorder import Recorder

    metrics = Metrics.from_config(config)
    try:  # one endpoint for the process, kept across fenced restarts; its own share of the connections
        start_metrics(config, Broker(connect(config.redis, max_connections=max(1, connection_split(config).metrics),
                                             name="geoq-metrics")), metrics)
    except ConfigError as e:
        print(f"geoq-worker: {e}", file=sys.stderr)
        return EXIT_CONFIG
    install_hubwatch(metrics, threshold=0.1)
    recorder = Recorder(config.history.keep, config.history.flush_every)   # the history, kept across restarts
    events = Chain([metrics, recorder, logs.JobLog(), *middleware])
    skip_spawn_tracking()

    current: list[Worker] = []
    orphaned = Event()

    def stop_for_good() -> None:
        orphaned.set()
        if current:
            current[0].signal_stop()

    if parent is not None:
        gevent.spawn(watch_parent, parent, stop_for_good)
    outcome = None
    while not orphaned.is_set():  # a worker declared dead while stalled starts afresh under a new identity
        worker = Worker(config, router, events, recorder)
        current[:] = [worker]
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, worker.signal_stop)
        try:
            outcome = worker.run()
        except RedisAuthError as e:
            print(f"geoq-worker: {e}", file=sys.stderr)
            return EXIT_CONFIG
        if outcome != FENCED:
            break
    if outcome == FAILED:
        return EXIT_UNCLEAN
    return EXIT_OK if all(w.report.clean for w in current) else EXIT_LEFT


def skip_spawn_tracking() -> None:
    """Spawn job greenlets without recording who spawned them, unless GEVENT_TRACK_GREENLET_TREE asks.

    gevent keeps, for every greenlet, the stack and greenlet that spawned it: about 5 us on each
    job's spawn, for a debugging aid geoq never shows (its stall watch takes its own stack).
    """
    if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
        gevent.config.track_greenlet_tree = False


def watch_parent(parent: int, stop: Callable[[], None]) -> None:
    """A child whose parent died without stopping it (SIGKILL) stops gracefully rather than run unwatched."""
    while os.getppid() == parent:
        gevent.sleep(PARENT_CHECK)
    log.error("the parent process %d is gone: stopping", parent)
    stop()
