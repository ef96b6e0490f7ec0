#!/usr/bin/env python3
"""I/O workloads: the built-in SMTP and HTTP handlers under a real worker, and the HTTP client choice.

    python bench/io_handlers.py http    [--jobs 20000] [--concurrency 1000] [--latency 0.05] [--max-connections 1000]
    python bench/io_handlers.py smtp    [--jobs 10000] [--concurrency 1000] [--latency 0.05] [--max-connections 100]
    python bench/io_handlers.py clients [--requests 20000] [--concurrency 1000] [--latency 0.05] [--ghc-path DIR]
    python bench/io_handlers.py cpu     [--rows 1,2,3,4] [--http-jobs 10000] [--smtp-jobs 5000] [--profile DIR]

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

`cpu` prints requests per worker-CPU-second, the steadiest figure on a
shared machine: the worker process's user + system CPU (/proc/PID/stat)
from the first request its server saw to the last job settled (Redis holds
no job), over the requests in between. Rows: 0 the built-in sleep handler
(latency seconds, same concurrency: the worker's own share of a job, to
subtract for the handler's), 1 HTTP with keep-alive, 2 HTTP
against a server that closes every connection (`http --close` alone), 3 SMTP
over reused connections, 4 bare gevent loops of http.client,
geventhttpclient (when installed) and smtplib against the same servers, no
geoq code, each in its own process (its getrusage over the loop). The
worker rows measure the tree GEOQ_BENCH_TREE names (bench/common.py), so
`bench/compare.py OLD --bench io` sets two trees side by side. --profile DIR
records each worker with py-spy (collapsed stacks, DIR/JOB_TYPE.txt).

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


def serve_http(port: int, latency: float, close: bool = False) -> None:
    """HTTP/1.1 keep-alive, or with `close` a "Connection: close" answer and a closed socket after every
    request but the stats calls; GET /_stats reports (and POST /_reset clears) counts. Runs until killed."""
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
        closing = b""
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
            closing = b"Connection: close\r\n" if close else b""
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s"
                     % (closing, len(body), body))
        return not closing

    reset()
    StreamServer(("127.0.0.1", port), handle, backlog=4096).serve_forever()


class HttpBenchServer:
    def __init__(self, latency: float, close: bool = False) -> None:
        from tests.support.ports import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "serve-http", str(self.port), str(latency),
                                      "close" if close else "keep-alive"], start_new_session=True)
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


class Window:
    """What a workload did between the first request its server saw and the last job settled."""

    def __init__(self, seconds: float, cpu: float, requests: int, connections: int) -> None:
        self.seconds, self.cpu, self.requests, self.connections = seconds, cpu, requests, connections

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu if self.cpu else float("nan")


def run_worker_bench(args: argparse.Namespace) -> None:
    from common import RedisServer

    with RedisServer() as redis_server:
        if args.workload == "http":
            window = _bench_http(args, redis_server, close=args.close)
        else:
            window = _bench_smtp(args, redis_server)
    ideal = min(args.concurrency, args.max_connections) / args.latency
    rate = args.jobs / window.seconds
    _table(f"{args.workload}: {args.jobs} jobs through one worker, concurrency {args.concurrency}, "
           f"max_connections {args.max_connections}, server latency {args.latency * 1000:g} ms"
           + (", server closes every connection" if getattr(args, "close", False) else ""),
           ("workload", "jobs", "seconds", "jobs/s", "ideal jobs/s", "efficiency", "server connections",
            "worker CPU s", "req / worker-CPU-s"),
           [(args.workload, str(args.jobs), f"{window.seconds:.2f}", f"{rate:,.0f}", f"{ideal:,.0f}",
             f"{rate / ideal:.0%}", str(window.connections), f"{window.cpu:.2f}", f"{window.per_cpu_second:,.0f}")])


def _bench_http(args: argparse.Namespace, redis_server: Any, close: bool) -> Window:
    server = HttpBenchServer(args.latency, close=close)
    try:
        route = {"handler": "geoq.handlers.http:fetch",
                 "options": {"max_connections": args.max_connections, "timeout": "30s"}}
        payloads = [{"url": server.url(f"/job/{i}")} for i in range(args.jobs)]

        def seen() -> tuple[int, float | None, float | None]:
            s = server.call("/_stats")
            return s["requests"], s["first"], s["last"]

        window = _drive(args, redis_server, "bench.http.close" if close else "bench.http", route, payloads, seen)
        window.connections = server.call("/_stats")["connections"]
        return window
    finally:
        server.stop()


def _bench_smtp(args: argparse.Namespace, redis_server: Any) -> Window:
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

        window = _drive(args, redis_server, "bench.smtp", route, payloads, seen)
        window.connections = server.connections
        return window


def _bench_sleep(args: argparse.Namespace, redis_server: Any) -> Window:
    """The worker's own share of a job at this concurrency: the built-in sleep handler, no I/O of its own."""
    from geoq.broker import keys

    ready = keys.queue_keys("default").ready
    redis = redis_server.client()
    marks: list[float] = []

    def seen() -> tuple[int, float | None, float | None]:
        taken = args.jobs - redis.llen(ready)  # a job taken from the ready list is running or done
        if taken:
            marks.append(time.time())
        return taken, (marks[0] if marks else None), (marks[-1] if marks else None)

    route = {"handler": "geoq.handlers.builtin:sleep"}
    return _drive(args, redis_server, "bench.sleep", route, [{"seconds": args.latency}] * args.jobs, seen)


