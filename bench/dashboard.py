"""How long each dashboard page takes with a big dead set: `--dead` dead jobs (100,000 by default)
buried the worker's way (a processing list, then dead.lua through Broker.settle, which keeps
the dead-group index), in a few hundred error groups over three queues, plus scheduled jobs, a
live job, and a week of history for the three queues written as workers write it (history.Tally,
then HistoryBroker.add each hour); then `bin/geoq dashboard` is
started and every page is fetched over HTTP `--runs` times. Prints one table (median and
worst per page) and names the slowest page.

    .venv/bin/python bench/dashboard.py              # 100,000 dead jobs
    .venv/bin/python bench/dashboard.py --dead 10000 --runs 3
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import RedisServer, print_table  # noqa: I001 - first: it puts the tree to measure on sys.path

import geoq  # noqa: E402
from geoq import history  # noqa: E402
from geoq.broker.clock import redis_time  # noqa: E402
from geoq.broker.history import HistoryBroker  # noqa: E402
from tests.support.dashboard import DashboardProcess, bury  # noqa: E402
from tests.support.worker_process import write_config  # noqa: E402

QUEUES = ("mail", "http", "bulk")
ERRORS = ("SMTPServerDisconnected: Connection unexpectedly closed by 10.0.{a}.{b}",
          "HTTPError: {a}0{b} from https://api{a}.example.com/v1/items/{b}",
          "TimeoutError: no answer within {a}.{b} s",
          "KeyError: 'field_{a}'",
          "ValueError: invalid literal for int() with base 10: 'x{b}'")
CHUNK = 2000
WEEK = 7 * 86400
LABELS = ("succeeded", "succeeded", "succeeded", "retried", "dead")


def fill(server: RedisServer, dead: int, scheduled: int) -> list[str]:
    """Bury `dead` jobs and schedule `scheduled` more; the ids of some dead jobs."""
    client, rng, ids = server.client(0), random.Random(7), []
    for start in range(0, dead, CHUNK):
        n = min(CHUNK, dead - start)
        queue = QUEUES[(start // CHUNK) % len(QUEUES)]
        template = ERRORS[(start // CHUNK) % len(ERRORS)]
        error = template.format(a=rng.randrange(10), b=rng.randrange(100))
        job_type = f"{queue}.job{(start // CHUNK) % 4}"
        payloads = [{"n": start + i, "to": f"user{i}@example.com", "password": "hunter2"} for i in range(n)]
        ids.append(bury(client, queue, payloads, job_type=job_type, error=error)[0].id)
    with geoq.Client(server.url_for(0)) as producer:
        for start in range(0, scheduled, CHUNK):
            producer.enqueue_many([("mail.job0", {"n": i}, {"queue": "mail", "delay": 3600 + i})
                                   for i in range(start, min(scheduled, start + CHUNK))])
    client.close()
    return ids


def fill_history(server: RedisServer) -> None:
    """A week of history up to now: every minute a few runs of each queue's types, through a
    worker's Tally, flushed an hour at a time (a worker flushes more often into the same keys)."""
    client, rng = server.client(0), random.Random(3)
    hb, tally, now = HistoryBroker(client), history.Tally(), redis_time(client)
    for hour_start in range(int(now - WEEK) // 3600 * 3600, int(now) + 1, 3600):
        for at in range(hour_start, min(hour_start + 3600, int(now) + 1), 60):
            for queue in QUEUES:
                for n in range(rng.randrange(4, 12)):
                    tally.ended(queue, f"{queue}.job{n % 4}", rng.choice(LABELS), at + 0.5, rng.lognormvariate(-3, 1.5))
        hb.add(history.hour_blocks(tally.take()), WEEK)
    client.close()


def pages(dead_ids: list[str], live_id: str, url: str) -> dict[str, str]:
    group = re.search(r'href="(/dead/group\?[^"]+)"', _get(url + "/dead?queue=mail")[1])
    return {"overview 1h": "/", "overview 24h": "/?window=24h", "overview 7d": "/?window=7d", "queues": "/queues",
            "workers": "/workers", "scheduled": "/scheduled?queue=mail", "scheduled p40": "/scheduled?queue=mail&page=40",
            "dead groups": "/dead", "dead, one queue": "/dead?queue=mail", "dead, text filter": "/dead?text=timeout",
            "one group": group.group(1).replace("&amp;", "&") if group else "/dead",
            "one dead job": f"/job?id={dead_ids[len(dead_ids) // 2]}", "one live job": f"/job?id={live_id}"}


def _get(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as reply:
        body = reply.read().decode()
        assert reply.status == 200, (url, reply.status)
    return time.perf_counter() - started, body


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dead", type=int, default=100_000, help="dead jobs to bury (default 100,000)")
    p.add_argument("--scheduled", type=int, default=10_000, help="scheduled jobs (default 10,000)")
    p.add_argument("--runs", type=int, default=5, help="fetches of each page (default 5)")
    args = p.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ids = fill(server, args.dead, args.scheduled)
        fill_history(server)
        with geoq.Client(server.url_for(0)) as producer:
            live_id = producer.enqueue("mail.job1", {"to": "someone@example.com"}, queue="mail").id
        print(f"buried {args.dead:,} dead jobs, scheduled {args.scheduled:,}, wrote a week of history "
              f"in {time.perf_counter() - started:.1f} s")
        config = write_config(Path(tmp) / "bench.yaml", server.url_for(0), {}, worker={"queues": list(QUEUES)})
        with DashboardProcess(config) as dash:
            rows = []
            for name, path in pages(ids, live_id, dash.url).items():
                times = [_get(dash.url + path)[0] for _ in range(args.runs)]
                rows.append((name, path, statistics.median(times), max(times)))
            dash.stop()
    print_table(("page", "path", "median ms", "worst ms"),
                [(n, p[:50], f"{m * 1000:.0f}", f"{w * 1000:.0f}") for n, p, m, w in rows])
    slowest = max(rows, key=lambda r: r[2])
    print(f"slowest: {slowest[0]} ({slowest[1]}), median {slowest[2] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
