#!/usr/bin/env python3
"""I/O workloads: the built-in SMTP and HTTP handlers under a real worker, and the HTTP client choice.

    python bench/io_handlers.py http    [--jobs 20000] [--concurrency 1000] [--latency 0.05] [--max-connections 1000]
    python bench/io_handlers.py smtp    [--jobs 10000] [--concurrency 1000] [--latency 0.05] [--max-connections 100]
    python bench/io_handlers.py clients [--requests 20000] [--concurrency 1000] [--latency 0.05] [--ghc-path DIR]

`http` and `smtp` start a private redis-server, a server answering each
request (or message) after --latency seconds, and bin/geoq-worker with one
route to the built-in handler; they enqueue --jobs jobs, then time them from
the first request the server saw to the last job settled. The ideal is
min(concurrency, max_connections) / latency jobs per second; efficiency is
the measured rate over it.

`clients` runs the candidate HTTP clients in one gevent-patched process
(urllib3's PoolManager; the standard library's http.client behind a small
pool; geventhttpclient when importable, e.g. from --ghc-path; and the
handler itself, whole) against the same server, each with as many connections as greenlets, and reports
requests per second and client CPU seconds per 1,000 requests.

Each prints one table. Needs redis-server on PATH; run from a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


# --- a fast keep-alive HTTP server with latency (its own process, gevent) --------------------------


def serve_http(port: int, latency: float) -> None:
    """HTTP/1.1 keep-alive; GET /_stats reports (and POST /_reset clears) counts. Runs until killed."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    from gevent.server import StreamServer

    stats: dict[str, Any] = {}

    def reset() -> None:
        stats.update(requests=0, connections=0, first=None, last=None)

    def handle(sock: socket.socket, _addr: Any) -> None:
        reader = sock.makefile("rb")
        counted = [False]  # a connection counts once it asks for something other than /_stats
        try:
            while _answer(sock, reader, counted):
                pass
        except OSError:
            pass
        finally:
            reader.close()
            sock.close()

    def _answer(sock: socket.socket, reader: Any, counted: list[bool]) -> bool:
        line = reader.readline(65536)
        if not line:
            return False
        length = 0
        while True:
            header = reader.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":", 1)[1])
        if length:
            reader.read(length)
        path = line.split()[1]
        if path == b"/_stats":
            body = json.dumps(stats).encode()
        elif path == b"/_reset":
            reset()
            body = b"{}"
        else:
            if not counted[0]:
                counted[0] = True
                stats["connections"] += 1
            gevent.sleep(latency)
            now = time.time()
            stats["requests"] += 1
            stats["first"] = stats["first"] or now
            stats["last"] = now
            body = b"ok\n"
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return True

    reset()
    StreamServer(("127.0.0.1", port), handle, backlog=4096).serve_forever()


class HttpBenchServer:
    def __init__(self, latency: float) -> None:
        from tests.support.ports import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "serve-http", str(self.port), str(latency)],
                                     start_new_session=True)
        _wait_for_port(self.port)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, path: str) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(self.url(path), timeout=10) as r:  # noqa: S310 -- our own local server
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not start")


# --- client comparison (a gevent-patched process of its own) ----------------------------------------


def compare_clients(args: argparse.Namespace) -> None:
    from gevent import monkey

    monkey.patch_all()
    if args.ghc_path:
        sys.path.insert(0, args.ghc_path)
    server = HttpBenchServer(args.latency)
    rows = []
    try:
        for name, make in _client_makers().items():
            try:
                get = make(server.port, args.concurrency)
            except ImportError as e:
                rows.append((name, "not installed", str(e), "", "", ""))
                continue
            get(server.url("/warm"))
            server.call("/_reset")
            rows.append(_run_client(name, get, server, args))
    finally:
        server.stop()
    ideal = args.concurrency / args.latency
    _table(f"HTTP clients under gevent: {args.requests} GETs, {args.concurrency} greenlets, server latency "
           f"{args.latency * 1000:g} ms (ideal {ideal:,.0f} req/s)",
           ("client", "req/s", "efficiency", "CPU s / 1k req", "connections", "errors"), rows)