def _drive(args: argparse.Namespace, redis_server: Any, job_type: str, route: dict[str, Any],
           payloads: list[dict[str, Any]], seen: Callable[[], tuple[int, float | None, float | None]]) -> Window:
    """Fill the queue, start the worker (the measured tree's, see bench/common.py), and measure from the
    first request the server saw to the last job settled: the worker's CPU, and the requests in between."""
    import geoq
    from common import WorkerProcess

    client = geoq.Client(redis_server.url_for(0))
    for start in range(0, len(payloads), 5000):
        client.enqueue_many([(job_type, p) for p in payloads[start:start + 5000]])
    with WorkerProcess(redis_server.url_for(0), {job_type: route}, args.concurrency) as worker:
        spy = _profiler(worker.pid, getattr(args, "profile", None), job_type)
        deadline = time.monotonic() + 600
        while (at_first := seen()[0]) == 0:
            _check(worker, deadline, 0, len(payloads))
            time.sleep(0.005)
        cpu_at_first = worker.cpu_seconds()
        while not _settled(redis_server):
            _check(worker, deadline, seen()[0], len(payloads))
            time.sleep(0.02)
        cpu = worker.cpu_seconds() - cpu_at_first
    if spy is not None:  # py-spy writes its profile once the worker has exited
        spy.wait(60)
    client.close()
    count, first, last = seen()
    if count != len(payloads):
        raise RuntimeError(f"the server saw {count} of {len(payloads)} requests")
    assert first is not None and last is not None
    return Window(last - first + args.latency, cpu, count - at_first, 0)


