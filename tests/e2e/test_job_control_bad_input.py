"""Bad input to job control: each is refused with one clear line (and the CLI's exit status)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import geoq
from geoq.config import load_config
from tests.support.keyspace import places
from tests.support.worker_process import ROOT, run_worker_once

ROUTE = "routes:\n  sync.user:\n    handler: tests.support.handlers:ok\n"


def geoq_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "--redis-url", redis_url, *args],
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})


def one_line(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert done.returncode == status, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize("expires", [-5, 0, timedelta(seconds=-1),
                                     datetime(2001, 1, 1, tzinfo=timezone.utc)])
def test_an_expiry_in_the_past_is_refused_and_stores_nothing(redis_url, redis_client, expires):
    with geoq.Client(redis_url) as client:
        with pytest.raises(geoq.InvalidJob, match="expires must be in the future"):
            client.enqueue("t.ok", {}, expires=expires)
    assert places(redis_client, ["default"]).total("ready") == 0


def test_an_expiry_before_the_due_time_and_a_bad_unique_for_are_refused(redis_url):
    with geoq.Client(redis_url) as client:
        with pytest.raises(geoq.InvalidJob, match="not after the job's due time"):
            client.enqueue("t.ok", {}, delay=60, expires=30)
        for bad in (-1, True, "10m"):
            with pytest.raises(geoq.InvalidJob, match="unique_for must be a number of seconds"):
                client.enqueue("t.ok", {}, unique_for=bad)
        with pytest.raises(geoq.InvalidJob, match="expires must be a number of seconds, a timedelta or a datetime"):
            client.enqueue("t.ok", {}, expires="soon")


def test_geoq_enqueue_with_an_expiry_in_the_past_exits_2_with_one_line(redis_url):
    one_line(geoq_cli(redis_url, "enqueue", "t.ok", "--expires", "0s"), 2, "expires must be in the future")


BAD_UNIQUE = {
    "not a mapping": ("unique: yes", "routes.sync.user.unique"),
    "unknown key": ("unique: {key: x, fro: 10m}", "routes.sync.user.unique"),
    "empty": ("unique: {}", "routes.sync.user.unique"),
    "bad field": ('unique: {key: "{user_id}"}', "unknown field {user_id}"),
    "unbalanced braces": ('unique: {key: "{payload.id"}', "unbalanced braces"),
    "bad window": ("unique: {for: soon}", "a duration"),
    "key not text": ("unique: {key: [1]}", "unique.key"),
}


@pytest.mark.parametrize("name", sorted(BAD_UNIQUE))
def test_a_bad_unique_block_is_one_config_error_naming_file_key_and_line(name, tmp_path):
    line, expected = BAD_UNIQUE[name]
    path = tmp_path / "bad.yaml"
    path.write_text(ROUTE + "    " + line + "\n")
    with pytest.raises(geoq.ConfigError) as e:
        load_config(str(path))
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "line 4" in message and expected in message, message
    done = run_worker_once(path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_cancel_of_an_unknown_id_is_false_and_exits_1_and_of_a_bad_id_exits_2(redis_url):
    with geoq.Client(redis_url) as client:
        assert client.cancel("default:nosuchjob") is False
        with pytest.raises(geoq.InvalidJob, match="job id"):
            client.cancel("no spaces allowed")
    one_line(geoq_cli(redis_url, "cancel", "default:nosuchjob"), 1, "no job default:nosuchjob to cancel")
    one_line(geoq_cli(redis_url, "cancel", "no spaces allowed"), 2, "job id")


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_or_resume_of_an_invalid_queue_name_exits_2_with_one_line(redis_url, command):
    one_line(geoq_cli(redis_url, command, "bad{name}"), 2, "queue name")
    with geoq.Client(redis_url) as client:
        with pytest.raises(geoq.InvalidJob, match="queue name"):
            getattr(client, command)("bad{name}")