def _run_client(name: str, get: Callable[[str], int], server: HttpBenchServer, args: argparse.Namespace) -> tuple:
    import resource

    import gevent.pool

    errors = 0
    url = server.url("/bench")

    def one(_: int) -> None:
        nonlocal errors
        try:
            if get(url) != 200:
                errors += 1
        except Exception:  # noqa: BLE001 -- counted, not fatal, in a benchmark
            errors += 1

    cpu0, t0 = _cpu(resource), time.perf_counter()
    gevent.pool.Pool(args.concurrency).map(one, range(args.requests))
    wall, cpu = time.perf_counter() - t0, _cpu(resource) - cpu0
    stats = server.call("/_stats")
    rate = args.requests / wall
    return (name, f"{rate:,.0f}", f"{rate / (args.concurrency / args.latency):.0%}",
            f"{cpu / args.requests * 1000:.3f}", str(stats["connections"]), str(errors))


def _cpu(resource: Any) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _client_makers() -> dict[str, Callable[[int, int], Callable[[str], int]]]:
    def urllib3_client(port: int, size: int) -> Callable[[str], int]:
        import urllib3

        manager = urllib3.PoolManager(maxsize=size, block=True, retries=False)

        def get(url: str) -> int:
            r = manager.request("GET", url, timeout=urllib3.Timeout(connect=10, read=10))
            return r.status
        return get

    def stdlib_client(port: int, size: int) -> Callable[[str], int]:
        import http.client
        from urllib.parse import urlsplit

        import gevent.lock

        slots = gevent.lock.BoundedSemaphore(size)
        idle: list[http.client.HTTPConnection] = []

        def get(url: str) -> int:
            with slots:
                conn = idle.pop() if idle else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    conn.request("GET", urlsplit(url).path)
                    r = conn.getresponse()
                    r.read()
                except BaseException:
                    conn.close()
                    raise
                idle.append(conn)
                return r.status
        return get

    def ghc_client(port: int, size: int) -> Callable[[str], int]:
        from urllib.parse import urlsplit

        from geventhttpclient import HTTPClient

        client = HTTPClient("127.0.0.1", port, concurrency=size, connection_timeout=10, network_timeout=10)

        def get(url: str) -> int:
            r = client.get(urlsplit(url).path)
            r.read()
            return r.status_code
        return get

    def geoq_handler(port: int, size: int) -> Callable[[str], int]:
        from geoq.handlers.http import Fetch
        from geoq.job import Job

        handler = Fetch(max_connections=size)

        def get(url: str) -> int:
            return int(handler(Job(id="b:1", type="http.fetch", queue="b", payload={"url": url}, attempt=1))["status"])
        return get

    return {"urllib3": urllib3_client, "http.client": stdlib_client, "geventhttpclient": ghc_client,
            "geoq Fetch (http.client)": geoq_handler}


# --- end to end through bin/geoq-worker ------------------------------------------------------------


