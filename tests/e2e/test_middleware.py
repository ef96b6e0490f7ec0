"""End to end: a user's middleware, listed in the config, sees every job's life in bin/geoq-worker.

The worker builds tests.support.middleware.Recorder from its config; the Recorder appends
each hook call to a file this process reads. The producer side (Client.from_config and
Client(middleware=...)) runs before_enqueue before the job is stored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import geoq
from geoq.records import decode
from geoq.broker import keys
from tests.metrics.conftest import get, sample
from tests.support.keyspace import assert_settled, places
from tests.support.middleware import Raising, Recorder, Stamp, after_runs, records
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, run_worker_once, write_config

H = "tests.support.handlers"
M = "tests.support.middleware"
FAST = {"base": "50ms", "max": "50ms", "jitter": "none"}
ROUTES = {
    "t.ok": {"handler": f"{H}:ok"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": FAST},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 1, "backoff": FAST},
    "t.refuse": {"handler": f"{H}:refuse"},
}
READY = keys.queue_keys("default").ready


def recorded(tmp_path: Path, redis_url: str, *before: Any, **sections: Any) -> tuple[Path, Path]:
    """A worker config whose middleware is `before`, then a Recorder; (config, the Recorder's file)."""
    hooks = tmp_path / "hooks.jsonl"
    middleware = [*before, {"handler": f"{M}:Recorder", "options": {"path": str(hooks)}}]
    return write_config(tmp_path / "w.yaml", redis_url, ROUTES, middleware=middleware, **sections), hooks


def states(client: geoq.Client, *jobs_: geoq.Job) -> list[str | None]:
    found = [client.status(j.id) for j in jobs_]
    return [s.state if s else None for s in found]


def runs_started(hooks: Path, job_id: str) -> int:
    return sum(1 for r in records(hooks, "before_run") if r["job"]["id"] == job_id)


# -- one after_run per delivery ----------------------------------------------------------------


def test_each_delivery_reaches_after_run_once_with_the_state_and_fields_of_its_end(
        redis_url, redis_client, ledger, tmp_path):
    config, hooks = recorded(tmp_path, redis_url, worker={"max_payload": "1kb"})
    client = geoq.Client(redis_url)
    ok = client.enqueue("t.ok", {"sleep": 0.05})
    flaky = client.enqueue("t.flaky", {"failures": 1})
    broken = client.enqueue("t.broken", {})
    refused = client.enqueue("t.refuse", {})
    unknown = client.enqueue("t.nobody", {})
    oversize = client.enqueue("t.ok", {"blob": "x" * 2000})   # over the worker's 1 KiB, under the client's 1 MiB
    every = (ok, flaky, broken, refused, unknown, oversize)
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: states(client, *every) == ["succeeded"] * 2 + ["dead"] * 4, timeout=30,
                   message="not every job ended")
        assert worker.stop() == 0, worker.log()

    assert len(records(hooks, "after_run")) == 8   # ok 1, flaky 2, broken 2, refused 1, unknown 1, oversize 1
    assert {r["pid"] for r in records(hooks)} == {worker.pid}
    (done,) = after_runs(hooks, ok.id)
    assert done["state"] == done["label"] == "succeeded" and done["ran"]
    assert done["result"] == {"id": ok.id, "attempt": 1} and done["duration"] >= 0.05
    assert done["error"] is done["traceback"] is done["reason"] is done["delay"] is None

    retried, recovered = after_runs(hooks, flaky.id)
    assert (retried["state"], retried["label"], retried["delay"]) == ("retry", "retried", 0.05)
    assert retried["error"] == "RuntimeError: planned failure 1" and retried["exception"] == "RuntimeError"
    assert retried["traceback"].startswith("Traceback") and ", in flaky" in retried["traceback"]
    assert retried["duration"] > 0 and retried["reason"] is None
    assert recovered["state"] == "succeeded" and recovered["result"] == {"attempt": 2}

    first, last = after_runs(hooks, broken.id)
    assert first["state"] == "retry"
    assert (last["state"], last["reason"], last["error"]) == ("dead", "max_retries", "RuntimeError: always broken")
    assert ", in broken" in last["traceback"] and last["ran"] and last["duration"] > 0 and last["delay"] is None

    (failed,) = after_runs(hooks, refused.id)
    assert (failed["state"], failed["reason"], failed["error"]) == ("dead", "fail", "Fail: refused on purpose")
    assert failed["exception"] == "Fail" and failed["ran"] and ", in refuse" in failed["traceback"]

    for job, reason, error in ((unknown, "unknown_type", "no route for job type 't.nobody'"),
                               (oversize, "oversize", "the limit is 1024")):
        (buried,) = after_runs(hooks, job.id)
        assert (buried["state"], buried["label"], buried["reason"]) == ("dead", "dead", reason)
        assert error in buried["error"] and not buried["ran"] and buried["duration"] == 0
        assert buried["traceback"] is None and buried["result"] is None
    assert [runs_started(hooks, j.id) for j in every] == [1, 2, 2, 1, 0, 0]

    dead = assert_settled(redis_client, ["default"]).dead["default"]
    assert sorted((d["id"], d["reason"]) for d in dead) == sorted(
        [(broken.id, "max_retries"), (refused.id, "fail"), (unknown.id, "unknown_type"), (oversize.id, "oversize")])
    assert ledger.succeeded() == {ok.id: 1, flaky.id: 1}


