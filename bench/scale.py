"""No-op drain with `--processes 2` against `--processes 1`, one Redis, this machine.

    .venv/bin/python bench/scale.py [--jobs 100000] [--rounds 2]

Prints one table: jobs/s for each process count, timed from the moment the
ready list first shrinks until every job is settled, and the scaling factor.
Redis and the workers share the machine's cores, so on 2 cores the factor
says how much a second process adds there, not what a bigger machine gives.
"""

from __future__ import annotations

import argparse
import time

import geoq
from common import RedisServer, WorkerProcess, print_table, wait_until

ROUTES = {"bench.noop": {"handler": "geoq.handlers.builtin:noop"}}


def drain(server: RedisServer, jobs: int, processes: int) -> float:
    r = server.client(0)
    r.flushdb()
    client = geoq.Client(server.url_for(0))
    for start in range(0, jobs, 1000):
        client.enqueue_many([("bench.noop", {"n": i}) for i in range(start, min(jobs, start + 1000))])
    with WorkerProcess(server.url_for(0), ROUTES, 100, args=["--processes", str(processes)]) as w:
        wait_until(lambda: r.llen("geoq:{default}:ready") < jobs, 60, "no job was taken")
        started = time.monotonic()
        wait_until(lambda: r.llen("geoq:{default}:ready") == 0 and r.hlen("geoq:{default}:state") == 0,
                   300, "the queue did not drain")
        elapsed = time.monotonic() - started
        w.check_alive()
    client.close()
    r.close()
    return jobs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    with RedisServer() as server:
        rates = {n: [drain(server, args.jobs, n) for _ in range(args.rounds)] for n in (1, 2)}
    best = {n: max(r) for n, r in rates.items()}
    rows = [[f"--processes {n}", " / ".join(f"{x:,.0f}" for x in r), f"{best[n]:,.0f}"] for n, r in rates.items()]
    rows.append(["scaling factor (best 2 / best 1)", "", f"x{best[2] / best[1]:.2f}"])
    print_table(["no-op drain, c=100 per process", f"jobs/s per round ({args.jobs:,} jobs)", "best"], rows)


if __name__ == "__main__":
    main()