def run_worker_bench(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import RedisServer

    with RedisServer() as redis_server, tempfile.TemporaryDirectory(prefix="geoq-bench-") as tmp:
        if args.workload == "http":
            row = _bench_http(args, redis_server, Path(tmp))
        else:
            row = _bench_smtp(args, redis_server, Path(tmp))
    ideal = min(args.concurrency, args.max_connections) / args.latency
    rate = args.jobs / row["seconds"]
    _table(f"{args.workload}: {args.jobs} jobs through one worker, concurrency {args.concurrency}, "
           f"max_connections {args.max_connections}, server latency {args.latency * 1000:g} ms",
           ("workload", "jobs", "seconds", "jobs/s", "ideal jobs/s", "efficiency", "server connections",
            "worker CPU s"),
           [(args.workload, str(args.jobs), f"{row['seconds']:.2f}", f"{rate:,.0f}", f"{ideal:,.0f}",
             f"{rate / ideal:.0%}", str(row["connections"]), f"{row['cpu']:.1f}")])


def _bench_http(args: argparse.Namespace, redis_server: Any, tmp: Path) -> dict[str, Any]:
    server = HttpBenchServer(args.latency)
    try:
        route = {"handler": "geoq.handlers.http:fetch",
                 "options": {"max_connections": args.max_connections, "timeout": "30s"}}
        payloads = [{"url": server.url(f"/job/{i}")} for i in range(args.jobs)]

        def seen() -> tuple[int, float | None, float | None]:
            s = server.call("/_stats")
            return s["requests"], s["first"], s["last"]

        result = _drive(args, redis_server, tmp, "bench.http", route, payloads, seen)
        result["connections"] = server.call("/_stats")["connections"]
        return result
    finally:
        server.stop()


def _bench_smtp(args: argparse.Namespace, redis_server: Any, tmp: Path) -> dict[str, Any]:
    from tests.support.smtp_server import SmtpServer

    with SmtpServer(latency=args.latency) as server:
        route = {"handler": "geoq.handlers.smtp:send",
                 "options": {**server.options(), "max_connections": args.max_connections, "timeout": "30s",
                             "from": "bench@example.com"}}
        payloads = [{"to": f"user{i}@example.com", "subject": f"bench {i}", "body": "hello\n" * 20}
                    for i in range(args.jobs)]

        def seen() -> tuple[int, float | None, float | None]:
            messages = list(server.messages)
            return len(messages), (messages[0].at if messages else None), (messages[-1].at if messages else None)

        result = _drive(args, redis_server, tmp, "bench.smtp", route, payloads, seen)
        result["connections"] = server.connections
        return result


def _drive(args: argparse.Namespace, redis_server: Any, tmp: Path, job_type: str, route: dict[str, Any],
           payloads: list[dict[str, Any]], seen: Callable[[], tuple[int, float | None, float | None]]) -> dict:
    """Fill the queue, start the worker, and time first request -> last one (plus one latency)."""
    import geoq
    from tests.support.worker_process import WorkerProcess, write_config

    url = redis_server.url_for(1)
    config = write_config(tmp / "bench.yaml", url, {job_type: route},
                          worker={"concurrency": args.concurrency}, logging={"level": "warning"})
    client = geoq.Client(url)
    for start in range(0, len(payloads), 5000):
        client.enqueue_many([(job_type, p) for p in payloads[start:start + 5000]])
    with WorkerProcess(config) as worker:
        deadline = time.monotonic() + 600
        while seen()[0] < len(payloads):
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise RuntimeError(f"only {seen()[0]} of {len(payloads)} done; worker log:\n{worker.log()[-3000:]}")
            time.sleep(0.05)
        cpu = _process_cpu(worker.pid)
        worker.stop()
    count, first, last = seen()
    assert first is not None and last is not None
    return {"seconds": last - first + args.latency, "cpu": cpu}


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="workload", required=True)
    for name, jobs, conns in (("http", 20000, 1000), ("smtp", 10000, 100)):
        s = sub.add_parser(name)
        s.add_argument("--jobs", type=int, default=jobs)
        s.add_argument("--concurrency", type=int, default=1000)
        s.add_argument("--latency", type=float, default=0.05)
        s.add_argument("--max-connections", type=int, default=conns)
    c = sub.add_parser("clients")
    c.add_argument("--requests", type=int, default=20000)
    c.add_argument("--concurrency", type=int, default=1000)
    c.add_argument("--latency", type=float, default=0.05)
    c.add_argument("--ghc-path", help="a directory holding geventhttpclient, if it is not installed")
    return p.parse_args(argv)


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve-http"]:
        serve_http(int(argv[1]), float(argv[2]))
        return
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    if args.workload == "clients":
        compare_clients(args)
    else:
        run_worker_bench(args)


if __name__ == "__main__":
    main(sys.argv[1:])
