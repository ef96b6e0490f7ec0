"""Benchmark plumbing: a private redis-server, a worker subprocess, its peak memory, the table.

Nothing here is timed: the measurements live in the benchmark scripts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

HERE = Path(__file__).resolve().parents[1]
# GEOQ_BENCH_TREE names another checkout (an older commit's `git worktree`) whose geoq and
# bin/geoq-worker to measure with these same benchmarks: bench/compare.py alternates the two.
ROOT = Path(os.environ.get("GEOQ_BENCH_TREE") or HERE).resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(HERE))

# The benchmarks start the same private servers the tests do.
from tests.support.redis_server import RedisServer  # noqa: E402,F401
from tests.support.waiting import wait_until as _wait_until  # noqa: E402
BENCH = HERE / "bench"
WORKER = ROOT / "bin" / "geoq-worker"
START_TIMEOUT = 10.0


def wait_until(condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.01) -> Any:
    """The first truthy value of condition() (the tests' helper, positional arguments as used here)."""
    return _wait_until(condition, timeout=timeout, interval=interval, message=message)


def write_config(path: Path, redis_url: str, routes: Mapping[str, Any], concurrency: int) -> Path:
    """A worker config: one queue, warning-level logs (logging must not cost time), no metrics server."""
    body = {"redis": {"url": redis_url},
            "worker": {"concurrency": concurrency, "queues": ["default"]},
            "logging": {"level": "warning"},
            "metrics": {"listen": "off"},
            "routes": dict(routes)}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


class WorkerProcess:
    """bin/geoq-worker as a subprocess, with bench/ importable for bench-only handlers."""

    def __init__(self, redis_url: str, routes: Mapping[str, Any], concurrency: int,
                 env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="geoq-bench-worker-"))
        config = write_config(self.dir / "worker.yaml", redis_url, routes, concurrency)
        self._start([str(WORKER), str(config), *args], env)

    def _start(self, command: Sequence[str], env: Mapping[str, str] | None) -> None:
        self.log_path = self.dir / "worker.log"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]), **(env or {})}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, *command], env=full_env,
                                         stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU the worker has used so far (/proc/PID/stat, clock-tick resolution)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The process's high-water resident set size (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for pid {self.pid}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful stop) by PID; SIGKILL if it has not exited within timeout. The exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            code = self.stop()
            if exc_type is None and code != 0:  # a worker that did not stop cleanly measured something else
                raise RuntimeError(f"worker exited with {code}:\n{self.log()}")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class FloorProcess(WorkerProcess):
    """bench/limit.py (the floor: geoq's Redis moves, no geoq code) in a worker's place."""

    def __init__(self, redis_url: str, concurrency: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="geoq-bench-floor-"))
        self._start([str(BENCH / "limit.py"), redis_url, "--concurrency", str(concurrency)], None)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