def test_a_run_cut_short_by_the_stop_is_interrupted_once_and_its_job_waits_at_the_head_of_its_queue(
        redis_url, redis_client, ledger, tmp_path):
    config, hooks = recorded(tmp_path, redis_url, worker={"shutdown_grace": "200ms"})
    client = geoq.Client(redis_url)
    slow = client.enqueue("t.ok", {"sleep": 60})
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: records(hooks, "before_run"), timeout=30, message="the slow job did not start")
        assert worker.stop() == 0, worker.log()

    assert [r["hook"] for r in records(hooks)] == ["worker_started", "before_run", "after_run", "worker_stopping"]
    (cut,) = after_runs(hooks, slow.id)
    assert (cut["state"], cut["label"], cut["ran"]) == ("interrupted", "interrupted", True)
    assert 0 < cut["duration"] < 30 and cut["error"] is cut["reason"] is cut["result"] is None
    assert records(hooks, "worker_stopping")[0]["in_flight"] == 0

    where = places(redis_client, ["default"])
    assert (where.ready, where.scheduled, where.processing) == ({"default": 1}, {"default": 0}, {"default": 0})
    assert where.dead == {"default": []}
    assert decode(redis_client.lindex(READY, 0), "default").id == slow.id
    assert (client.status(slow.id).state, client.status(slow.id).attempts) == ("queued", 0)   # the run did not count
    assert ledger.succeeded() == {}


def test_worker_started_and_worker_stopping_name_the_worker_its_queues_and_concurrency(
        redis_url, redis_client, ledger, tmp_path):
    config, hooks = recorded(tmp_path, redis_url, worker={"queues": ["critical", "default"], "concurrency": 7})
    client = geoq.Client(redis_url)
    job = client.enqueue("t.ok", {}, queue="critical")
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: states(client, job) == ["succeeded"], timeout=30)
        assert worker.stop() == 0, worker.log()

    started_line = next(line for line in worker.log().splitlines() if " started: queues " in line)
    worker_id = started_line.split("worker ", 1)[1].split(" started", 1)[0]
    assert started_line.endswith(f"worker {worker_id} started: queues critical,default, concurrency 7")
    seen = records(hooks)
    assert [r["hook"] for r in seen] == ["worker_started", "before_run", "after_run", "worker_stopping"]
    expected = {"id": worker_id, "queues": ["critical", "default"], "concurrency": 7}
    assert seen[0]["worker"] == seen[-1]["worker"] == expected
    assert_settled(redis_client, ["critical", "default"])
    assert ledger.succeeded() == {job.id: 1}


# -- before_run decides ------------------------------------------------------------------------


