"""No-op drain with `--processes 2` against `--processes 1`, one Redis, this machine.

    .venv/bin/python bench/scale.py [--jobs 100000] [--rounds 2]

Prints one table: jobs/s for each process count, timed from the moment the
ready list first shrinks until every job is settled, and the scaling factor.
Redis and the workers share the machine's cores, so on 2 cores the factor
says how much a second process adds there, not what a bigger machine gives. The same drains
by bench/limit.py (the floor: geoq's Redis moves and no geoq code), one process and then two,
give the factor this machine allows any worker making those moves.

A second table drains jobs whose body is CPU-bound (bench/handlers.py:crunch, about 200 us of
JSON work each) with one and two processes: there the worker's own core is the limit rather
than Redis, so the factor says whether a second process adds a core's worth of jobs.
"""

from __future__ import annotations

import argparse
import time

import geoq
from common import FloorProcess, RedisServer, WorkerProcess, print_table, wait_until

ROUTES = {"bench.noop": {"handler": "geoq.handlers.builtin:noop"},
          "bench.crunch": {"handler": "handlers:crunch"}}


def drain(server: RedisServer, jobs: int, processes: int, floor: bool = False,
          job_type: str = "bench.noop") -> float:
    """jobs/s of `processes` geoq worker processes (one `--processes N` worker), or of as many floors."""
    r = server.client(0)
    r.flushdb()
    client = geoq.Client(server.url_for(0))
    for start in range(0, jobs, 1000):
        client.enqueue_many([(job_type, {"n": i}) for i in range(start, min(jobs, start + 1000))])
    workers = ([FloorProcess(server.url_for(0), 100) for _ in range(processes)] if floor
               else [WorkerProcess(server.url_for(0), ROUTES, 100, args=["--processes", str(processes)])])
    try:
        wait_until(lambda: r.llen("geoq:{default}:ready") < jobs, 60, "no job was taken")
        started = time.monotonic()
        wait_until(lambda: r.llen("geoq:{default}:ready") == 0 and r.hlen("geoq:{default}:state") == 0,
                   300, "the queue did not drain")
        elapsed = time.monotonic() - started
        for w in workers:
            w.check_alive()
    finally:
        for w in workers:
            w.stop()
    client.close()
    r.close()
    return jobs / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--crunch-jobs", type=int, default=20_000, help="jobs in each CPU-bound drain")
    args = p.parse_args()
    noop = {"--processes": False, "floor processes:": True}
    crunch = {"--processes": False}
    noop_rates: Rates = {(k, n): [] for k in noop for n in (1, 2)}
    crunch_rates: Rates = {(k, n): [] for k in crunch for n in (1, 2)}
    with RedisServer() as server:
        for _ in range(args.rounds):   # alternately, so the machine's drift falls on every figure alike
            for kind, n in noop_rates:
                noop_rates[kind, n].append(drain(server, args.jobs, n, floor=noop[kind]))
            for kind, n in crunch_rates:
                crunch_rates[kind, n].append(drain(server, args.crunch_jobs, n, job_type="bench.crunch"))
    print_table(["no-op drain, c=100 per process", f"jobs/s per round ({args.jobs:,} jobs)", "best"],
                table(noop_rates))
    print()
    print_table(["CPU-bound drain (about 200 us of JSON work a job), c=100 per process",
                 f"jobs/s per round ({args.crunch_jobs:,} jobs)", "best"], table(crunch_rates))


Rates = dict[tuple[str, int], list[float]]


def table(rates: Rates) -> list[list[str]]:
    """One row per (kind, process count): every round's rate and the best; then each kind's factor."""
    best = {key: max(r) for key, r in rates.items()}
    rows = [[f"{kind} {n}", " / ".join(f"{x:,.0f}" for x in r), f"{best[kind, n]:,.0f}"]
            for (kind, n), r in rates.items()]
    for kind in dict.fromkeys(kind for kind, _ in rates):
        rows.append([f"scaling factor, {kind.rstrip(':')} (best 2 / best 1)", "",
                     f"x{best[kind, 2] / best[kind, 1]:.2f}"])
    return rows


if __name__ == "__main__":
    main()
