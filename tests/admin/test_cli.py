"""bin/geoq as a subprocess: stats, enqueue, job, purge, and every kind of bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import geoq
from geoq import records
from geoq.broker import keys
from tests.support.ports import free_port
from tests.support.worker_process import write_config

from tests.admin.helpers import GEOQ, cli_env, run_geoq


def test_stats_json_counts_every_place_of_every_queue_as_redis_holds_it(cli_json, redis_url, redis_client, bury):
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.a", {"n": i}) for i in range(3)])
    client.enqueue("t.a", {}, delay=3600)
    client.enqueue("t.b", {}, queue="bulk")
    bury()
    bury()
    held = client.enqueue("t.a", {}, queue="elsewhere")  # a queue no config names, held by a worker
    elsewhere = keys.queue_keys("elsewhere")
    redis_client.lmove(elsewhere.ready, elsewhere.processing("w1"), "LEFT", "RIGHT")
    redis_client.rpush(keys.queue_keys("default").processing("w2"), b'{"i":"x"}', b'{"i":"y"}')
    redis_client.set(keys.queue_keys("default").dead_trimmed, 7)

    out = cli_json("stats")

    assert set(out) >= {"queues", "workers"} and out["workers"] == []
    assert list(out["queues"])[0] == "default"  # the config's queues first
    for name in ("default", "bulk", "elsewhere"):
        k = keys.queue_keys(name)
        expected = {"ready": redis_client.llen(k.ready), "scheduled": redis_client.zcard(k.scheduled),
                    "processing": sum(redis_client.llen(p) for p in redis_client.scan_iter(match=k.processing("*"))),
                    "dead": redis_client.zcard(k.dead)}
        assert {f: out["queues"][name][f] for f in expected} == expected
    assert out["queues"]["default"] == {"ready": 3, "scheduled": 1, "processing": 2, "dead": 2, "dead_trimmed": 7,
                                        "paused": False}
    assert out["queues"]["elsewhere"]["processing"] == 1 and held.queue == "elsewhere"


def test_stats_prints_an_aligned_table_and_says_when_the_dead_list_was_trimmed(cli, redis_url, redis_client):
    geoq.Client(redis_url).enqueue_many([("t.a", {}) for _ in range(12)])
    redis_client.set(keys.queue_keys("default").dead_trimmed, 5)
    done = cli("stats")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "READY", "SCHEDULED", "PROCESSING", "DEAD"]
    assert lines[1].split() == ["default", "12", "0", "0", "0"]
    assert lines[0].index("READY") + len("READY") == lines[1].index("12") + 2  # numbers right-aligned
    assert "0 workers alive" in lines
    assert any("dead list of default" in line and "5 oldest dead jobs were dropped" in line for line in lines)


def _ctrl_c_acts() -> None:
    """In the child before exec: SIGINT's default action, as a shell at a terminal gives its commands.

    A run started in the background by a shell without job control (`cmd &`) ignores SIGINT, and
    an ignored signal stays ignored across fork and exec: stats --watch would then, rightly, not
    hear the Ctrl-C this test sends it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_stats_watch_refreshes_until_interrupted_and_then_exits_0(redis_url):
    proc = subprocess.Popen([sys.executable, str(GEOQ), "--redis-url", redis_url, "stats", "--watch", "0.05",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            preexec_fn=_ctrl_c_acts)
    try:
        refreshes = [json.loads(proc.stdout.readline()) for _ in range(3)]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert all("default" in r["queues"] for r in refreshes)
    assert proc.returncode == 0 and err == ""


def test_enqueue_stores_the_job_and_prints_its_id(cli, cli_json, redis_client, tmp_path):
    done = cli("enqueue", "t.mail", "--payload", '{"to": "a@example.com", "n": 1.5, "tags": []}')
    assert done.returncode == 0 and done.stderr == ""
    job_id = done.stdout.strip()
    (envelope,) = redis_client.lrange(keys.queue_keys("default").ready, 0, -1)
    job = records.decode(envelope, "default")
    assert (job.id, job.type, job.payload) == (job_id, "t.mail", {"to": "a@example.com", "n": 1.5, "tags": []})

    payload_file = tmp_path / "p.json"
    payload_file.write_text('{"from": "file"}')
    out = cli_json("enqueue", "t.file", "--payload", f"@{payload_file}", "--queue", "bulk", "--priority", "high")
    assert set(out) >= {"id", "type", "queue"} and (out["type"], out["queue"]) == ("t.file", "bulk")
    head = records.decode(redis_client.lindex(keys.queue_keys("bulk").ready, 0), "bulk")
    assert (head.id, head.payload) == (out["id"], {"from": "file"})

    later = cli_json("enqueue", "t.later", "--delay", "30s")
    (member, due), = redis_client.zrange(keys.queue_keys("default").scheduled, 0, -1, withscores=True)
    assert records.peek_id(member) == later["id"] and due > redis_client.time()[0] + 25


def test_enqueue_reads_the_payload_from_standard_input_with_at_dash(redis_url, redis_client):
    done = subprocess.run([sys.executable, str(GEOQ), "--redis-url", redis_url, "enqueue", "t.in", "--payload", "@-"],
                          input='{"piped": true}', capture_output=True, text=True, env=cli_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    envelope = redis_client.lindex(keys.queue_keys("default").ready, 0)
    assert records.decode(envelope, "default").payload == {"piped": True}


def test_job_reports_a_queued_and_a_scheduled_job_as_the_state_hash_holds_them(cli_json, redis_url):
    client = geoq.Client(redis_url)
    queued = client.enqueue("t.a", {"x": 1}, queue="bulk")
    scheduled = client.enqueue("t.b", {}, delay=600)
    out = cli_json("job", queued.id)
    assert {k: out[k] for k in ("id", "type", "queue", "state", "attempts", "last_error", "result")} == {
        "id": queued.id, "type": "t.a", "queue": "bulk", "state": "queued", "attempts": 0, "last_error": None,
        "result": None}
    out = cli_json("job", scheduled.id)
    assert (out["state"], out["type"], out["due_at"] > 0) == ("scheduled", "t.b", True)


def test_job_finds_a_dead_job_by_its_dead_record_when_no_status_is_kept(cli, cli_json, bury):
    job = bury("default", "t.dead", runs=3)
    out = cli_json("job", job.id)
    assert (out["state"], out["type"], out["attempts"], out["last_error"]) == ("dead", "t.dead", 3, "RuntimeError: boom 3")
    assert out["reason"] == "max_retries" and len(out["history"]) == 3
    text = cli("job", job.id).stdout
    assert "dead (max_retries)" in text and "RuntimeError: boom 1" in text


def test_purge_deletes_the_waiting_jobs_and_their_states_but_nothing_running_or_dead(
        cli, cli_json, redis_url, redis_client, bury):
    client = geoq.Client(redis_url)
    client.enqueue_many([("t.a", {}) for _ in range(2500)])
    client.enqueue_many([("t.a", {}, {"delay": 600}) for _ in range(3)])
    k = keys.queue_keys("default")
    running = redis_client.lmove(k.ready, k.processing("w1"), "LEFT", "RIGHT")
    bury()

    out = cli_json("purge", "default", "--yes")

    assert out == {"queue": "default", "ready": 2499, "scheduled": 3}
    assert redis_client.llen(k.ready) == 0 and redis_client.zcard(k.scheduled) == 0
    assert redis_client.hkeys(k.state) == [records.peek_id(running).encode()]  # only the running job is live
    assert redis_client.llen(k.processing("w1")) == 1 and redis_client.zcard(k.dead) == 1


def test_bad_input_is_one_line_with_the_documented_exit_status(cli, error_line, tmp_path):
    assert "invalid choice: 'frobnicate'" in error_line(cli("frobnicate"), 2)
    assert "not valid JSON" in error_line(cli("enqueue", "t.a", "--payload", "{nope"), 2)
    assert "cannot read" in error_line(cli("enqueue", "t.a", "--payload", f"@{tmp_path / 'missing.json'}"), 2)
    assert "expected a duration" in error_line(cli("enqueue", "t.a", "--delay", "soon"), 2)
    assert "no job default:nope" in error_line(cli("job", "default:nope"), 1)
    assert "add --yes" in error_line(cli("purge", "default"), 2)
    assert "no queue named ghost" in error_line(cli("purge", "ghost", "--yes"), 1)
    assert "not in the dead list" in error_line(cli("dead", "show", "default:nope"), 1)
    assert "required" in error_line(cli("dead"), 2)
    assert "give job ids, or --all" in error_line(cli("dead", "retry"), 2)
    assert "one of them" in error_line(cli("dead", "purge", "--all", "--older-than", "7d"), 2)
    assert "queue name" in error_line(cli("dead", "list", "--queue", "a b"), 2)
    assert "unrecognized arguments" in error_line(cli("stats", "--frob"), 2)


def test_an_unreachable_redis_exits_3_with_one_line(error_line):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    commands = (("stats",), ("enqueue", "t.a"), ("job", "default:x"), ("dead", "list"), ("workers",))
    # At once: each read keeps trying for broker.retry's bound before it gives up.
    with ThreadPoolExecutor(len(commands)) as pool:
        for done in pool.map(lambda args: run_geoq("--redis-url", closed, *args), commands):
            assert "refused" in error_line(done, 3).lower()


def test_config_and_credential_errors_exit_2_with_one_line(redis_server, redis_url, error_line, tmp_config):
    assert "cannot read config" in error_line(run_geoq("-c", "/nonexistent/geoq.yaml", "stats"), 2)
    bad = tmp_config("redis:\n  url: redis://127.0.0.1:1/0\n  colour: blue\n")
    assert "colour" in error_line(run_geoq("-c", str(bad), "stats"), 2)
    wrong_user = f"redis://nobody:secret@127.0.0.1:{redis_server.port}/1"
    line = error_line(run_geoq("--redis-url", wrong_user, "stats"), 2)
    assert "secret" not in line
    assert "redis url" in error_line(run_geoq("--redis-url", "http://example.com", "stats"), 2).lower()


def test_the_config_comes_from_GEOQ_CONFIG_when_no_c_is_given(redis_url, tmp_path):
    config = write_config(tmp_path / "c.yaml", redis_url, {"t.a": {"handler": "geoq.handlers.builtin:noop",
                                                                    "queue": "mail"}})
    done = run_geoq("stats", "--json", env=cli_env(GEOQ_CONFIG=str(config)))
    assert done.returncode == 0, done.stderr
    assert list(json.loads(done.stdout)["queues"]) == ["default", "mail"]
    done = run_geoq("-c", str(config), "--json", "enqueue", "t.a")
    assert json.loads(done.stdout)["queue"] == "mail"
