"""The core benchmark of one geoq worker process: drain rates, enqueue rates, memory, latency.

    .venv/bin/python bench/core.py [--quick] [--profile DIR]

Starts its own redis-server; prints one table. See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

# common first: it puts the measured tree (GEOQ_BENCH_TREE, else this one) on sys.path, and the
# producer rows must measure that tree's geoq as the workers do.
from common import FloorProcess, RedisServer, WorkerProcess, percentile, print_table, wait_until  # isort: skip
from handlers import STARTED  # isort: skip

import geoq  # noqa: E402
from geoq.broker import keys  # noqa: E402

QUEUE = keys.queue_keys("default")
ROUTES = {
    "bench.noop": {"handler": "geoq.handlers.builtin:noop"},
    "bench.sleep": {"handler": "geoq.handlers.builtin:sleep"},
    "bench.stamp": {"handler": "handlers:stamp"},
}
# Row 7: the same no-op route under a rate limit that never binds (a million a second): every job
# still asks Redis for its permit (one script call per route and fetch batch).
LIMITED = {**ROUTES, "bench.noop": {**ROUTES["bench.noop"], "limits": {"rate": "1000000/s"}}}
PAYLOAD_100B = {"d": "x" * 92}  # {"d":"xxx..."} is 100 bytes of JSON
LEDGER_DB = 1  # handlers record here, outside the queue's database 0
POLL = 0.02
Row = list[str]


class Bench:
    def __init__(self, server: RedisServer, scale: int, profile: Path | None) -> None:
        self.server, self.scale, self.profile = server, scale, profile
        self.redis = server.client()
        self.client = geoq.Client(server.url_for(0))
        self.profilers: list[subprocess.Popen[bytes]] = []

    def n(self, count: int) -> int:
        return count // self.scale

    def fresh(self) -> None:
        self.server.client(LEDGER_DB).flushdb()
        self.redis.flushall()

    def worker(self, concurrency: int, name: str, routes: dict[str, Any] = ROUTES) -> WorkerProcess:
        env = {"GEOQ_BENCH_LEDGER": self.server.url_for(LEDGER_DB)}
        w = WorkerProcess(self.server.url_for(0), routes, concurrency, env=env)
        if self.profile is not None:  # py-spy exits, writing the flame graph, when the worker does
            spy = Path(sys.executable).parent / "py-spy"
            self.profilers.append(subprocess.Popen(
                [str(spy), "record", "--pid", str(w.pid), "--rate", "500", "--nonblocking",
                 "-o", str(self.profile / f"{name}.svg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return w

    # -- 1, 2: drain ------------------------------------------------------------------------

    def drain(self, job_type: str, payload: Any, count: int, concurrency: int,
              floor: bool = False, routes: dict[str, Any] = ROUTES,
              payloads: list[Any] | None = None) -> dict[str, float]:
        """Enqueue `count` jobs (each with `payload`, or the `payloads` in turn), start a worker (or
        the floor), time until every job is settled."""
        self.fresh()
        self._enqueue(job_type, payloads or [payload] * count)
        started, redis_cpu = time.monotonic(), self._redis_cpu()
        with (FloorProcess(self.server.url_for(0), concurrency) if floor
              else self.worker(concurrency, job_type, routes)) as w:
            first, cpu_at_first = self._poll_until_drained(w, count)
            ended = time.monotonic()
            rss, cpu = w.peak_rss_mb(), w.cpu_seconds() - cpu_at_first
        redis_cpu = self._redis_cpu() - redis_cpu
        done = sum(1 for _ in self.redis.scan_iter(QUEUE.done("*"), count=1000))
        if done != count:  # the queue emptied some other way than by running every job
            raise RuntimeError(f"{done} of {count} jobs left a done record")
        return {"total": ended - started, "working": ended - first, "rss": rss, "cpu_per_job": cpu / count,
                "redis_cpu_per_job": redis_cpu / count}

    def _enqueue(self, job_type: str, payloads: list[Any]) -> None:
        """One job of `job_type` for each payload, by enqueue_many in chunks of 1,000."""
        for start in range(0, len(payloads), 1000):
            self.client.enqueue_many([(job_type, p) for p in payloads[start:start + 1000]])

    def _redis_cpu(self) -> float:
        """Seconds of CPU the redis-server has used (INFO cpu, user + system: its I/O threads too)."""
        cpu = self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    @contextlib.contextmanager
    def compressing(self, depth: int) -> Iterator[None]:
        """Redis's list-compress-depth set to `depth` for the lists made meanwhile, then back to 0."""
        self.redis.config_set("list-compress-depth", depth)
        try:
            yield
        finally:
            self.redis.config_set("list-compress-depth", 0)

    def _poll_until_drained(self, w: WorkerProcess, count: int) -> tuple[float, float]:
        """Poll Redis every ~20 ms; the time the ready list first shrank, and the worker's CPU then."""
        first, cpu = None, 0.0
        while True:
            w.check_alive()
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(QUEUE.ready)
            pipe.hlen(QUEUE.state)
            pipe.smembers(QUEUE.workers)
            ready, live, workers = pipe.execute()
            held = sum(self.redis.llen(QUEUE.processing(wid.decode())) for wid in workers)
            now = time.monotonic()
            if first is None and ready < count:
                first, cpu = now, w.cpu_seconds()
            if ready == 0 and live == 0 and held == 0:
                assert first is not None
                return first, cpu
            time.sleep(POLL)

    def noop_drain(self) -> list[Row]:
        # 60,000, not 20,000: the floor drains 20,000 in about half a second, where one ~20 ms
        # poll is 4% of the figure; three times the jobs make the share steadier.
        count = self.n(60_000)
        floor = self.drain("bench.noop", {}, count, concurrency=100, floor=True)
        r = self.drain("bench.noop", {}, count, concurrency=100)
        share = floor["working"] / r["working"]
        return [
            ["1", "  the floor (bench/limit.py: geoq's Redis moves, no geoq code), from first fetch",
             rate(count, floor["working"]), "", f"{floor['cpu_per_job'] * 1e6:.0f} us CPU per job"],
            ["1", "  geoq's share of the floor's rate (from first fetch)", f"{share:.0%}", ">= 70%",
             verdict(share >= 0.7)],
            ["1", f"no-op drain, {count:,} jobs, c=100, from worker start", rate(count, r["total"]), "",
             f"{r['total']:.2f} s"],
            ["1", "  same, from first fetch (ready list first shrank)", rate(count, r["working"]),
             ">= 8,000 jobs/s", verdict(count / r["working"] >= 8000)],
            ["1", "  worker CPU per job (from first fetch)", f"{r['cpu_per_job'] * 1e6:.0f} us", "", ""],
        ]

    def limit_cost(self, runs: int = 5) -> list[Row]:
        """Row 7: the no-op drain with no limit and with a rate limit that never binds, alternately
        `runs` times each in this one run; the median of each (and the best, which the machine's
        noise only slows)."""
        count = self.n(20_000)
        plain, limited = [], []
        for _ in range(runs):
            plain.append(self.drain("bench.noop", {}, count, concurrency=100))
            limited.append(self.drain("bench.noop", {}, count, concurrency=100, routes=LIMITED))
        rows = []
        for how, pick in (("median", _median), ("best", min)):
            base, lim = pick([r["working"] for r in plain]), pick([r["working"] for r in limited])
            base_cpu, lim_cpu = pick([r["cpu_per_job"] for r in plain]), pick([r["cpu_per_job"] for r in limited])
            cost, cpu = lim / base - 1, lim_cpu / base_cpu - 1
            rows += [
                ["7", f"no-op drain, {count:,} jobs, c=100, no limit ({how} of {runs}, from first fetch)",
                 rate(count, base), "", f"{base_cpu * 1e6:.1f} us CPU per job"],
                ["7", "  same, the route limited to 1,000,000/s (never binds)", rate(count, lim), "",
                 f"{lim_cpu * 1e6:.1f} us CPU per job"],
                ["7", f"  the limiter's cost ({how}): time / CPU per job", f"{cost:+.0%} / {cpu:+.0%}", "< 10%",
                 verdict(cost < 0.10)],
            ]
        return rows

    def sleep_drain(self) -> list[Row]:
        count, concurrency, seconds = self.n(20_000), 1000, 0.05
        r = self.drain("bench.sleep", {"seconds": seconds}, count, concurrency)
        ideal = concurrency / seconds
        working = count / r["working"]
        return [
            ["2", f"50 ms sleep drain, {count:,} jobs, c=1000, from worker start", rate(count, r["total"]), "",
             f"{r['total']:.2f} s (ideal {count / ideal:.2f} s)"],
            ["2", "  same, from first fetch", rate(count, r["working"]), "", ""],
            ["2", f"  efficiency vs ideal {ideal:,.0f} jobs/s (from first fetch)", f"{working / ideal:.0%}", ">= 85%",
             verdict(working / ideal >= 0.85)],
            ["2", "  worker peak RSS (VmHWM)", f"{r['rss']:.1f} MB", "<= 50 MB", verdict(r["rss"] <= 50)],
            ["2", "  worker CPU per job (from first fetch)", f"{r['cpu_per_job'] * 1e6:.0f} us", "", ""],
        ]

    def wide_sleep_drain(self) -> list[Row]:
        """Ten thousand greenlets: 1 s sleeps at c=10,000, the shape of slow I/O at scale."""
        count, concurrency, seconds = self.n(100_000), 10_000, 1.0
        r = self.drain("bench.sleep", {"seconds": seconds}, count, concurrency)
        ideal = concurrency / seconds
        working = count / r["working"]
        return [
            ["6", f"1 s sleep drain, {count:,} jobs, c=10,000, from first fetch", rate(count, r["working"]),
             "", f"ideal {ideal:,.0f} jobs/s"],
            ["6", "  efficiency vs ideal (from first fetch)", f"{working / ideal:.0%}", ">= 75%",
             verdict(working / ideal >= 0.75)],
            ["6", "  worker peak RSS (VmHWM)", f"{r['rss']:.1f} MB", "<= 150 MB", verdict(r["rss"] <= 150)],
            ["6", "  worker CPU per job (from first fetch)", f"{r['cpu_per_job'] * 1e6:.0f} us", "", ""],
        ]

    # -- 3, 4: enqueue and memory ------------------------------------------------------------

    def enqueue_single(self) -> list[Row]:
        count = self.n(5_000)
        self.fresh()
        elapsed = timed(lambda: [self.client.enqueue("bench.noop", PAYLOAD_100B) for _ in range(count)])
        return [["3", f"Client.enqueue, {count:,} single calls, 100 B payload", rate(count, elapsed), "", ""]]

    def enqueue_many_and_memory(self) -> list[Row]:
        count = self.n(100_000)
        self.fresh()
        before = self.redis.info("memory")["used_memory"]
        chunk = [("bench.noop", PAYLOAD_100B)] * 1000
        elapsed = timed(lambda: [self.client.enqueue_many(chunk) for _ in range(count // 1000)])
        after = self.redis.info("memory")["used_memory"]
        ready = self.redis.memory_usage(QUEUE.ready, samples=0) or 0
        state = self.redis.memory_usage(QUEUE.state, samples=0) or 0
        per_job = (after - before) / count
        bare = self._pipelined_rpush(count)
        return [
            ["3", f"Client.enqueue_many, {count:,} jobs in chunks of 1,000, 100 B payload",
             rate(count, elapsed), ">= 50,000 jobs/s", verdict(count / elapsed >= 50_000)],
            ["3", "  pipelined RPUSH of the same envelopes, chunks of 1,000 (no ids, no state, no script)",
             rate(count, bare), "", ""],
            ["3", "  enqueue_many's share of the pipelined RPUSH rate", f"{bare / elapsed:.0%}", ">= 50%",
             verdict(bare / elapsed >= 0.5)],
            ["4", f"Redis used_memory per queued job ({count:,} queued, 100 B payload)", f"{per_job:.0f} B",
             "<= 200 B", verdict(per_job <= 200)],
            ["4", "  of which ready list / state hash (MEMORY USAGE)",
             f"{ready / count:.0f} B / {state / count:.0f} B", "", ""],
        ]

    def compressed_memory(self) -> list[Row]:
        """Row 4 again with payloads like a mail job's, and with Redis compressing the ready list.

        The x-filled payload above would compress to almost nothing, so these rows use varied
        mail-like payloads (an address, a subject, a user number: about 100 bytes of JSON) and,
        for the worst case, random base64. `list-compress-depth 1` is Redis's own setting: the
        list's interior nodes (about 8 KB of envelopes each) are kept LZF-compressed."""
        count = self.n(100_000)
        rows = []
        for label, payloads, depth in (("mail-like", mail_like, 0), ("mail-like", mail_like, 1),
                                       ("random base64", random_base64, 1)):
            per_job = self._bytes_per_job(count, payloads(count), depth)
            rows.append(["4", f"  {label} payloads (about 100 B), list-compress-depth {depth}",
                         f"{per_job:.0f} B", "<= 200 B", verdict(per_job <= 200)])
        return rows

    def _bytes_per_job(self, count: int, payloads: list[Any], compress_depth: int) -> float:
        """Redis used_memory per job once `count` jobs with these payloads are queued (enqueue_many)."""
        self.fresh()
        with self.compressing(compress_depth):
            before = self.redis.info("memory")["used_memory"]
            self._enqueue("bench.noop", payloads)
            return float(self.redis.info("memory")["used_memory"] - before) / count

    def compression_cost(self, runs: int = 3) -> list[Row]:
        """Row 8: what list-compress-depth 1 costs. The no-op drain of mail-like jobs with Redis's
        list compression off and on, alternately `runs` times each; medians, with the Redis CPU
        per job (from the worker's start to the drained queue) beside the worker's."""
        count = self.n(60_000)
        payloads = mail_like(count)
        drains: dict[int, list[dict[str, float]]] = {0: [], 1: []}
        for _ in range(runs):
            for depth, results in drains.items():
                with self.compressing(depth):
                    results.append(self.drain("bench.noop", None, count, concurrency=100, payloads=payloads))
        rows = []
        for depth, results in drains.items():
            working = _median([r["working"] for r in results])
            redis_us = _median([r["redis_cpu_per_job"] for r in results]) * 1e6
            worker_us = _median([r["cpu_per_job"] for r in results]) * 1e6
            rows.append(["8", f"no-op drain, {count:,} mail-like jobs, c=100, list-compress-depth {depth}"
                         f" (median of {runs}, from first fetch)", rate(count, working), "",
                         f"CPU per job: Redis {redis_us:.1f} us, worker {worker_us:.0f} us"])
        return rows

    def _pipelined_rpush(self, count: int) -> float:
        """Seconds to RPUSH `count` of the envelopes just stored, pipelined 1,000 at a time."""
        envelopes = self.redis.lrange(QUEUE.ready, 0, 999)
        self.fresh()

        def push() -> None:
            for _ in range(count // 1000):
                pipe = self.redis.pipeline(transaction=False)
                for envelope in envelopes:
                    pipe.rpush(QUEUE.ready, envelope)
                pipe.execute()
        return timed(push)

    # -- 5: latency --------------------------------------------------------------------------

    def latency(self) -> list[Row]:
        count = max(20, self.n(200))
        self.fresh()
        ledger = self.server.client(LEDGER_DB, decode_responses=True)
        with self.worker(100, "latency") as w:
            warm = self.client.enqueue("bench.stamp", {})  # the worker is up and idle once this ran
            wait_until(lambda: ledger.hexists(STARTED, warm.id), 30, "the worker did not start a job")
            ledger.delete(STARTED)
            sent = {}
            for _ in range(count):
                at = time.time()
                sent[self.client.enqueue("bench.stamp", {}).id] = at
                time.sleep(0.005)

            def all_started() -> bool:
                w.check_alive()
                return ledger.hlen(STARTED) >= count

            wait_until(all_started, 30, "not every job started")
        started = {k: float(v) for k, v in ledger.hgetall(STARTED).items()}
        ms = [(started[i] - at) * 1000 for i, at in sent.items()]
        p = [percentile(ms, q) for q in (50, 95, 99)]
        return [["5", f"idle-worker latency enqueue->start, {count} jobs 5 ms apart, p50/p95/p99",
                 " / ".join(f"{v:.1f}" for v in p) + " ms", "p99 <= 2 ms", verdict(p[2] <= 2.0)],
                ["5", "  p99 alone", f"{p[2]:.2f} ms", "", f"max {max(ms):.1f} ms"]]


def mail_like(count: int) -> list[dict[str, Any]]:
    """Payloads of a mail job, varied as real ones are (same seed, same payloads): about 100 B of JSON."""
    pick = random.Random(13)
    words = "account confirm digest invoice order password receipt reset shipped weekly welcome".split()
    return [{"to": "".join(pick.choices(string.ascii_lowercase, k=pick.randint(5, 12))) + "@example.com",
             "subject": " ".join(pick.choices(words, k=3)), "user": pick.randint(1, 10**7),
             "kind": pick.choice(words)} for _ in range(count)]


def random_base64(count: int) -> list[dict[str, str]]:
    """100-byte JSON payloads that no compressor can shrink: {"d": 92 random base64 characters}."""
    pick = random.Random(17)
    return [{"d": base64.b64encode(pick.randbytes(69)).decode()[:92]} for _ in range(count)]


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} jobs/s"


def verdict(ok: bool) -> str:
    return "meets bar" if ok else "BELOW BAR"


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the jobs: a smoke run")
    parser.add_argument("--profile", type=Path, help="write a py-spy flame graph of each worker to this folder")
    parser.add_argument("--rows", default="1,2,3,4,5,6", help="which rows to run, e.g. 1,2 (7: the limiter's "
                        "cost, 8: list compression's, neither in the default run)")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with RedisServer() as server:
        bench = Bench(server, 10 if args.quick else 1, args.profile)
        wanted = set(args.rows.split(","))
        steps = {"1": bench.noop_drain, "2": bench.sleep_drain, "3": bench.enqueue_single,
                 "4": lambda: bench.enqueue_many_and_memory() + bench.compressed_memory(),
                 "5": bench.latency, "6": bench.wide_sleep_drain, "7": bench.limit_cost, "8": bench.compression_cost}
        rows = [row for number, step in steps.items() if number in wanted for row in step()]
        bench.client.close()
        for spy in bench.profilers:
            spy.wait(30)
    print_table(["#", "measurement", "result", "bar", "note"], rows)
    # Other work on the machine takes the worker's core: a loaded run measures the machine, not geoq.
    print(f"\n1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
