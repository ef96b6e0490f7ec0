"""The pure parts of job control: envelope fields, unique keys and templates, expiry arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from geoq import control, records, unique
from geoq.errors import InvalidJob
from geoq.job import Job, JobControl
from geoq.unique import UniqueRule


def test_expiry_and_unique_lock_ride_in_the_envelope_with_expiry_right_after_the_type():
    job = Job(id="q:1", type="t.ok", queue="q", payload={"x": 1}, enqueued_at=10.0,
              control=JobControl(expires_at=70.5, unique_key="ab" * 16, unique_for=600.0))
    raw = records.encode(job, 10_000)
    assert raw.startswith(b'{"i":"q:1","a":0,"t":"t.ok","x":70.5,"e":10.0,')
    assert records.decode(raw, "q") == job
    assert records.peek_type(raw) == "t.ok"


def test_an_envelope_written_before_job_control_reads_as_never_expiring_and_not_unique():
    old = records.decode(b'{"i":"q:1","a":2,"d":1,"t":"t.ok","e":1.0,"p":null}', "q")
    assert (old.expires_at, old.unique_key, old.unique_for) == (None, None, None)


def test_cancel_state_codes_read_as_cancelled_and_still_running():
    assert records.decode_state("a", b"c|2||boom", 0).state == "cancelled"
    assert records.decode_state("a", b"x|1||", 0).state == "running"


def test_the_default_unique_key_is_the_type_plus_the_canonical_payload():
    assert unique.key_text("t", {"b": 1, "a": [1, 2]}) == unique.key_text("t", {"a": [1, 2], "b": 1})
    assert unique.key_text("t", {"a": 1}) != unique.key_text("u", {"a": 1})
    assert len(unique.lock_digest("x" * 10_000)) == 32


def test_a_unique_template_reads_nested_payload_fields_and_the_type():
    assert unique.key_text("t", {"u": {"id": 7}, "n": "x"}, "{type}/{payload.u.id}") == "t\nt/7"
    with pytest.raises(ValueError, match="payload has no 'id'"):
        unique.key_text("t", {"u": {}}, "{payload.u.id}")
    for bad in ("{user}", "{payload.a", "{}", "x}"):
        with pytest.raises(ValueError):
            unique.check_template(bad)


def test_with_control_sets_expiry_from_seconds_timedelta_or_datetime():
    job = Job(id="q:1", type="t", queue="q", payload={"a": 1})
    assert control.with_control(job, 100.0, 30, None, None).expires_at == 130.0
    assert control.with_control(job, 100.0, timedelta(minutes=1), None, None).expires_at == 160.0
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert control.with_control(job, 100.0, at, None, None).expires_at == at.timestamp()


def test_with_control_takes_the_routes_window_unless_unique_for_is_given():
    job = Job(id="q:1", type="t", queue="q", payload={"a": 1})
    rule = UniqueRule("{payload.a}", 600.0)
    by_route = control.with_control(job, 0.0, None, None, rule)
    assert by_route.unique_for == 600.0
    assert by_route.unique_key == unique.lock_digest("t\n1")
    assert control.with_control(job, 0.0, None, timedelta(seconds=5), rule).unique_for == 5.0
    with pytest.raises(InvalidJob, match="not after the job's due time"):
        control.with_control(Job(id="q:1", type="t", queue="q", payload=None, due_at=50.0), 0.0, 40, None, None)