def _profiler(pid: int, folder: str | None, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy recording the worker into FOLDER/NAME.txt (collapsed stacks), when asked for."""
    if folder is None:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy), "record", "--format", "raw", "--rate", "1000", "--nonblocking",
                             "--pid", str(pid), "-o", str(Path(folder) / f"{name}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _check(worker: Any, deadline: float, done: int, count: int) -> None:
    worker.check_alive()
    if time.monotonic() > deadline:
        raise RuntimeError(f"only {done} of {count} done; worker log:\n{worker.log()}")


def _settled(redis_server: Any) -> bool:
    """No job ready, held by a worker or in flight: the state hash is empty once every job settled."""
    from geoq.broker import keys

    queue = keys.queue_keys("default")
    redis = redis_server.client()
    workers = redis.smembers(queue.workers)
    held = sum(redis.llen(queue.processing(w.decode())) for w in workers)
    return redis.llen(queue.ready) == 0 and redis.hlen(queue.state) == 0 and held == 0


# --- requests per worker-CPU-second: the handlers and bare client loops, one table -------------------


def run_cpu_table(args: argparse.Namespace) -> None:
    """The three handler rows through the measured tree's worker, then the reference loops (a process each)."""
    from common import RedisServer, print_table

    wanted = set(args.rows.split(","))
    rows: list[list[str]] = []
    with RedisServer() as redis_server:
        for number, name, run in _handler_rows(args):
            if number in wanted:
                redis_server.client().flushall()
                rows.append(_cpu_row(number, name, run(redis_server)))
    if "4" in wanted:
        rows += _reference_rows(args)
    print_table(["#", "measurement", "requests per worker-CPU-second", "note"], rows)
    print(f"\n1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def _handler_rows(args: argparse.Namespace) -> list[tuple[str, str, Callable[[Any], Window]]]:
    http = argparse.Namespace(jobs=args.http_jobs, concurrency=args.concurrency, latency=args.latency,
                              max_connections=args.concurrency, profile=args.profile)
    smtp = argparse.Namespace(jobs=args.smtp_jobs, concurrency=args.concurrency, latency=args.latency,
                              max_connections=args.smtp_connections, profile=args.profile)
    return [
        ("0", "geoq.handlers.builtin:sleep (the worker's own share of a job)", lambda r: _bench_sleep(http, r)),
        ("1", "geoq.handlers.http:fetch, keep-alive", lambda r: _bench_http(http, r, close=False)),
        ("2", "geoq.handlers.http:fetch, server closes every connection", lambda r: _bench_http(http, r, close=True)),
        ("3", "geoq.handlers.smtp:send, reused connections", lambda r: _bench_smtp(smtp, r)),
    ]


def _cpu_row(number: str, name: str, w: Window) -> list[str]:
    connections = f", {w.connections} connections" if w.connections else ""
    return [number, name, f"{w.per_cpu_second:,.0f}",
            f"{w.cpu / w.requests * 1e6:.0f} us CPU per request, {w.requests / w.seconds:,.0f} req/s{connections}"]


def _reference_rows(args: argparse.Namespace) -> list[list[str]]:
    """Bare gevent loops of requests, no geoq: what a request costs the client libraries alone."""
    rows = []
    for client in ("http.client", "geventhttpclient", "geoq.handlers.wire"):
        for close in (False, True):
            server = HttpBenchServer(args.latency, close=close)
            try:
                result = _loop_process(["http", client, str(server.port)], args)
            finally:
                server.stop()
            rows.append(_loop_row(f"bare gevent loop, {client}, {'server closes' if close else 'keep-alive'}",
                                  result))
    from tests.support.smtp_server import SmtpServer

    with SmtpServer(latency=args.latency) as smtp:
        rows.append(_loop_row("bare gevent loop, smtplib, reused connections, prebuilt message",
                              _loop_process(["smtp", "smtplib", str(smtp.port)], args)))
    return rows


def _loop_process(what: list[str], args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "loop", *what, str(args.loop_requests), str(args.concurrency),
                           str(args.smtp_connections if what[0] == "smtp" else args.concurrency)],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _loop_row(name: str, result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return ["4", name, "-", result["error"][:100]]
    return ["4", name, f"{result['requests'] / result['cpu']:,.0f}",
            f"{result['cpu'] / result['requests'] * 1e6:.0f} us CPU per request, {result['errors']} errors"]


def loop(argv: list[str]) -> None:
    """A gevent-patched loop of requests (its own process); prints {"requests", "cpu", "errors"} as JSON."""
    from gevent import monkey

    monkey.patch_all()
    import resource

    import gevent.pool

    protocol, client, port, count, concurrency, connections = argv[0], argv[1], int(argv[2]), *map(int, argv[3:])
    make = {"http.client": _http_client_get, "geventhttpclient": _ghc_get, "geoq.handlers.wire": _wire_get,
            "smtplib": _smtplib_send}[client]
    one = make(port, connections)
    one()  # warm: imports, the first connection
    errors = 0

    def run(_: int) -> None:
        nonlocal errors
        try:
            one()
        except Exception:  # noqa: BLE001 -- counted, not fatal, in a benchmark
            errors += 1

    usage = resource.getrusage(resource.RUSAGE_SELF)
    gevent.pool.Pool(concurrency).map(run, range(count))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    print(json.dumps({"requests": count, "cpu": cpu, "errors": errors}))


def _http_client_get(port: int, size: int) -> Callable[[], None]:
    """http.client behind a list of idle connections: reused while the server keeps them open."""
    import http.client

    import gevent.lock

    slots, idle = gevent.lock.BoundedSemaphore(size), []

    def get() -> None:
        with slots:
            conn = idle.pop() if idle else http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/bench")
                r = conn.getresponse()
                r.read()
            except BaseException:
                conn.close()
                raise
            if r.will_close:
                conn.close()
            else:
                idle.append(conn)
            if r.status != 200:
                raise RuntimeError(r.status)
    return get


def _wire_get(port: int, size: int) -> Callable[[], None]:
    """The HTTP handler's client alone (the measured tree's), a prebuilt request, the same pooling."""
    sys.path.insert(0, os.environ.get("GEOQ_BENCH_TREE") or str(ROOT))
    import gevent.lock

    from geoq.handlers.wire import Wire, request_head

    slots, idle = gevent.lock.BoundedSemaphore(size), []
    head = request_head("GET", "/bench", f"127.0.0.1:{port}", {"user-agent": "geoq"}, None)

    def get() -> None:
        with slots:
            wire = idle.pop() if idle else Wire(socket.create_connection(("127.0.0.1", port), timeout=30))
            try:
                answer = wire.exchange(head, "GET", 65536)
            except BaseException:
                wire.close()
                raise
            if answer.reusable:
                idle.append(wire)
            else:
                wire.close()
            if answer.status != 200:
                raise RuntimeError(answer.status)
    return get


def _ghc_get(port: int, size: int) -> Callable[[], None]:
    from geventhttpclient import HTTPClient

    client = HTTPClient("127.0.0.1", port, concurrency=size, connection_timeout=30, network_timeout=30)

    def get() -> None:
        r = client.get("/bench")
        r.read()
        if r.status_code != 200:
            raise RuntimeError(r.status_code)
    return get


def _smtplib_send(port: int, size: int) -> Callable[[], None]:
    import smtplib

    import gevent.lock

    slots, idle = gevent.lock.BoundedSemaphore(size), []
    data = (b"From: bench@example.com\r\nTo: user@example.com\r\nSubject: bench\r\n\r\n" + b"hello\r\n" * 20)

    def send() -> None:
        with slots:
            conn = idle.pop() if idle else smtplib.SMTP("127.0.0.1", port, timeout=30)
            try:
                conn.sendmail("bench@example.com", ["user@example.com"], data)
            except BaseException:
                conn.close()
                raise
            idle.append(conn)
    return send


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
        if name == "http":
            s.add_argument("--close", action="store_true", help="the server closes every connection")
    c = sub.add_parser("clients")
    c.add_argument("--requests", type=int, default=20000)
    c.add_argument("--concurrency", type=int, default=1000)
    c.add_argument("--latency", type=float, default=0.05)
    c.add_argument("--ghc-path", help="a directory holding geventhttpclient, if it is not installed")
    t = sub.add_parser("cpu")
    t.add_argument("--http-jobs", type=int, default=10000)
    t.add_argument("--smtp-jobs", type=int, default=5000)
    t.add_argument("--loop-requests", type=int, default=10000)
    t.add_argument("--concurrency", type=int, default=1000)
    t.add_argument("--smtp-connections", type=int, default=100)
    t.add_argument("--latency", type=float, default=0.05)
    t.add_argument("--rows", default="0,1,2,3,4",
                   help="which rows to run (0: the worker's own share, a sleep handler; 4: the bare client loops)")
    t.add_argument("--profile", help="a folder for py-spy's collapsed stacks of each worker (NAME.txt)")
    return p.parse_args(argv)


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve-http"]:
        serve_http(int(argv[1]), float(argv[2]), close=argv[3:4] == ["close"])
        return
    if argv[:1] == ["loop"]:
        loop(argv[1:])
        return
    args = parse_args(argv)
    if args.workload == "clients":
        sys.path.insert(0, str(ROOT))
        compare_clients(args)
        return
    import common  # noqa: F401 -- puts the measured tree (GEOQ_BENCH_TREE, else this one) first on sys.path

    if args.workload == "cpu":
        run_cpu_table(args)
    else:
        run_worker_bench(args)


if __name__ == "__main__":
    main(sys.argv[1:])
