"""bin/demo: geoq's main job end to end, on this machine, in a few seconds.

Starts a private redis-server (or uses GEOQ_REDIS_URL), a local SMTP server and
a local HTTP server answering after 50 ms, runs bin/geoq-worker against them,
enqueues mail, HTTP and sleep jobs (a few of which always fail), shows
progress from the worker's own /metrics endpoint, and prints a summary. The dashboard
(`bin/geoq dashboard`) runs beside them; its URL is printed first. With --keep, the worker,
the dashboard and the servers keep running after the summary until Ctrl-C.
Exit status 0 when every job is accounted for (and, with --keep, everything stopped cleanly).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import geoq  # noqa: E402
from tests.support.http_server import HttpServer  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.smtp_server import SmtpServer  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bin/demo", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=3000, help="how many jobs to enqueue (default 3000)")
    p.add_argument("--concurrency", type=int, default=1000, help="worker greenlets (default 1000)")
    p.add_argument("--keep", action="store_true",
                   help="keep the worker and the dashboard running after the summary, until Ctrl-C")
    p.add_argument("--redis-url", default=os.environ.get("GEOQ_REDIS_URL"),
                   help="use this Redis instead of a private one (also GEOQ_REDIS_URL)")
    return p.parse_args()


def config_for(redis_url: str, smtp: SmtpServer, metrics_port: int, concurrency: int,
               dashboard_port: int) -> dict[str, Any]:
    fast = {"base": "100ms", "max": "200ms"}
    return {
        "redis": {"url": redis_url},
        "worker": {"concurrency": concurrency, "queues": ["demo-mail", "demo-http", "demo-bulk"],
                   "shutdown_grace": "5s"},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "logging": {"level": "warning"},
        "dashboard": {"listen": f"127.0.0.1:{dashboard_port}"},
        "routes": {
            "email.send": {"handler": "geoq.handlers.smtp:send", "queue": "demo-mail", "timeout": "30s",
                           "options": {**smtp.options(), "from": "demo@geoq.test", "max_connections": 20}},
            "http.fetch": {"handler": "geoq.handlers.http:fetch", "queue": "demo-http", "timeout": "10s",
                           "options": {"max_connections": 200}},
            "demo.sleep": {"handler": "geoq.handlers.builtin:sleep", "queue": "demo-bulk"},
            "demo.fail": {"handler": "geoq.handlers.builtin:fail", "queue": "demo-bulk", "max_retries": 2,
                          "backoff": fast},
        },
    }


def jobs_for(n: int, http: HttpServer) -> list[tuple[str, Any]]:
    failing = max(1, n // 300)
    mails = n // 4
    fetches = n // 2
    sleeps = n - mails - fetches - failing
    return ([("email.send", {"to": f"user{i}@example.test", "subject": f"Hello {i}", "body": "Sent by geoq."})
             for i in range(mails)]
            + [("http.fetch", {"url": http.url(f"/hook/{i}")}) for i in range(fetches)]
            + [("demo.sleep", {"seconds": 0.05}) for _ in range(sleeps)]
            + [("demo.fail", {"message": "this demo job always fails"}) for _ in range(failing)])


def outcomes(metrics_url: str) -> dict[str, float]:
    """Finished runs by outcome, read from the worker's own Prometheus endpoint."""
    with urllib.request.urlopen(metrics_url, timeout=2) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = collections.Counter({"succeeded": 0.0, "retried": 0.0, "dead": 0.0})
    for family in text_string_to_metric_families(text):
        if family.name == "geoq_jobs":
            for s in family.samples:
                if s.name == "geoq_jobs_total":
                    counts[s.labels["outcome"]] += s.value
    return counts


def progress(metrics_url: str, total: int, started: float, deadline: float) -> dict[str, float]:
    """Print a progress line (redrawn in place on a terminal) until every job has succeeded or died."""
    counts = {"succeeded": 0.0, "retried": 0.0, "dead": 0.0}
    tty, last = sys.stdout.isatty(), ""
    while time.monotonic() < deadline:
        try:
            counts = outcomes(metrics_url)
        except OSError:
            pass  # the endpoint is still starting
        done = counts["succeeded"] + counts["dead"]
        rate = done / max(time.monotonic() - started, 1e-6)
        bar = "#" * int(30 * done / total)
        line = (f"  [{bar:<30}] {int(done):>6}/{total} done  succeeded {int(counts['succeeded'])}  "
                f"retried {int(counts['retried'])}  dead {int(counts['dead'])}  {rate:7.0f} jobs/s")
        if line.split("]")[0] != last.split("]")[0] or done >= total:  # a new line only when the bar moved
            print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
            last = line
        if done >= total:
            break
        time.sleep(0.25)
    if tty:
        print()
    return counts


