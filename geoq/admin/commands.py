"""`geoq stats | workers | enqueue | purge`: see the queues and act on them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from geoq import job as jobs
from geoq.admin import history_stats, render
from geoq.admin.errors import NotFound, UsageError
from geoq.admin.session import Session
from geoq.broker.admin import WorkerEntry
from geoq.broker.inspect import Depth
from geoq.broker.limits import LimitBroker, LimitState
from geoq.config.schema import LimitsConfig
from geoq.errors import RedisUnavailable
from geoq.exits import EXIT_OK

_CLEAR = "\x1b[H\x1b[2J"


# -- stats -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    depths: Sequence[Depth]
    workers: Sequence[WorkerEntry]   # the live ones only
    limits: Sequence[LimitState] = ()   # each route of the config that has limits


def collect_stats(s: Session) -> Stats:
    scan = s.broker.scan_queues()
    depths = s.broker.depths(s.queues(scan), scan)
    limited = [name for name, route in s.config.routes.items() if route.limits.any]
    states = LimitBroker(s.broker.client, s.broker.scripts).states(limited) if limited else []
    return Stats(depths, [w for w in s.broker.workers() if w.alive], states)


def stats_json(st: Stats, s: Session | None = None) -> dict[str, Any]:
    queues = {d.queue: {"ready": d.ready, "scheduled": d.scheduled, "processing": d.processing, "dead": d.dead,
                        "dead_trimmed": d.dead_trimmed, "paused": d.paused} for d in st.depths}
    limits = {state.route: limit_json(state, s.config.routes[state.route].limits if s else None)
              for state in st.limits}
    return {"queues": queues, "workers": [worker_json(w) for w in st.workers], "limits": limits}


def limit_json(state: LimitState, limits: LimitsConfig | None) -> dict[str, Any]:
    """One limited route in `stats --json`: its state now, and the limits it runs under."""
    out: dict[str, Any] = {"rate": state.rate, "slots_in_use": state.in_use, "keys_paused": state.paused}
    if limits is not None:
        k = limits.per_key
        out["limit"] = {"rate": limits.rate, "concurrency": limits.concurrency, "adaptive": limits.adaptive,
                        "per_key": None if k.key is None else {"key": k.key.text, "rate": k.rate,
                                                                 "concurrency": k.concurrency}}
    return out


def limits_text(st: Stats, s: Session) -> str:
    rows = []
    for state in st.limits:
        c = s.config.routes[state.route].limits
        key = c.per_key
        rows.append((state.route, state.rate, _rate(c.rate), state.in_use, c.concurrency or "-",
                     f"{key.key.text} {_rate(key.rate)} {key.concurrency or '-'}" if key.key else "-",
                     state.paused if c.adaptive else "-"))
    return render.table(("LIMITED ROUTE", "RATE", "RATE LIMIT", "SLOTS IN USE", "CONCURRENCY",
                         "PER KEY (RATE, CONCURRENCY)", "PAUSED"), rows)


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:g}/s"


def stats_text(st: Stats, s: Session) -> str:
    lines = [render.table(("QUEUE", "READY", "SCHEDULED", "PROCESSING", "DEAD"),
                          [(d.queue, d.ready, d.scheduled, d.processing, d.dead) for d in st.depths]), ""]
    if st.workers:
        lines.append(render.table(("WORKER", "CONCURRENCY", "IN FLIGHT", "HEARTBEAT"),
                                  [(w.id, w.info.get("concurrency"), w.info.get("in_flight"),
                                    render.age(w.heartbeat_age) + " ago") for w in st.workers]))
    lines.append(f"{len(st.workers)} worker{'' if len(st.workers) == 1 else 's'} alive")
    if st.limits:
        lines += ["", limits_text(st, s)]
    paused = [d.queue for d in st.depths if d.paused]
    if paused:
        lines.append("paused (no worker takes their jobs): " + ", ".join(paused))
    dead = s.config.dead
    for d in st.depths:
        if d.dead_trimmed:
            lines.append(f"dead list of {d.queue} is full: {d.dead_trimmed} oldest dead jobs were dropped "
                         f"(dead.max_jobs {dead.max_jobs}, dead.max_age {render.age(dead.max_age)})")
    return "\n".join(lines)


def stats(s: Session, args: argparse.Namespace) -> int:
    history_stats.check_options(args)
    if args.history:
        return history_stats.show(s, args)
    if args.watch is None:
        st = s.read(lambda: collect_stats(s))
        print(render.to_json(stats_json(st, s)) if args.json else stats_text(st, s))
        return EXIT_OK
    return _watch(s, args.json, args.watch)


def _watch(s: Session, as_json: bool, every: float) -> int:
    """Refresh until Ctrl-C. Redis going away after the first refresh is reported and waited out."""
    first, clear = True, sys.stdout.isatty() and not as_json
    try:
        while True:
            try:
                st = s.read(lambda: collect_stats(s))
            except RedisUnavailable as e:
                if first:
                    raise
                print(f"geoq: {render.one_line(str(e))}", file=sys.stderr, flush=True)
            else:
                if as_json:
                    print(render.to_json(stats_json(st, s)), flush=True)  # one object per line
                else:
                    head = f"every {render.age(every)}, {render.when(time.time())} (Ctrl-C to stop)"
                    print((_CLEAR if clear else "\n") + head + "\n\n" + stats_text(st, s), flush=True)
            first = False
            time.sleep(every)
    except KeyboardInterrupt:
        return EXIT_OK


# -- workers -----------------------------------------------------------------------------------


def worker_json(w: WorkerEntry) -> dict[str, Any]:
    info = w.info
    age = None if w.heartbeat_age is None else round(w.heartbeat_age, 3)
    return {"id": w.id, "host": info.get("host"), "pid": info.get("pid"), "queues": info.get("queues", []),
            "concurrency": info.get("concurrency"), "in_flight": info.get("in_flight"),
            "started_at": info.get("started_at"), "beat_at": info.get("beat_at"), "heartbeat_age": age,
            "alive": w.alive}


def workers(s: Session, args: argparse.Namespace) -> int:
    entries = s.read(s.broker.workers)
    if args.json:
        print(render.to_json([worker_json(w) for w in entries]))
    elif not entries:
        print("no workers registered")
    else:
        print(render.table(("WORKER", "HOST", "PID", "QUEUES", "CONCURRENCY", "IN FLIGHT", "STARTED", "HEARTBEAT",
                            "STATUS"), [_worker_row(w) for w in entries]))
    return EXIT_OK


def _worker_row(w: WorkerEntry) -> Sequence[Any]:
    info = w.info
    queues = info.get("queues")
    return (w.id, info.get("host"), info.get("pid"), ",".join(queues) if isinstance(queues, list) else None,
            info.get("concurrency"), info.get("in_flight"), render.when(info.get("started_at")),
            render.age(w.heartbeat_age) + " ago", "alive" if w.alive else "silent")


# -- enqueue -----------------------------------------------------------------------------------


def read_payload(text: str | None) -> Any:
    """--payload JSON, or @FILE holding JSON (@- reads standard input); no --payload is null."""
    if text is None:
        return None
    source = "--payload"
    if text.startswith("@"):
        source, text = text, _read_file(text[1:])
    try:
        return json.loads(text)
    except ValueError as e:
        raise UsageError(f"{source}: not valid JSON: {e}") from None


def _read_file(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"--payload @{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--payload @{path}: not UTF-8 text") from None


def enqueue(s: Session, args: argparse.Namespace) -> int:
    payload = read_payload(args.payload)
    job = s.client.enqueue(args.type, payload, queue=args.queue, delay=args.delay, priority=args.priority,
                           max_retries=args.max_retries, timeout=args.timeout, id=args.id, expires=args.expires,
                           unique_for=args.unique_for)
    print(render.to_json({"id": job.id, "type": job.type, "queue": job.queue}) if args.json else job.id)
    return EXIT_OK


# -- purge -------------------------------------------------------------------------------------


def purge(s: Session, args: argparse.Namespace) -> int:
    queue = jobs.check_queue(args.queue)
    if not args.yes:
        raise UsageError(f"purge deletes every waiting job of queue {queue}; add --yes to do it")
    if queue not in s.known_queues() and not s.broker.queue_exists(queue):
        raise NotFound(f"no queue named {queue}")
    ready, scheduled = s.broker.purge(queue)
    if args.json:
        print(render.to_json({"queue": queue, "ready": ready, "scheduled": scheduled}))
    else:
        print(f"purged {ready + scheduled} waiting jobs of {queue} ({ready} ready, {scheduled} scheduled)")
    return EXIT_OK
