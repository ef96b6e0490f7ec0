"""Bad config files stop the worker with one line and exit 2; bad jobs are dead-lettered, never fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WORKER, WorkerProcess, run_worker_once, write_config

GOOD_ROUTE = "routes:\n  t.ok:\n    handler: geoq.handlers.builtin:noop\n"

BAD_CONFIGS = {
    "yaml syntax": ("worker:\n  concurrency: [1, 2\n", "YAML syntax error"),
    "unknown key": ("worker:\n  concurency: 5\n" + GOOD_ROUTE, "worker.concurency"),
    "wrong type": ("worker:\n  concurrency: many\n" + GOOD_ROUTE, "worker.concurrency"),
    "bad duration": ("worker:\n  shutdown_grace: 10 parsecs\n" + GOOD_ROUTE, "worker.shutdown_grace"),
    "missing handler module": ("routes:\n  t.x:\n    handler: no_such_module_here:run\n", "no_such_module_here"),
    "missing handler attribute": ("routes:\n  t.x:\n    handler: geoq.handlers.builtin:nope\n", "nope"),
    "bad redis url": ("redis:\n  url: http://127.0.0.1:6379/0\n" + GOOD_ROUTE, "redis.url"),
    "zero concurrency": ("worker:\n  concurrency: 0\n" + GOOD_ROUTE, "worker.concurrency"),
    "unset variable": ("redis:\n  password: ${GEOQ_TEST_SURELY_UNSET}\n" + GOOD_ROUTE, "GEOQ_TEST_SURELY_UNSET"),
    "handler not module:attr": ("routes:\n  t.x:\n    handler: just_a_name\n", "routes.t.x.handler"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_a_bad_config_exits_2_with_one_line_naming_the_problem(name, tmp_path):
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = run_worker_once(path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_missing_config_file_exits_2_with_one_line(tmp_path):
    done = run_worker_once(tmp_path / "absent.yaml")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "No such file" in done.stderr


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--queues", "mail,{mail}"], ["--queues", "a b"],
                                  ["--queues", "mail,mail"], ["--processes", "0"]])
def test_a_bad_command_line_override_exits_2_with_one_line(tmp_path, redis_url, args):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.ok": {"handler": "geoq.handlers.builtin:noop"}})
    done = run_worker_once(config, args)
    assert done.returncode == 2 and done.stderr.startswith(f"geoq-worker: {args[0]}: expected"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("args", [[], ["CONFIG", "--concurrency", "many"], ["CONFIG", "--no-such-option"]])
def test_a_bad_command_line_exits_2_with_one_line_and_no_usage_block(tmp_path, redis_url, args):
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.ok": {"handler": "geoq.handlers.builtin:noop"}})
    argv = [str(config) if a == "CONFIG" else a for a in args]
    done = subprocess.run([sys.executable, str(WORKER), *argv], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("geoq-worker: "), done.stderr


def test_the_client_takes_every_queue_name_the_config_takes(redis_url, redis_client):
    long_name = "q" * 100
    with geoq.Client(redis_url) as client:
        job = client.enqueue("t.ok", {}, queue=long_name)
        with pytest.raises(geoq.InvalidJob, match="queue name"):
            client.enqueue("t.ok", {}, queue="-starts-with-a-dash")
        with pytest.raises(geoq.InvalidJob, match="queue name"):
            client.enqueue("t.ok", {}, queue="q" * 101)
        assert client.status(job.id, queue=long_name).state == "queued"
    assert redis_client.llen(f"geoq:{{{long_name}}}:ready") == 1


def test_bad_jobs_in_a_ready_list_are_dead_lettered_with_reasons_while_others_run(
        redis_url, redis_client, tmp_path):
    routes = {"t.ok": {"handler": "geoq.handlers.builtin:noop"}}
    config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"max_payload": "2kb"})
    client = geoq.Client(redis_url)
    good = client.enqueue_many([("t.ok", {"n": i}) for i in range(50)])
    ready = "geoq:{default}:ready"
    oversize = json.dumps({"i": "default:big", "t": "t.ok", "q": "default", "p": "x" * 4000, "a": 0, "e": 0})
    redis_client.rpush(ready, b"\xff\xfe not utf-8", b'{"hello": "world"}', b"[1,2,3]",
                       b'{"i":"default:who","t":"t.nobody","p":{},"a":0,"e":0}', oversize.encode())
    good += client.enqueue_many([("t.ok", {"n": i}) for i in range(50)])
    with WorkerProcess(config) as worker:
        wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in good), timeout=30)
        wait_until(lambda: places(redis_client, ["default"]).total("dead") == 5, timeout=10)
        assert worker.stop() == 0, worker.log()
    dead = assert_settled(redis_client, ["default"]).dead["default"]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == ["not_a_job", "not_a_job", "oversize", "undecodable", "unknown_type"]
    by_reason = {d["reason"]: d for d in dead}
    assert by_reason["undecodable"]["envelope_hex"] == (b"\xff\xfe not utf-8").hex()
    assert by_reason["unknown_type"]["id"] == "default:who" and "t.nobody" in by_reason["unknown_type"]["error"]
    assert client.status("default:who").state == "dead"


def test_envelopes_with_optional_fields_of_the_wrong_type_are_dead_lettered_and_the_worker_goes_on(
        redis_url, redis_client, tmp_path):
    """A foreign envelope whose expiry was a string stopped the worker's fetch loop (the expiry is
    compared when the job is fetched): no job ran after it. Each such envelope is now not a job."""
    routes = {"t.ok": {"handler": "geoq.handlers.builtin:noop"}}
    config = write_config(tmp_path / "w.yaml", redis_url, routes)
    client = geoq.Client(redis_url)
    bad = {"default:x": '"x":"soon"', "default:o": '"o":"5s"', "default:neg": '"o":-5', "default:u": '"u":"later"',
           "default:m": '"m":"3"'}
    for job_id, field in bad.items():
        redis_client.hset("geoq:{default}:state", job_id, "q|0||")   # as enqueue.lua stores a job
        redis_client.rpush("geoq:{default}:ready", f'{{"i":"{job_id}","a":0,"t":"t.ok","e":0,{field},"p":{{}}}}')
    good = client.enqueue_many([("t.ok", {"n": i}) for i in range(50)])
    with WorkerProcess(config) as worker:
        wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in good), timeout=30)
        wait_until(lambda: places(redis_client, ["default"]).total("dead") == len(bad), timeout=10)
        assert worker.stop() == 0, worker.log()
    dead = assert_settled(redis_client, ["default"]).dead["default"]
    assert sorted((d["id"], d["reason"]) for d in dead) == sorted((i, "not_a_job") for i in bad)
    assert all(client.status(i).state == "dead" for i in bad)


def test_enqueue_refuses_an_oversize_payload_and_writes_nothing(redis_url, redis_client, tmp_path):
    client = geoq.Client(redis_url)
    with pytest.raises(geoq.PayloadTooLarge):
        client.enqueue("t.ok", {"blob": "x" * (1024 * 1024 + 1)})
    with pytest.raises(geoq.PayloadTooLarge):
        client.enqueue_many([("t.ok", {}), ("t.ok", {"blob": "x" * (1024 * 1024 + 1)})])
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("bad", [("t.ok",), "t.ok", ("t.ok", {}, {"colour": "red"}), ("t.ok", {}, "high"),
                                 ("t.ok", {}, {}, {})])
def test_enqueue_many_refuses_a_malformed_item_with_invalid_job_and_writes_nothing(redis_url, redis_client, bad):
    with geoq.Client(redis_url) as client:
        with pytest.raises(geoq.InvalidJob, match="enqueue_many item 1"):
            client.enqueue_many([("t.ok", {}), bad])
    assert redis_client.dbsize() == 0
