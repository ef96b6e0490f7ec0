"""`geoq dead groups` and `dead retry|purge --group FP`: dead jobs by error fingerprint, as a user
runs them (bin/geoq), against dead sets filled the worker's way and by a running worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

import geoq
from geoq.broker import keys
from tests.admin.helpers import run_geoq
from tests.support.admin_handlers import BREAK
from tests.support.dead_index import ORDER, SMTP, USER, assert_index_consistent, dead_ids, fp, seed, strip_index
from tests.support.handlers import ledger_counts
from tests.support.keyspace import assert_settled
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

AH = "tests.support.admin_handlers"


def test_groups_list_each_error_once_with_its_count_and_times_newest_first(cli, cli_json, redis_client):
    seed(redis_client, [SMTP.format(n=n) for n in range(5)])
    seed(redis_client, [USER.format(n=n) for n in range(3)] + [ORDER.format(n=1)])

    listed = cli_json("dead", "groups")

    assert [(g["fingerprint"], g["count"]) for g in listed["groups"]] == [
        (fp(ORDER), 1), (fp(USER), 3), (fp(SMTP), 5)]
    assert (listed["total"], listed["estimated"], listed["next_cursor"]) == (3, False, None)
    smtp = listed["groups"][2]
    assert {k: smtp[k] for k in ("queue", "type", "error_type", "message")} == {
        "queue": "default", "type": "t.job", "error_type": "ConnectionError", "message": "connect to <ip> refused"}
    assert smtp["first_seen"] <= smtp["last_seen"] <= listed["groups"][1]["first_seen"]
    table = cli("dead", "groups")
    assert table.returncode == 0 and table.stderr == ""
    assert table.stdout.splitlines()[0].split() == ["LAST", "SEEN", "FIRST", "SEEN", "COUNT", "QUEUE", "TYPE",
                                                    "ERROR", "MESSAGE", "GROUP"]
    assert fp(SMTP) in table.stdout and "3 of 3 groups" in table.stdout
    assert redis_client.zcard(keys.queue_keys("default").dead) == 9


def test_filters_by_queue_type_and_text_and_pages_through_every_group(cli_json, redis_client):
    for n in range(7):
        seed(redis_client, [f"ValueError: step {n} of order 12 failed at stage{n}".replace(f"stage{n}", "x" * n)])
    seed(redis_client, [SMTP.format(n=1)], job_type="t.mail")
    seed(redis_client, [USER.format(n=1)], queue="bulk")
    everything = cli_json("dead", "groups")["groups"]

    assert [g["type"] for g in cli_json("dead", "groups", "--type", "t.mail")["groups"]] == ["t.mail"]
    assert [g["queue"] for g in cli_json("dead", "groups", "--queue", "bulk")["groups"]] == ["bulk"]
    texted = cli_json("dead", "groups", "--text", "CONNECT TO")
    assert [g["fingerprint"] for g in texted["groups"]] == [fp(SMTP, "t.mail")] and texted["total"] == 1
    paged, cursor = [], None
    while True:
        page = cli_json("dead", "groups", "--limit", "3", *(["--cursor", cursor] if cursor else []))
        paged += page["groups"]
        assert page["total"] == 9
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == everything and len(everything) == 9
    assert sum(g["count"] for g in everything) == 9


def test_retry_of_a_group_requeues_its_jobs_only(cli_json, redis_client):
    smtp = seed(redis_client, [SMTP.format(n=n) for n in range(4)])
    user = seed(redis_client, [USER.format(n=n) for n in range(2)])

    out = cli_json("dead", "retry", "--group", fp(SMTP))

    assert {k: out[k] for k in ("retried", "skipped", "missing", "gone", "group")} == {
        "retried": 4, "skipped": [], "missing": [], "gone": 0, "group": fp(SMTP)}
    assert set(out["ids"]) == set(smtp)
    k = keys.queue_keys("default")
    assert {json.loads(e)["i"] for e in redis_client.lrange(k.ready, 0, -1)} == set(smtp)
    assert dead_ids(redis_client) == set(user)
    assert dict(assert_index_consistent(redis_client)) == {fp(USER): 2}
    assert [g["fingerprint"] for g in cli_json("dead", "groups")["groups"]] == [fp(USER)]


def test_purge_of_a_group_deletes_its_jobs_only(cli, cli_json, redis_client):
    seed(redis_client, [SMTP.format(n=n) for n in range(600)])   # more than one step of the drop
    user = seed(redis_client, [USER.format(n=n) for n in range(2)])

    out = cli_json("dead", "purge", "--group", fp(SMTP))

    assert out == {"purged": 600, "queues": {"default": 600}, "missing": [], "group": fp(SMTP)}
    assert dead_ids(redis_client) == set(user)
    assert dict(assert_index_consistent(redis_client)) == {fp(USER): 2}
    done = cli("dead", "purge", "--group", fp(USER))
    assert (done.returncode, done.stdout.strip()) == (0, f"purged 2 dead jobs of group {fp(USER)}")
    assert redis_client.zcard(keys.queue_keys("default").dead) == 0 and redis_client.llen(keys.queue_keys("default").ready) == 0


@pytest.mark.parametrize(("args", "status", "words"), [
    (("dead", "retry", "--group", "0123456789abcdef"), 1, "no dead group 0123456789abcdef"),
    (("dead", "purge", "--group", "0123456789abcdef", "--queue", "bulk"), 1, "no dead group 0123456789abcdef in queue bulk"),
    (("dead", "retry", "--group", "not-hex"), 2, "expected a group's fingerprint"),
    (("dead", "retry", "--group", "abc", "--all"), 2, "give job ids, --all or --group FP"),
    (("dead", "purge", "--group", "abc", "some-id"), 2, "give job ids, --all, --older-than AGE or --group FP"),
    (("dead", "groups", "--limit", "0"), 2, "--limit: expected a positive number"),
    (("dead", "groups", "--cursor", "nonsense"), 2, "not a cursor of the dead groups"),
    (("dead", "groups", "--cursor", "1.5/abc/bad{queue"), 2, "not a cursor of the dead groups"),
    (("dead", "groups", "--queue", "bad{name"), 2, "queue"),
])
def test_a_bad_group_command_says_so_in_one_line_and_moves_nothing(cli, error_line, redis_client, args, status, words):
    user = seed(redis_client, [USER.format(n=n) for n in range(2)])

    assert words in error_line(cli(*args), status)

    assert dead_ids(redis_client) == set(user) and redis_client.llen(keys.queue_keys("default").ready) == 0
    assert dict(assert_index_consistent(redis_client)) == {fp(USER): 2}


def test_rebuild_indexes_a_dead_set_an_older_geoq_left(cli_json, redis_client):
    seed(redis_client, [SMTP.format(n=n) for n in range(3)] + [USER.format(n=1)])
    strip_index(redis_client, ["default"])
    assert cli_json("dead", "groups")["groups"] == []

    rebuilt = cli_json("dead", "groups", "--rebuild")

    assert rebuilt["indexed"] == {"default": 4}
    assert {(g["fingerprint"], g["count"]) for g in rebuilt["groups"]} == {(fp(SMTP), 3), (fp(USER), 1)}
    assert dict(assert_index_consistent(redis_client)) == {fp(SMTP): 3, fp(USER): 1}
    assert cli_json("dead", "groups", "--rebuild")["indexed"] == {"default": 0}



def test_a_worker_fills_groups_and_a_healed_group_retried_runs_once_more(redis_url, redis_client, ledger, tmp_path):
    ledger_url, ledger_client = ledger
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.picky": {"handler": f"{AH}:picky", "max_retries": 0}},
                          worker={"concurrency": 50})
    client = geoq.Client(redis_url)
    ledger_client.set(BREAK, 1)
    smtp = [j.id for j in client.enqueue_many([("t.picky", {"kind": "smtp", "n": n}) for n in range(20)])]
    user = [j.id for j in client.enqueue_many([("t.picky", {"kind": "user", "n": n}) for n in range(10)])]

    def cli_json(*args: str) -> Any:
        done = run_geoq("-c", str(config), "--json", *args)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return json.loads(done.stdout)

    with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url}, log=tmp_path / "w.log") as worker:
        wait_until(lambda: redis_client.zcard(keys.queue_keys("default").dead) == 30, timeout=30,
                   message="the broken jobs did not all die")
        groups = {g["error_type"]: g for g in cli_json("dead", "groups")["groups"]}
        assert {k: (g["count"], g["message"]) for k, g in groups.items()} == {
            "ConnectionError": (20, "connect to <ip> refused"), "KeyError": (10, "'<str>'")}
        ledger_client.delete(BREAK)

        out = cli_json("dead", "retry", "--group", groups["ConnectionError"]["fingerprint"])

        assert sorted(out["ids"]) == sorted(smtp)
        wait_until(lambda: len(ledger_counts(ledger_client, "succeeded")) == 20, timeout=30,
                   message="the retried group did not run again")
        assert worker.stop() == 0, worker.log()

    assert set(ledger_counts(ledger_client, "succeeded")) == set(smtp)
    settled = assert_settled(redis_client, ["default"])
    assert {d["id"] for d in settled.dead["default"]} == set(user)
    assert dict(assert_index_consistent(redis_client)) == {groups["KeyError"]["fingerprint"]: 10}
    assert {client.status(i).state for i in smtp} == {"succeeded"} and {client.status(i).state for i in user} == {"dead"}
