"""What the job history costs: Redis memory per day, and the time of one flush.

    .venv/bin/python bench/history.py [--days 1]

Starts its own redis-server and writes `--days` days of history as busy workers would (every
minute of the day has runs of every type, waits spread over several buckets), one flush per
queue and minute (a worker flushing every 5 s adds into the same keys: the memory is the same),
then sums MEMORY USAGE over every history key. The no-op drain with and without the history is
bench/compare.py's (see bench/README.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from common import RedisServer, print_table  # isort: skip

import redis  # noqa: E402

from geoq import history  # noqa: E402
from geoq.broker.connection import connect  # noqa: E402
from geoq.broker.history import HistoryBroker  # noqa: E402
from geoq.config import default_config  # noqa: E402

KEEP = 7 * 86400.0
SHAPES = ((1, 1), (3, 10), (10, 200))   # (queues, types)
T0 = 1_800_000_000                      # a whole day


def busy_minute(types: int, rng: random.Random) -> history.MinuteTally:
    """One queue's minute: a few runs of every type, and waits over a handful of buckets."""
    m = history.MinuteTally()
    for t in range(types):
        for label in ("succeeded", "succeeded", "retried", "dead"):
            m.count(f"app.job.{t}", history.INDEX[label])
    for _ in range(50):
        m.waits[history.bucket_of(rng.lognormvariate(-3, 1.5))] += 1
    return m


def write_days(hb: HistoryBroker, queues: int, types: int, days: int) -> None:
    rng = random.Random(1)
    for minute in range(T0 // 60, T0 // 60 + days * 1440):
        taken = {(f"q{q}", minute): busy_minute(types, rng) for q in range(queues)}
        hb.add(history.hour_blocks(taken), KEEP)


def memory(client: "redis.Redis", pattern: str = "geoq:*:history:*") -> int:
    """Bytes of every history key, as MEMORY USAGE counts them (whole values: SAMPLES 0)."""
    return sum(client.memory_usage(k, samples=0) or 0 for k in client.scan_iter(match=pattern, count=1000))


def flush_cost(hb: HistoryBroker, queues: int, types: int, rounds: int = 200) -> float:
    """Median wall time of one flush (every queue's current minute, one round trip), microseconds."""
    rng, times = random.Random(2), []
    for i in range(rounds):
        taken = {(f"q{q}", T0 // 60 + i % 60): busy_minute(types, rng) for q in range(queues)}
        blocks = history.hour_blocks(taken)
        started = time.perf_counter()
        hb.add(blocks, KEEP)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args()
    rows = []
    with RedisServer() as server:
        client = server.client()
        hb = HistoryBroker(connect(default_config(server.url_for(0)).redis))
        for n, (queues, types) in enumerate(SHAPES, start=1):
            client.flushall()
            write_days(hb, queues, types, args.days)
            per_day = memory(client) / args.days
            client.flushall()
            rows.append([str(n), f"{queues} queues x {types} types: Redis memory per day", f"{per_day:,.0f}", "B"])
            rows.append([str(n), f"{queues} queues x {types} types: one flush", f"{flush_cost(hb, queues, types):,.0f}",
                         "us"])
    print_table(["#", "figure", "value", "unit"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