def test_before_run_raising_fail_dead_letters_the_job_and_raising_retry_retries_it(
        redis_url, redis_client, ledger, tmp_path):
    hooks = tmp_path / "hooks.jsonl"   # the Recorder first: it sees every before_run, the Gate's too
    gated = write_config(tmp_path / "gated.yaml", redis_url, ROUTES, middleware=[
        {"handler": f"{M}:Recorder", "options": {"path": str(hooks)}}, {"handler": f"{M}:Gate", "options": {}}])
    client = geoq.Client(redis_url)
    refused = client.enqueue("t.ok", {"gate": "fail"})
    later = client.enqueue("t.ok", {"gate": "retry"})
    plain = client.enqueue("t.ok", {})
    with WorkerProcess(gated, env=ledger.env) as worker:
        wait_until(lambda: states(client, refused, later, plain) == ["dead", "succeeded", "succeeded"], timeout=30)
        assert worker.stop() == 0, worker.log()

    (dead,) = after_runs(hooks, refused.id)
    assert (dead["state"], dead["reason"], dead["error"]) == ("dead", "fail", "Fail: refused by the gate")
    assert dead["ran"] and ", in before_run" in dead["traceback"]
    again, done = after_runs(hooks, later.id)
    assert (again["state"], again["delay"], again["exception"]) == ("retry", 0.05, "Retry")
    assert again["error"] == "Retry: the gate asks again later" and done["state"] == "succeeded"
    assert done["result"] == {"id": later.id, "attempt": 2}

    (buried,) = assert_settled(redis_client, ["default"]).dead["default"]
    assert (buried["id"], buried["reason"]) == (refused.id, "fail")
    assert ledger.succeeded() == {later.id: 1, plain.id: 1}   # the refused job's handler never ran


# -- a broken middleware -----------------------------------------------------------------------


def test_a_middleware_raising_in_every_hook_loses_no_job_and_is_counted_by_hook_and_logged_by_name(
        redis_url, redis_client, ledger, tmp_path):
    port = free_port()
    config, hooks = recorded(tmp_path, redis_url, f"{M}:Raising", metrics={"listen": f"127.0.0.1:{port}"})
    client = geoq.Client(redis_url)
    first = client.enqueue_many([("t.ok", {"n": i}) for i in range(50)])
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: ledger.count() == 50, timeout=30, message="the first jobs did not all succeed")
        more = client.enqueue_many([("t.ok", {"n": i}) for i in range(50, 60)])
        wait_until(lambda: ledger.count() == 60, timeout=30, message="the worker stopped taking jobs")
        wait_until(lambda: len(records(hooks, "after_run")) == 60, timeout=10)
        scraped = wait_until(lambda: get(port, "/metrics").body, timeout=10, ignore=(OSError,))
        assert worker.proc.poll() is None
        assert worker.stop() == 0, worker.log()

    errors = {hook: sample(scraped, "geoq_middleware_errors_total", hook=hook)
              for hook in ("worker_started", "before_run", "after_run", "worker_stopping", "before_enqueue")}
    assert errors == {"worker_started": 1, "before_run": 60, "after_run": 60, "worker_stopping": 0,
                      "before_enqueue": 0}
    log = worker.log()
    for hook in ("worker_started", "before_run", "after_run", "worker_stopping"):
        # logged once (then at most once a minute), with what it raised
        assert log.count(f"middleware Raising.{hook} raised") == 1, log
        assert f"RuntimeError: broken {hook}" in log
    assert [o["state"] for r in records(hooks, "after_run") for o in [r["outcome"]]] == ["succeeded"] * 60
    assert [r["hook"] for r in records(hooks)][-1] == "worker_stopping"   # the next middleware still runs
    assert_settled(redis_client, ["default"])
    ledger.assert_each_ran([j.id for j in first + more], exactly_once=True)


# -- config errors -----------------------------------------------------------------------------

BAD_MIDDLEWARE = {
    "unknown module": ("tests.support.no_such_middleware:Recorder",
                       "middleware[0]: cannot import module 'tests.support.no_such_middleware'"),
    "unknown name": (f"{M}:NoSuchMiddleware", f"middleware[0]: module '{M}' has no attribute 'NoSuchMiddleware'"),
    "not a middleware": (f"{H}:ok", "middleware[0]: expected a geoq.Middleware subclass or instance"),
    "options it rejects": ({"handler": f"{M}:Recorder", "options": {"colour": "red"}},
                           f"middleware[0]: {M}:Recorder rejected its options: TypeError"),
    "an entry with other keys": ({"handler": f"{M}:Recorder", "option": {}},
                                 "expected a list of pkg.module:attr or {handler: "
                                 "pkg.module:attr, options: {...}}, got entry 0 with keys handler, option"),
    "an entry that is a number": (7, "expected a string, got entry 0: a value of type int"),
}


