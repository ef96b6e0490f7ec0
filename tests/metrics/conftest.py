"""A metrics endpoint in a patched subprocess (tests/metrics/serve_metrics.py), and HTTP helpers.

The pytest process is never monkeypatched: the endpoint runs where it runs in
production, in a gevent process, and the tests talk to it over real HTTP.
"""

from __future__ import annotations

import http.client
import os
import selectors
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("serve_metrics.py")
ROUTES = {"t.ok": {"handler": "geoq.handlers.builtin:noop"},
          "t.bulk": {"handler": "geoq.handlers.builtin:noop", "queue": "bulk"}}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


def get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> Reply:
    """One real HTTP GET; raises (socket.timeout) when no answer comes within `timeout`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode())
    finally:
        conn.close()


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text scrape, None when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


class MetricsProcess:
    """serve_metrics.py running against `redis_url`; command(...) drives its hooks."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.port = free_port()
        config = {"redis": {"url": redis_url, "socket_timeout": "1s", "connect_timeout": "1s"},
                  "worker": {"queues": ["default", "bulk"], "concurrency": 50},
                  "metrics": {"listen": f"127.0.0.1:{self.port}"}, "routes": ROUTES}
        path = tmp / "metrics.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "metrics.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), str(path)], cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log)
        self._select = selectors.DefaultSelector()
        self._select.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        assert self._line(20.0) == f"ready {self.port}", self.log()

    def command(self, *words: object, timeout: float = 10.0) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(map(str, words)) + "\n").encode())
        self.proc.stdin.flush()
        assert self._line(timeout) == "ok", self.log()

    def get(self, path: str, **kwargs: object) -> Reply:
        return get(self.port, path, **kwargs)  # type: ignore[arg-type]

    def scrape(self) -> str:
        reply = self.get("/metrics")
        assert reply.status == 200, reply
        return reply.body

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        if not self._select.select(timeout):
            raise AssertionError(f"no line from the metrics process within {timeout:g}s; log:\n{self.log()}")
        return self.proc.stdout.readline().decode().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._select.close()
        self._log.close()


@pytest.fixture
def metrics_process(tmp_path: Path, redis_url: str) -> Iterator[MetricsProcess]:
    served = MetricsProcess(tmp_path, redis_url)
    try:
        yield served
    finally:
        served.close()
