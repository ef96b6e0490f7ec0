"""bin/geoq dead list | show | retry | purge against dead records seeded in the worker's format."""

from __future__ import annotations

import json
import subprocess
import sys

import geoq
from geoq import records
from geoq.broker import keys
from tests.admin.helpers import GEOQ, cli_env

DEAD = keys.queue_keys("default").dead
SUMMARY_KEYS = {"id", "type", "queue", "reason", "error", "attempts", "died_at"}


def test_dead_list_json_holds_each_record_newest_first_as_the_dead_set_holds_it(cli_json, redis_client, bury, now):
    t = now()
    old = bury("default", "t.a", died_at=t - 300)
    new = bury("default", "t.b", died_at=t - 100, reason="fail", runs=1)
    other = bury("bulk", "t.a", died_at=t - 200)

    out = cli_json("dead", "list")

    assert [d["id"] for d in out] == [new.id, other.id, old.id]
    assert all(set(d) >= SUMMARY_KEYS for d in out)
    for d in out:
        ((member, score),) = [(m, s) for m, s in redis_client.zrange(keys.queue_keys(d["queue"]).dead, 0, -1,
                                                                    withscores=True) if json.loads(m)["id"] == d["id"]]
        record = json.loads(member)
        assert d["died_at"] == round(score, 3)
        assert {k: d[k] for k in ("type", "reason", "error", "attempts")} == {
            k: record[k] for k in ("type", "reason", "error", "attempts")}
    assert out[0]["attempts"] == 1 and out[0]["reason"] == "fail"
    assert [d["id"] for d in cli_json("dead", "list", "--type", "t.a")] == [other.id, old.id]
    assert [d["id"] for d in cli_json("dead", "list", "--queue", "default", "--limit", "1")] == [new.id]


def test_dead_list_for_people_is_a_table_and_says_so_when_empty(cli, bury):
    assert cli("dead", "list").stdout.strip() == "the dead list is empty"
    job = bury("default", "t.a")
    lines = cli("dead", "list").stdout.splitlines()
    assert lines[0].split() == ["DIED", "QUEUE", "ID", "TYPE", "REASON", "ATTEMPTS", "ERROR"]
    assert job.id in lines[1] and "max_retries" in lines[1] and "RuntimeError: boom 3" in lines[1]


def test_dead_show_gives_the_whole_record_with_history_and_envelope(cli, cli_json, bury):
    job = bury("default", "t.a", runs=2)
    out = cli_json("dead", "show", job.id)
    assert set(out) >= SUMMARY_KEYS | {"history", "envelope"}
    assert [h[1] for h in out["history"]] == ["RuntimeError: boom 1", "RuntimeError: boom 2"]
    assert records.decode(out["envelope"].encode(), "default").payload == {"n": 1, "f": 1.5, "empty": []}
    text = cli("dead", "show", job.id).stdout
    assert "history:" in text and "envelope:" in text and "RuntimeError: boom 2" in text


def test_dead_show_and_list_of_an_oversize_job_stay_short_for_people_and_whole_for_scripts(cli, cli_json, bury):
    blob = "x" * (5 * 2**20)
    job = bury("default", "t.a", reason="oversize", runs=1, payload={"blob": blob})
    text = cli("dead", "show", job.id).stdout
    assert len(text) < 3000 and "oversize" in text and "cut (--json gives it whole)" in text, text[:3000]
    full = cli_json("dead", "show", job.id)
    assert set(full) >= SUMMARY_KEYS | {"history", "envelope"} and full["reason"] == "oversize"
    assert records.decode(full["envelope"].encode(), "default").payload == {"blob": blob}
    (listed,) = cli_json("dead", "list")
    assert set(listed) >= SUMMARY_KEYS and "envelope" not in listed and listed["reason"] == "oversize"
    lines = cli("dead", "list").stdout.splitlines()
    assert len(lines) == 2 and job.id in lines[1] and len(lines[1]) < 300


def test_dead_retry_puts_the_original_envelope_back_with_attempts_reset(cli, cli_json, redis_url, redis_client, bury):
    job = bury("default", "t.a", runs=3, payload={"big": 12345678901234567890, "f": 0.1, "e": [], "o": {}})
    k = keys.queue_keys("default")
    redis_client.set(k.done(job.id), b'{"s":"dead"}')

    out = cli_json("dead", "retry", job.id)

    assert (out["retried"], out["ids"], out["skipped"], out["missing"]) == (1, [job.id], [], [])
    assert redis_client.zcard(DEAD) == 0 and not redis_client.exists(k.done(job.id))
    (envelope,) = redis_client.lrange(k.ready, 0, -1)
    back = records.decode(envelope, "default")
    assert (back.id, back.type, back.attempt, back.history) == (job.id, "t.a", 0, ())
    assert back.payload == {"big": 12345678901234567890, "f": 0.1, "e": [], "o": {}}
    assert back.max_retries == job.max_retries
    assert redis_client.hget(k.state, job.id) == b"q|0||"
    assert geoq.Client(redis_url).status(job.id).state == "queued"
    assert "no job" not in cli("job", job.id).stdout


def test_dead_retry_of_a_missing_id_exits_1_after_retrying_the_others(cli, error_line, redis_client, bury):
    job = bury()
    done = cli("dead", "retry", job.id, "default:nope")
    assert "default:nope (not in the dead list)" in error_line(done, 1)
    assert done.stdout.startswith("retried 1 dead job")
    assert redis_client.llen(keys.queue_keys("default").ready) == 1


