import json

import pytest

from geoq import job as jobs
from geoq.errors import InvalidJob, PayloadTooLarge
from geoq.job import Job


def make(**kw):
    base = dict(id="default:abc", type="email.send", queue="default", payload={"to": "a@example.com"},
                enqueued_at=1700000000.123)
    base.update(kw)
    return Job(**base)


def test_an_envelope_round_trips_every_field():
    job = make(attempt=2, max_retries=7, timeout=3.5, history=((1.0, "ValueError: x"),), deaths=1)
    back = jobs.decode(jobs.encode(job, 10_000), "default")
    assert back == job


def test_the_id_comes_first_so_lua_can_read_it_without_decoding():
    raw = jobs.encode(make(attempt=3, deaths=2), 10_000)
    assert raw.startswith(b'{"i":"default:abc","a":3,"d":2,"t":')
    assert raw.endswith(b'"p":{"to":"a@example.com"}}')
    assert jobs.peek_id(raw) == "default:abc"
    assert jobs.peek_id(b"\xff\xfe") is None


def test_an_envelope_is_compact_json_without_optional_keys():
    body = json.loads(jobs.encode(make(), 10_000))
    assert set(body) == {"i", "a", "t", "e", "p"}


def test_an_envelope_over_the_limit_is_refused():
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        jobs.encode(make(payload="x" * 200), 100)


def test_a_payload_that_is_not_json_is_refused():
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        jobs.encode(make(payload={"when": object()}), 10_000)


@pytest.mark.parametrize("raw,reason", [
    (b"\xff\xfe\x00", "undecodable"),
    (b"{not json", "undecodable"),
    (b"[1, 2]", "not_a_job"),
    (b'{"hello": "world"}', "not_a_job"),
    (b'{"i": "", "t": "x"}', "not_a_job"),
    (b'{"i": "a", "t": "x", "a": -1}', "not_a_job"),
])
def test_bad_bytes_are_rejected_with_the_reason(raw, reason):
    with pytest.raises(InvalidJob) as info:
        jobs.decode(raw, "default")
    assert info.value.reason == reason


def test_generated_ids_name_their_queue_and_are_unique():
    ids = {jobs.new_id("bulk") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(jobs.queue_of_id(i) == "bulk" for i in ids)
    assert jobs.queue_of_id("my-own-id") is None


@pytest.mark.parametrize("bad", ["", "has space", 'quo"te', "x" * 201, "a\\b"])
def test_ids_a_script_could_not_read_are_refused(bad):
    with pytest.raises(InvalidJob):
        jobs.check_id(bad)


def test_a_scheduled_state_already_due_reads_as_queued():
    value = jobs.encode_state("scheduled", 2, 100.0, "ValueError: boom").encode()
    assert jobs.decode_state("x", value, now=50.0).state == "scheduled"
    st = jobs.decode_state("x", value, now=150.0)
    assert (st.state, st.attempts, st.last_error) == ("queued", 2, "ValueError: boom")


def test_an_error_text_with_separators_survives_the_state_codec():
    value = jobs.encode_state("running", 1, None, "a|b|c").encode()
    assert jobs.decode_state("x", value, now=0).last_error == "a|b|c"


def test_a_done_record_keeps_state_result_reason_and_type():
    record = jobs.encode_done("dead", 3, "E: x", None, "max_retries", "email.send")
    st = jobs.decode_done("x", record)
    assert (st.state, st.attempts, st.last_error, st.reason) == ("dead", 3, "E: x", "max_retries")
    assert jobs.done_type(record) == "email.send"
    assert jobs.done_type(b'{"s":"succeeded","a":1,"e":null,"r":null,"x":null}') is None  # an older record


def test_a_waiting_retry_keeps_its_traceback_in_the_state_value_and_a_newline_in_its_error_is_folded():
    trace = 'Traceback (most recent call last):\n  File "h.py", line 1, in h\nValueError: a|b'
    value = jobs.encode_state("scheduled", 2, 100.0, "ValueError: a|b\nsecond", trace).encode()
    st = jobs.decode_state("x", value, now=50.0)
    assert (st.state, st.last_error, st.traceback, st.due_at) == ("scheduled", "ValueError: a|b second", trace, 100.0)
    assert jobs.decode_state("x", jobs.encode_state("running", 1, None, "E: x").encode(), now=0).traceback is None


def test_a_dead_jobs_done_record_keeps_its_traceback_and_a_succeeded_one_spends_no_byte_on_it():
    st = jobs.decode_done("x", jobs.encode_done("dead", 3, "E: x", None, "max_retries", "t", "Traceback ...\nE: x"))
    assert st.traceback == "Traceback ...\nE: x"
    record = jobs.encode_done("succeeded", 1, None, {"ok": 1}, None, "t")
    assert b"tb" not in record and jobs.decode_done("x", record).traceback is None


@pytest.mark.parametrize("raw, expected", [
    (b"plain ascii", True), ("é€😀".encode() * 50_000, True), (b"a" * 65_535 + "é".encode(), True),
    (b"\xff", False), (b"a" * 70_000 + b"\xc3", False), ("é".encode() * 40_000 + b"\x80", False), (b"", True)])
def test_is_utf8_agrees_with_decoding_whole_also_across_its_slice_boundaries(raw, expected):
    assert jobs.is_utf8(raw) is expected
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert not expected
    else:
        assert expected