def main() -> int:
    args = parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="geoq-demo-") as tmp:
        if args.redis_url:
            redis_url = args.redis_url
            print(f"geoq demo: using Redis at {redis_url}")
        else:
            server = stack.enter_context(RedisServer())
            redis_url = server.url_for(0)
            print(f"geoq demo: private redis-server on 127.0.0.1:{server.port} (set GEOQ_REDIS_URL to use yours)")
        smtp = stack.enter_context(SmtpServer())
        http = stack.enter_context(HttpServer(delay=0.05))
        print(f"  local SMTP server on 127.0.0.1:{smtp.port}, HTTP server on 127.0.0.1:{http.port} (50 ms per request)")
        metrics_port, dashboard_port = free_port(), free_port()
        config = Path(tmp) / "demo.yaml"
        config.write_text(yaml.safe_dump(config_for(redis_url, smtp, metrics_port, args.concurrency, dashboard_port),
                                         sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = stack.enter_context(open(Path(tmp) / "worker.log", "wb"))
        dash_log = stack.enter_context(open(Path(tmp) / "dashboard.log", "wb"))
        dashboard = subprocess.Popen([sys.executable, str(ROOT / "bin" / "geoq"), "-c", str(config), "dashboard"],
                                     stdout=dash_log, stderr=subprocess.STDOUT, env=env)
        worker = subprocess.Popen([sys.executable, str(ROOT / "bin" / "geoq-worker"), str(config)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        children = [("worker", worker, signal.SIGTERM), ("dashboard", dashboard, signal.SIGINT)]
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        print(f"  dashboard: http://127.0.0.1:{dashboard_port}/   (pid {dashboard.pid}: bin/geoq dashboard)")
        print(f"  worker pid {worker.pid}: bin/geoq-worker {config.name} (concurrency {args.concurrency})")
        print(f"  metrics: {metrics_url}   health: http://127.0.0.1:{metrics_port}/healthz", flush=True)
        try:
            ok = run(args, config, http, smtp, worker, metrics_url, Path(tmp) / "worker.log")
            if args.keep:
                keep(dashboard_port)
            else:
                print("  (bin/demo --keep keeps the worker and the dashboard running, to look around)")
            return 0 if stop(children) and ok else 1
        finally:
            for _, child, _ in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)


def keep(dashboard_port: int) -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM with the fleet and the dashboard running."""
    print(f"demo: kept running; see http://127.0.0.1:{dashboard_port}/ (Ctrl-C stops everything)", flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    print("demo: stopping", flush=True)


def stop(children: list[tuple[str, subprocess.Popen[bytes], int]]) -> bool:
    """Stop each child gracefully; True when each exited 0."""
    clean = True
    for name, child, signum in children:
        if child.poll() is None:
            child.send_signal(signum)
        status = child.wait(30)
        if status != 0:
            print(f"demo: the {name} exited {status}", file=sys.stderr)
            clean = False
    return clean


def run(args: argparse.Namespace, config: Path, http: HttpServer, smtp: SmtpServer,
        worker: subprocess.Popen[bytes], metrics_url: str, log: Path) -> bool:
    """Enqueue, follow and summarise; True when every job is accounted for. The worker is
    stopped here (its exit status counts) unless --keep keeps it running."""
    client = geoq.Client.from_config(str(config))  # the routes tell the client each job type's queue
    redis_url = client.config.redis.url
    items = jobs_for(args.jobs, http)
    started = time.monotonic()
    client.enqueue_many(items)
    kinds = {kind: sum(1 for k, _ in items if k == kind) for kind in dict.fromkeys(k for k, _ in items)}
    print("  enqueued " + ", ".join(f"{n} {kind}" for kind, n in kinds.items())
          + f" in {time.monotonic() - started:.2f} s")
    counts = progress(metrics_url, len(items), started, deadline=time.monotonic() + 120)
    elapsed = time.monotonic() - started
    status = 0
    if not args.keep:
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(30)
    succeeded, dead = int(counts["succeeded"]), int(counts["dead"])
    expected_dead = kinds.get("demo.fail", 0)
    ok = succeeded == len(items) - expected_dead and dead == expected_dead and status == 0
    print(f"  SMTP server received {len(smtp.messages)} mails over {smtp.connections} connections; "
          f"HTTP server answered {len(http.requests)} requests over {http.connections} connections")
    if args.redis_url:  # a private Redis is gone when the demo ends; yours keeps the dead jobs
        print(f"  the dead jobs are kept for inspection: bin/geoq --redis-url {redis_url} dead list")
    print(f"demo: {succeeded} jobs succeeded, {dead} dead (the always-failing ones, after 2 retries), "
          f"in {elapsed:.1f} s ({succeeded / elapsed:.0f} jobs/s)" + ("" if args.keep else f"; worker exited {status}"))
    if not ok:
        print(f"demo: FAILED: expected {len(items) - expected_dead} succeeded and {expected_dead} dead; "
              f"worker log: {log.read_text()[-2000:]}", file=sys.stderr)
    client.close()
    return ok


if __name__ == "__main__":
    sys.exit(main())