def test_dead_retry_leaves_dead_a_job_whose_id_is_live_again_and_one_that_is_not_a_job(
        cli, cli_json, error_line, redis_url, redis_client):
    job = geoq.Client(redis_url).enqueue("t.a", {}, id="mine")
    k = keys.queue_keys("default")
    compact = dict(separators=(",", ":"))  # as the worker writes records
    redis_client.zadd(k.dead, {json.dumps({"id": "mine", "type": "t.a", "queue": "default", "reason": "fail",
                                           "error": "x", "attempts": 1, "history": [], "died_at": 1.0,
                                           "envelope": records.encode(job, 2**20).decode()}, **compact): 1.0})
    redis_client.zadd(k.dead, {json.dumps({"id": "", "type": None, "queue": "default", "reason": "undecodable",
                                           "error": "bytes", "attempts": 0, "history": [], "died_at": 2.0,
                                           "envelope_hex": "ff00"}, **compact): 2.0})

    assert "its id is live again" in error_line(cli("dead", "retry", "mine"), 1)
    out = cli_json("dead", "retry", "--all")
    assert out["retried"] == 0 and sorted(s["why"][:8] for s in out["skipped"]) == ["its byte", "its id i"]
    assert redis_client.zcard(k.dead) == 2 and redis_client.llen(k.ready) == 1


def test_two_admins_retrying_everything_at_once_never_double_a_job(redis_url, redis_client, bury):
    buried = {bury("default", "t.a", died_at=float(n)).id for n in range(1500)}
    admins = [subprocess.Popen([sys.executable, str(GEOQ), "--redis-url", redis_url, "--json", "dead", "retry", "--all"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
              for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in admins]
    assert all(p.returncode == 0 for p in admins)
    retried = [set(o["ids"]) for o in outs]
    assert sum(o["retried"] for o in outs) == 1500 and not retried[0] & retried[1]
    assert retried[0] | retried[1] == buried
    ready = [records.peek_id(e) for e in redis_client.lrange(keys.queue_keys("default").ready, 0, -1)]
    assert sorted(ready) == sorted(buried)
    assert redis_client.zcard(DEAD) == 0 and redis_client.hlen(keys.queue_keys("default").state) == 1500


def test_dead_retry_all_is_limited_by_queue_and_type(cli_json, redis_client, bury):
    a = bury("default", "t.a")
    bury("default", "t.b")
    bury("bulk", "t.a")
    out = cli_json("dead", "retry", "--all", "--queue", "default", "--type", "t.a")
    assert out["ids"] == [a.id]
    assert redis_client.zcard(DEAD) == 1 and redis_client.zcard(keys.queue_keys("bulk").dead) == 1


def test_dead_purge_older_than_removes_exactly_the_older_records(cli_json, redis_client, bury, now):
    t = now()
    day = 86400.0
    ages = {"a": 30 * day, "b": 7 * day + 60, "c": 7 * day - 60, "d": day, "e": 0.0}
    for name, age in ages.items():
        bury("default", "t.a", job_id=name, died_at=t - age)
    bury("bulk", "t.a", job_id="f", died_at=t - 8 * day)

    out = cli_json("dead", "purge", "--older-than", "7d")

    assert out["purged"] == 3 and out["queues"] == {"default": 2, "bulk": 1}
    left = sorted(json.loads(m)["id"] for m in redis_client.zrange(DEAD, 0, -1))
    assert left == ["c", "d", "e"] and redis_client.zcard(keys.queue_keys("bulk").dead) == 0


def test_dead_purge_by_id_and_all(cli, cli_json, error_line, redis_client, bury):
    a, b = bury(), bury()
    bury("bulk")
    assert cli_json("dead", "purge", a.id)["purged"] == 1
    assert [json.loads(m)["id"] for m in redis_client.zrange(DEAD, 0, -1)] == [b.id]
    assert "not purged: default:nope" in error_line(cli("dead", "purge", "default:nope"), 1)
    assert cli_json("dead", "purge", "--all", "--queue", "bulk")["purged"] == 1
    assert redis_client.zcard(DEAD) == 1
    assert cli("dead", "purge", "--all").stdout.strip() == "purged 1 dead job"
    assert redis_client.zcard(DEAD) == 0


def test_a_record_the_reaper_wrote_in_lua_is_found_listed_and_retried(cli_json, redis_client):
    # The reaper builds its record with cjson: any key order, "/" escaped as "\/", no type or history.
    envelope = '{"i":"tenant/42","a":3,"d":3,"t":"t.a","q":"default","p":{"n":1},"e":1.0}'
    redis_client.eval("return redis.call('ZADD', KEYS[1], 5, cjson.encode({id = ARGV[1], reason = 'max_deliveries', "
                      "error = 'its worker died during 3 runs', attempts = 3, died_at = 5, envelope = ARGV[2]}))",
                      1, DEAD, "tenant/42", envelope)
    assert b"tenant\\/42" in redis_client.zrange(DEAD, 0, 0)[0]

    (listed,) = cli_json("dead", "list")
    assert (listed["id"], listed["reason"], listed["attempts"], listed["died_at"]) == ("tenant/42", "max_deliveries", 3, 5)
    assert cli_json("dead", "show", "tenant/42")["envelope"] == envelope
    assert cli_json("dead", "retry", "tenant/42")["ids"] == ["tenant/42"]
    back = records.decode(redis_client.lindex(keys.queue_keys("default").ready, 0), "default")
    assert (back.id, back.attempt, back.payload) == ("tenant/42", 0, {"n": 1})
    assert b'"d"' not in redis_client.lindex(keys.queue_keys("default").ready, 0)  # deliveries reset too
