"""A patched gevent process serving a worker's metrics endpoint, driven line by line on stdin.

    python tests/metrics/serve_metrics.py CONFIG

prints "ready PORT" once /metrics is served, then answers each command with "ok":

    outcome TYPE QUEUE NAME SECONDS    Metrics.after_run of a run (NAME: Succeeded | RetryAt | Dead)
    doa QUEUE TYPE|-                   Metrics.after_run of a job buried as fetched (never ran)
    batch N / error OP                 the fetched and redis_error hooks
    block SECONDS                      a greenlet that holds the hub without yielding
"""

from gevent import monkey; monkey.patch_all()  # noqa: E702,I001 -- first, as in bin/geoq-worker

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gevent  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402

from geoq import logs  # noqa: E402
from geoq.broker.broker import Broker  # noqa: E402
from geoq.broker.connection import connect  # noqa: E402
from geoq.config import load_config  # noqa: E402
from geoq.job import Job  # noqa: E402
from geoq.metrics import Metrics, install_hubwatch, start_metrics  # noqa: E402
from geoq.outcome import DEAD, RETRY, SUCCEEDED, Outcome  # noqa: E402


def spin_without_yielding(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def handle(metrics: Metrics, words: list[str]) -> None:
    if words[0] == "outcome":
        job = Job(id="j1", type=words[1], queue=words[2], payload=None, attempt=1)
        state = {"Succeeded": SUCCEEDED, "RetryAt": RETRY, "Dead": DEAD}[words[3]]
        metrics.after_run(job, Outcome(state, duration=float(words[4]), reason="fail" if state == DEAD else None))
    elif words[0] == "doa":
        job = Job(id="j1", type="?" if words[2] == "-" else words[2], queue=words[1], payload=None)
        metrics.after_run(job, Outcome(DEAD, "not a job", reason="not_a_job"))
    elif words[0] == "batch":
        metrics.fetched(int(words[1]))
    elif words[0] == "error":
        metrics.redis_error(words[1])
    elif words[0] == "block":
        gevent.spawn(spin_without_yielding, float(words[1])).join()
        gevent.sleep(0.05)  # the hub's turn: the stall is counted and logged there
    else:
        raise ValueError(f"unknown command {words!r}")


def main(path: str) -> None:
    config = load_config(path)
    logs.configure(config.logging)
    metrics = Metrics.from_config(config, in_flight=lambda: 7)
    broker = Broker(connect(config.redis, max_connections=8, name="geoq-metrics-test"))
    server = start_metrics(config, broker, metrics)
    assert server is not None
    install_hubwatch(metrics, threshold=0.1)
    print("ready", config.metrics.port, flush=True)
    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for line in stdin:
        handle(metrics, line.decode().split())
        print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
