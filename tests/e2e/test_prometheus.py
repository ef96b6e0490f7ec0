"""End to end: bin/geoq-worker serving metrics, scraped by our parser and by a real Prometheus server."""

from __future__ import annotations

import collections
import http.client
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import geoq
from tests.metrics.conftest import get, sample
from tests.support.handlers import ledger_counts
from tests.support.keyspace import places
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.handlers"
FAST = {"base": "10ms", "max": "50ms"}
ROUTES = {
    "t.ok": {"handler": f"{H}:ok"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": FAST},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 1, "backoff": FAST},
    "t.parked": {"handler": f"{H}:ok", "queue": "parked"},   # a queue no worker here serves
}




def worker_config(tmp_path: Path, redis_url: str, port: int) -> Path:
    return write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 500, "queues": ["default"]},
                        metrics={"listen": f"127.0.0.1:{port}"})


def scrape(port: int) -> str:
    reply = get(port, "/metrics")
    assert reply.status == 200, reply
    return reply.body


def outcome_totals(text: str) -> dict[str, float]:
    totals: dict[str, float] = collections.Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "geoq_jobs_total":
                totals[s.labels["outcome"]] += s.value
    return dict(totals)


def test_scraped_counters_equal_the_ledger_and_depths_equal_redis(redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    port = free_port()
    client = geoq.Client(redis_url)
    kinds = (("t.ok", {}), ("t.ok", {"sleep": 0.01}), ("t.flaky", {"failures": 1}), ("t.broken", {}))
    items = [kinds[i % 4] for i in range(5000)]
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for (kind, _), job in zip(items, client.enqueue_many(items)):
        ids[kind].add(job.id)
    client.enqueue_many([("t.ok", {"later": i}, {"delay": 3600}) for i in range(5)])
    client.enqueue_many([("t.parked", {"i": i}, {"queue": "parked"}) for i in range(7)])

    with WorkerProcess(worker_config(tmp_path, redis_url, port), env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        wait_until(lambda: get(port, "/readyz").status == 200, timeout=30, ignore=(OSError,),
                   message="the worker's metrics endpoint did not come up")
        wait_until(lambda: len(places(redis_client, ["default"]).dead["default"]) == 1250, timeout=120,
                   message="the broken jobs did not all reach the dead list")
        wait_until(lambda: sum(ledger_counts(ledger_client, "succeeded").values()) == 3750, timeout=60)
        # A run is counted just after its handler returns: wait for the last few to be counted.
        wait_until(lambda: outcome_totals(scrape(port)) == {"succeeded": 3750, "retried": 2500, "dead": 1250, "cancelled": 0},
                   timeout=10)
        text = scrape(port)
        seen = places(redis_client, ["default", "parked"])
        assert worker.stop() == 0, worker.log()

    succeeded, failed = ledger_counts(ledger_client, "succeeded"), ledger_counts(ledger_client, "failed")

    def ran(kind: str, counter: collections.Counter[str]) -> int:
        return sum(n for job_id, n in counter.items() if job_id in ids[kind])

    def counted(kind: str, outcome: str) -> float | None:
        return sample(text, "geoq_jobs_total", type=kind, queue="default", outcome=outcome)

    dead = len(seen.dead["default"])
    assert counted("t.ok", "succeeded") == ran("t.ok", succeeded) == 2500
    assert counted("t.flaky", "succeeded") == ran("t.flaky", succeeded) == 1250
    assert counted("t.flaky", "retried") == ran("t.flaky", failed) == 1250
    assert counted("t.broken", "retried") == ran("t.broken", failed) - dead == 1250
    assert counted("t.broken", "dead") == dead == 1250
    assert counted("t.ok", "dead") == counted("t.ok", "retried") == counted("t.flaky", "dead") == 0
    assert sample(text, "geoq_job_duration_seconds_count", type="t.ok", queue="default") == 2500
    assert sample(text, "geoq_job_wait_seconds_count", queue="default") == 5000 + 2500  # every run that started
    assert sample(text, "geoq_fetch_batch_size_sum") == 5000 + 2500  # first runs and retries

    def depth(queue: str, state: str) -> float | None:
        return sample(text, "geoq_queue_depth", queue=queue, state=state)

    assert depth("default", "scheduled") == redis_client.zcard("geoq:{default}:scheduled") == 5
    assert depth("default", "dead") == redis_client.zcard("geoq:{default}:dead") == 1250
    assert depth("default", "ready") == redis_client.llen("geoq:{default}:ready") == 0
    assert depth("default", "processing") == seen.processing["default"] == 0
    assert depth("parked", "ready") == redis_client.llen("geoq:{parked}:ready") == 7
    after = places(redis_client, ["default", "parked"])
    assert (after.ready, after.scheduled, after.processing) == ({"default": 0, "parked": 7},
                                                                {"default": 5, "parked": 0},
                                                                {"default": 0, "parked": 0})
    assert len(after.dead["default"]) == 1250 and after.dead["parked"] == []


class Prometheus:
    """A real Prometheus server scraping one target every second, with its data in a temp dir."""

    def __init__(self, tmp: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not on PATH: bin/test installs Debian's prometheus package"
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "geoq", "scrape_interval": "1s", "scrape_timeout": "1s",
                                "static_configs": [{"targets": [target]}]}]}))
        self.log_path = tmp / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=tmp)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log()
        return get(self.port, "/-/ready", timeout=2).status == 200

    def query(self, promql: str) -> dict[str, float]:
        """An instant query: the value of each series, keyed by its labels as JSON."""
        reply = get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert reply.status == 200, reply
        body: dict[str, Any] = json.loads(reply.body)
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in body["data"]["result"]}

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        server = Prometheus(tmp_path, target)
        started.append(server)
        wait_until(server.ready, timeout=30, ignore=(OSError, http.client.HTTPException),
                   message="prometheus did not become ready")
        return server

    yield start
    for server in started:
        server.close()


def test_prometheus_scrapes_the_worker_and_answers_geoq_jobs_total(
        redis_url, redis_client, ledger, tmp_path, prometheus_for):
    ledger_url, _ = ledger
    port = free_port()
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.ok", {}) for _ in range(30)] + [("t.broken", {}) for _ in range(4)])
    with WorkerProcess(worker_config(tmp_path, redis_url, port), env={"GEOQ_TEST_LEDGER": ledger_url}) as worker:
        wait_until(lambda: len(places(redis_client, ["default"]).dead["default"]) == 4, timeout=30)
        prometheus = prometheus_for(f"127.0.0.1:{port}")
        expected = {"succeeded": 30.0, "retried": 4.0, "dead": 4.0, "cancelled": 0.0}

        def totals() -> dict[str, float]:
            found = prometheus.query('sum by (outcome) (geoq_jobs_total{job="geoq", queue="default"})')
            return {json.loads(k)["outcome"]: v for k, v in found.items()}

        wait_until(lambda: totals() == expected, timeout=30, interval=0.2,
                   message=f"Prometheus did not report {expected}; log:\n{prometheus.log()}")
        assert prometheus.query('geoq_queue_depth{queue="default", state="dead"}') != {}
        assert list(prometheus.query('geoq_queue_depth{queue="default", state="dead"}').values()) == [4.0]
        assert list(prometheus.query('up{job="geoq"}').values()) == [1.0]
        assert worker.stop() == 0, worker.log()
    after = places(redis_client, ["default"])
    assert (after.ready["default"], after.scheduled["default"], after.processing["default"]) == (0, 0, 0)
    assert len(after.dead["default"]) == 4
