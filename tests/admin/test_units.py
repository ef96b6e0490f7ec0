"""The CLI's pure parts: tables, ages, dead records and their retry envelopes, key parsing."""

from __future__ import annotations

import json
import subprocess
import sys

from geoq import records
from geoq.admin import render
from geoq.admin.cli import exit_code
from geoq.admin.errors import NotFound, UsageError
from geoq.admin.revive import read, revival
from geoq.broker import keys
from geoq.broker.admin import DeadEntry, Revival
from geoq.broker.keys import glob_escape
from geoq.errors import ConfigError, RedisAuthError, RedisFull, RedisUnavailable
from geoq.job import Job
from tests.admin.helpers import ROOT


def test_a_table_aligns_text_left_and_numbers_right():
    text = render.table(("NAME", "N", "NOTE"), [("a", 1, None), ("longer", 1234, "x\ny")])
    assert text.splitlines() == ["NAME       N  NOTE", "a          1  -", "longer  1234  x y"]


def test_ages_read_like_a_person_would_say_them():
    assert [render.age(s) for s in (0.25, 4.24, 185, 7800, 3 * 86400 + 4 * 3600, None)] == [
        "250ms", "4.2s", "3m05s", "2h10m", "3d04h", "-"]


def test_one_line_flattens_and_cuts():
    assert render.one_line("a\n  b\tc", 4) == "a b…"


def test_a_retry_envelope_keeps_the_job_and_resets_its_runs_and_history():
    job = Job(id="default:abc", type="t.a", queue="default", payload={"big": 2**70, "f": 0.1, "e": []}, attempt=3,
              enqueued_at=12.5, max_retries=2, timeout=9.0, history=((1.0, "boom"),))
    record = {"id": job.id, "type": "t.a", "queue": "default", "reason": "max_retries", "error": "boom",
              "attempts": 3, "history": [[1.0, "boom"]], "died_at": 2.0,
              "envelope": records.encode(job, 2**20).decode()}
    entry = DeadEntry("default", json.dumps(record).encode(), 2.5)
    made = revival(read(entry))
    assert isinstance(made, Revival) and made.member == entry.member and made.id == job.id
    back = records.decode(made.envelope, "default")
    assert back.attempt == 0 and back.history == ()
    assert (back.payload, back.max_retries, back.timeout, back.enqueued_at) == (job.payload, 2, 9.0, 12.5)
    assert made.envelope.startswith(b'{"i":"default:abc",')  # where the script reads the id
    assert read(entry).summary()["died_at"] == 2.5  # the set's score (Redis time) is the time of death


def test_records_that_hold_no_job_are_not_retried_and_say_why():
    hexed = read(DeadEntry("q", b'{"id":"","envelope_hex":"ff"}', 1.0))
    assert revival(hexed) == "its bytes were not UTF-8 text, so they are not a job"
    not_a_job = read(DeadEntry("q", b'{"id":"x","envelope":"[1,2]"}', 1.0))
    assert revival(not_a_job) == "its envelope is not a job"
    assert read(DeadEntry("q", b"garbage", 1.0)).summary()["id"] == ""


def test_only_keys_that_hold_jobs_name_a_queue():
    assert keys.parse_job_holder("geoq:{mail:eu}:ready") == ("mail:eu", "ready", "")
    assert keys.parse_job_holder("geoq:{default}:processing:host.1.ab") == ("default", "processing", "host.1.ab")
    assert keys.parse_job_holder("geoq:{default}:done:default:xyz") is None
    assert keys.parse_job_holder("geoq:{default}:dead_trimmed") is None
    assert keys.parse_job_holder("geoq:{default}:processing") is None


def test_glob_patterns_match_ids_literally():
    assert glob_escape('"id":"a*b?[c]\\"') == '"id":"a\\*b\\?\\[c\\]\\\\"'


def test_errors_map_to_the_documented_exit_statuses():
    assert [exit_code(e) for e in (NotFound("x"), UsageError("x"), ConfigError("x"), RedisAuthError("x"),
                                   RedisUnavailable("x"), RedisFull("x"))] == [1, 2, 2, 2, 3, 1]


def test_the_admin_cli_never_imports_gevent():
    probe = "import sys, geoq.admin.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