@pytest.mark.parametrize("name", list(BAD_MIDDLEWARE))
def test_a_bad_middleware_entry_stops_the_worker_with_one_line_and_exit_2_and_loses_no_job(
        name, redis_url, redis_client, tmp_path):
    entry, expected = BAD_MIDDLEWARE[name]
    config = write_config(tmp_path / "bad.yaml", redis_url, ROUTES, middleware=[entry])
    client = geoq.Client(redis_url)
    job = client.enqueue("t.ok", {})
    done = run_worker_once(config)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"geoq-worker: {config}") and expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""
    where = places(redis_client, ["default"])
    assert (where.total("ready"), where.total("processing"), where.total("dead")) == (1, 0, 0)
    assert client.status(job.id).state == "queued"


def test_a_bad_middleware_entry_stops_client_from_config_with_the_same_error(redis_url, redis_client, tmp_path):
    config = write_config(tmp_path / "bad.yaml", redis_url, ROUTES, middleware=[f"{M}:NoSuchMiddleware"])
    with pytest.raises(geoq.ConfigError, match=r"middleware\[0\]: module .* has no attribute 'NoSuchMiddleware'"):
        geoq.Client.from_config(str(config))
    assert redis_client.dbsize() == 0


# -- the producer side -------------------------------------------------------------------------


def test_client_from_config_runs_the_configs_before_enqueue_before_the_job_is_stored(
        redis_url, redis_client, ledger, tmp_path):
    hooks = tmp_path / "hooks.jsonl"
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, middleware=[
        {"handler": f"{M}:Stamp", "options": {"tag": "acme", "prefix": "acme-"}},
        {"handler": f"{M}:Recorder", "options": {"path": str(hooks)}}])
    client = geoq.Client.from_config(str(config))
    job = client.enqueue("t.ok", {"n": 1})
    assert job.id.startswith("default:acme-") and job.payload == {"n": 1, "stamp": "acme"}
    stored = decode(redis_client.lindex(READY, 0), "default")
    assert (stored.id, stored.payload) == (job.id, job.payload)
    (enqueued,) = records(hooks)
    assert enqueued["hook"] == "before_enqueue" and enqueued["job"]["id"] == job.id   # after the Stamp

    with WorkerProcess(config, env=ledger.env) as worker:   # the worker runs no before_enqueue
        wait_until(lambda: states(client, job) == ["succeeded"], timeout=30)
        assert worker.stop() == 0, worker.log()
    assert [r["hook"] for r in records(hooks)] == [
        "before_enqueue", "worker_started", "before_run", "after_run", "worker_stopping"]
    (ran,) = after_runs(hooks, job.id)
    assert records(hooks, "before_run")[0]["job"]["payload"] == {"n": 1, "stamp": "acme"}
    assert ran["result"] == {"id": job.id, "attempt": 1}
    assert_settled(redis_client, ["default"])
    assert ledger.succeeded() == {job.id: 1}


def test_client_middleware_changes_every_job_of_enqueue_many_and_a_raising_one_changes_none(
        redis_url, redis_client, tmp_path, caplog):
    hooks = tmp_path / "hooks.jsonl"
    caplog.set_level(logging.ERROR, logger="geoq.middleware")
    with geoq.Client(redis_url, middleware=[Raising(), Stamp("t1", "p-"), Recorder(str(hooks))]) as client:
        made = client.enqueue_many([("t.ok", {"n": i}) for i in range(3)])
        explicit = client.enqueue("t.ok", {"n": 3}, id="mine")
        assert client.status(explicit.id).state == "queued"
    assert [j.payload for j in made] == [{"n": i, "stamp": "t1"} for i in range(3)]
    assert all(j.id.startswith("default:p-") for j in made) and explicit.id == "p-mine"
    stored = [decode(e, "default") for e in redis_client.lrange(READY, 0, -1)]
    assert [(j.id, j.payload) for j in stored] == [(j.id, j.payload) for j in made + [explicit]]
    assert [r["job"]["id"] for r in records(hooks)] == [j.id for j in made + [explicit]]
    assert [r.getMessage().split(" raised")[0] for r in caplog.records] == ["middleware Raising.before_enqueue"]

    with geoq.Client(redis_url, middleware=[Raising()]) as client:
        plain = client.enqueue("t.ok", {"n": 4})
        assert plain.payload == {"n": 4} and client.status(plain.id).state == "queued"
    where = places(redis_client, ["default"])
    assert (where.total("ready"), where.total("scheduled"), where.total("dead")) == (5, 0, 0)
