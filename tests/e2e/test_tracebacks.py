"""End to end: a failed run's traceback reaches status(), `geoq dead show`, `geoq job` and the worker's log."""

from __future__ import annotations

import json

import geoq
from geoq import tracebacks
from tests.admin.helpers import run_geoq
from tests.support.keyspace import places
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.handlers"
FAST = {"base": "10ms", "max": "10ms", "jitter": "none"}
ROUTES = {
    "t.nested": {"handler": f"{H}:nested", "max_retries": 2, "backoff": FAST},
    "t.waiting": {"handler": f"{H}:nested", "max_retries": 1, "backoff": {"base": "1h", "max": "1h", "jitter": "none"}},
    "t.deep": {"handler": f"{H}:deep", "max_retries": 0},
    "t.slow": {"handler": f"{H}:ok", "timeout": "200ms", "max_retries": 0},
    "t.flaky": {"handler": f"{H}:flaky", "max_retries": 2, "backoff": FAST},
}
SECRET = "hunter2-secret-token"
HEADER = "Traceback (most recent call last):"
NESTED = "ValueError: token rejected by the nested check"
DEAD_LIST_KEYS = {"id", "type", "queue", "reason", "error", "attempts", "died_at"}


def geoq_cli(redis_url: str, *args: str) -> str:
    done = run_geoq("--redis-url", redis_url, *args)
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    return done.stdout


def assert_nested_traceback(text: str | None) -> None:
    """The handler's frames and its exception, none of the worker's frames, no payload value."""
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == HEADER and lines[-1] == NESTED
    assert ", in nested" in lines[1] and any(", in check_token" in line for line in lines)
    assert "geoq/worker" not in text and SECRET not in text


def test_a_failed_runs_traceback_is_kept_for_a_waiting_retry_and_a_dead_job_and_logged_once_at_death(
        redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES)
    client = geoq.Client(redis_url)
    with WorkerProcess(config, env=ledger.env) as worker:
        nested = client.enqueue("t.nested", {"token": SECRET})
        waiting = client.enqueue("t.waiting", {"token": SECRET})
        deep = client.enqueue("t.deep", {"depth": 400})
        slow = client.enqueue("t.slow", {"sleep": 30})
        flaky = client.enqueue("t.flaky", {"failures": 1})
        for job in (nested, deep, slow):
            wait_until(lambda: client.status(job.id).state == "dead", timeout=30, message=f"{job.type} did not die")
        wait_until(lambda: client.status(waiting.id).state == "scheduled", timeout=30)
        wait_until(lambda: client.status(flaky.id).state == "succeeded", timeout=30)
        assert worker.stop() == 0
    log = worker.log()

    dead = client.status(nested.id)
    assert (dead.attempts, dead.reason, ledger.ids("failed")[nested.id]) == (3, "max_retries", 3)
    assert_nested_traceback(dead.traceback)
    retrying = client.status(waiting.id)
    assert (retrying.attempts, retrying.last_error) == (1, NESTED)
    assert_nested_traceback(retrying.traceback)
    assert client.status(flaky.id).traceback is None

    bounded = client.status(deep.id).traceback
    assert len(bounded.encode()) <= tracebacks.LIMIT and "outer frames cut" in bounded
    assert bounded.splitlines()[-1] == "RuntimeError: hit the bottom of a deep recursion"
    timed_out = client.status(slow.id).traceback.splitlines()
    assert ", in ok" in timed_out[1] and timed_out[-1].startswith("gevent.timeout.Timeout")

    for job in (nested, deep, slow):
        shown = json.loads(geoq_cli(redis_url, "dead", "show", job.id, "--json"))
        assert shown["traceback"] == client.status(job.id).traceback
        assert json.loads(geoq_cli(redis_url, "job", job.id, "--json"))["traceback"] == shown["traceback"]
    assert json.loads(geoq_cli(redis_url, "job", waiting.id, "--json"))["traceback"] == retrying.traceback
    assert json.loads(geoq_cli(redis_url, "job", flaky.id, "--json"))["traceback"] is None
    listed = json.loads(geoq_cli(redis_url, "dead", "list", "--json"))
    assert {d["id"] for d in listed} == {nested.id, deep.id, slow.id}
    assert all(set(d) == DEAD_LIST_KEYS for d in listed)
    for text in (geoq_cli(redis_url, "dead", "show", nested.id), geoq_cli(redis_url, "job", waiting.id)):
        shown = text[text.index("traceback:\n"):].splitlines()
        assert shown[1] == f"  {HEADER}" and f"  {NESTED}" in shown

    lines = log.splitlines()
    assert SECRET not in log and log.count(HEADER) == 3
    for job, reason in ((nested, "max_retries"), (deep, "max_retries"), (slow, "max_retries")):
        (at,) = [n for n, line in enumerate(lines) if f"job {job.id} " in line and " dead " in line]
        assert " ERROR " in lines[at] and f"{job.type} queue=default" in lines[at] and f"({reason})" in lines[at]
        assert lines[at + 1] == HEADER

    where = places(redis_client, ["default"])
    assert (where.ready, where.processing) == ({"default": 0}, {"default": 0})
    assert where.scheduled == {"default": 1} and where.live_states == {"default": 1}  # t.waiting, for an hour
    assert {d["id"] for d in where.dead["default"]} == {nested.id, deep.id, slow.id}
    assert client.status(flaky.id).state == "succeeded" and client.status(waiting.id).state == "scheduled"
