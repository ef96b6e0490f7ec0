"""geoq.records (every stored record's codec) and the job model's name rules, without Redis."""

import json
from dataclasses import replace

import pytest

from geoq import job as jobs
from geoq import names, records
from geoq.errors import InvalidJob, PayloadTooLarge
from geoq.job import Job


def make(**kw):
    base = dict(id="default:abc", type="email.send", queue="default", payload={"to": "a@example.com"},
                enqueued_at=1700000000.123)
    base.update(kw)
    return Job(**base)


def test_an_envelope_round_trips_every_field():
    job = make(attempt=2, max_retries=7, timeout=3.5, history=((1.0, "ValueError: x"),), deaths=1)
    back = records.decode(records.encode(job, 10_000), "default")
    assert back == job


def test_the_id_comes_first_so_lua_can_read_it_without_decoding():
    raw = records.encode(make(attempt=3, deaths=2), 10_000)
    assert raw.startswith(b'{"i":"default:abc","a":3,"d":2,"t":')
    assert raw.endswith(b'"p":{"to":"a@example.com"}}')
    assert records.peek_id(raw) == "default:abc"
    assert records.peek_id(b"\xff\xfe") is None


def test_an_envelope_is_compact_json_without_optional_keys():
    body = json.loads(records.encode(make(), 10_000))
    assert set(body) == {"i", "a", "t", "e", "p"}


def test_an_envelope_over_the_limit_is_refused():
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        records.encode(make(payload="x" * 200), 100)


def test_a_payload_that_is_not_json_is_refused():
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        records.encode(make(payload={"when": object()}), 10_000)


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
        records.decode(raw, "default")
    assert info.value.reason == reason


@pytest.mark.parametrize("field", ['"o":"5s"', '"o":-1', '"o":0', '"o":true', '"o":Infinity', '"o":NaN', '"m":"3"',
                                   '"m":-1', '"m":2.5', '"u":"soon"', '"x":"soon"', '"k":7', '"k":"a","w":-1',
                                   '"k":"a","w":"1h"'])
def test_an_optional_field_of_the_wrong_type_is_not_a_job(field):
    """Checked when read: a wrong type would otherwise fail where it is compared (an expiry, in
    the worker's fetch loop; a timeout, where its run is started)."""
    with pytest.raises(InvalidJob) as info:
        records.decode(('{"i":"default:a","a":0,"t":"x","e":1,' + field + ',"p":null}').encode(), "default")
    assert info.value.reason == "not_a_job"


def test_optional_fields_of_the_right_types_are_read():
    job = records.decode(b'{"i":"default:a","a":0,"t":"x","x":9.5,"e":1,"u":2,"m":0,"o":30,"k":"key","w":0,'
                         b'"p":null}', "default")
    assert (job.timeout, job.max_retries, job.due_at, job.expires_at, job.unique_key, job.unique_for) == (
        30, 0, 2, 9.5, "key", 0)


@pytest.mark.parametrize("text", [
    '{"i":"a","t":"b"}', ' {"i":"a","t":"b"}', '{"i":"a","t":"b"}\n', '{"i":"a"}x', '', '[1,2]', '7',
    '{"a":NaN}', '{"a":1', '{"a":1}{"b":2}', '\ufeff{}', '{"a":1e400,"b":[1,2.5,null,true,"\\u00e9"]}',
])
def test_an_envelope_reads_as_json_loads_reads_it_value_and_error(text):
    def read(loads):
        try:
            return "value", loads(text)
        except ValueError as e:
            return "error", type(e).__name__, str(e)
    assert repr(read(records._loads)) == repr(read(json.loads))


def _circular() -> list:
    loop: list = []
    loop.append(loop)
    return loop


def _deep(levels: int) -> list:
    top: list = []
    inner = top
    for _ in range(levels):
        inner.append([])
        inner = inner[0]
    return top


@pytest.mark.parametrize("value", [
    None, 1, 1.5, -0.0, 10 ** 30, "\u00e9\u2028\"\\", {"a": [1, 2.0, None, True]}, {1: "x", True: 2, None: 3, 2.5: 1},
    [float("nan")], {"x": float("inf")}, {"s": {1, 2}}, {(1, 2): 3}, _circular(), _deep(5000), _deep(50),
], ids=lambda v: type(v).__name__)
def test_results_and_envelopes_encode_as_the_json_encoder_encodes_them_text_and_error(value):
    def write(encode):
        try:
            return "text", encode(value)
        except (TypeError, ValueError, RecursionError) as e:
            return "error", type(e).__name__, str(e)
    assert write(records._dumps) == write(records._COMPACT.encode)


@pytest.mark.parametrize("payload", [None, {"d": "x" * 92}, ["\u00e9", 1.5, {"k": None}], "text", 7, {"n": 10 ** 30}],
                         ids=repr)
@pytest.mark.parametrize("enqueued_at", [1765000000.1234567, 5, 0.0])
def test_a_plain_job_is_written_as_the_general_encoding_writes_it(payload, enqueued_at):
    job = make(payload=payload, type="t\u00e9.\"x\"", enqueued_at=enqueued_at)
    general = records._dumps({"i": job.id, "a": 0, "t": job.type, "e": round(enqueued_at, 3), "p": payload}).encode()
    assert records.encode(job, 10_000) == general
    assert records.decode(general, job.queue) == replace(job, enqueued_at=round(enqueued_at, 3))


def test_a_plain_job_keeps_the_payload_and_size_errors():
    with pytest.raises(InvalidJob, match="not JSON-serialisable"):
        records.encode(make(payload=[float("nan")]), 10_000)
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        records.encode(make(payload="x" * 200), 100)


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
    value = records.encode_state("scheduled", 2, 100.0, "ValueError: boom").encode()
    assert records.decode_state("x", value, now=50.0).state == "scheduled"
    st = records.decode_state("x", value, now=150.0)
    assert (st.state, st.attempts, st.last_error) == ("queued", 2, "ValueError: boom")


def test_an_error_text_with_separators_survives_the_state_codec():
    value = records.encode_state("running", 1, None, "a|b|c").encode()
    assert records.decode_state("x", value, now=0).last_error == "a|b|c"


def test_a_done_record_keeps_state_result_reason_and_type():
    record = records.encode_done("dead", 3, "E: x", None, "max_retries", "email.send")
    st = records.decode_done("x", record)
    assert (st.state, st.attempts, st.last_error, st.reason) == ("dead", 3, "E: x", "max_retries")
    assert records.done_type(record) == "email.send"
    assert records.done_type(b'{"s":"succeeded","a":1,"e":null,"r":null,"x":null}') is None  # an older record


def test_a_waiting_retry_keeps_its_traceback_in_the_state_value_and_a_newline_in_its_error_is_folded():
    trace = 'Traceback (most recent call last):\n  File "h.py", line 1, in h\nValueError: a|b'
    value = records.encode_state("scheduled", 2, 100.0, "ValueError: a|b\nsecond", trace).encode()
    st = records.decode_state("x", value, now=50.0)
    assert (st.state, st.last_error, st.traceback, st.due_at) == ("scheduled", "ValueError: a|b second", trace, 100.0)
    assert records.decode_state("x", records.encode_state("running", 1, None, "E: x").encode(), now=0).traceback is None


def test_a_dead_jobs_done_record_keeps_its_traceback_and_a_succeeded_one_spends_no_byte_on_it():
    st = records.decode_done("x", records.encode_done("dead", 3, "E: x", None, "max_retries", "t", "Traceback ...\nE: x"))
    assert st.traceback == "Traceback ...\nE: x"
    record = records.encode_done("succeeded", 1, None, {"ok": 1}, None, "t")
    assert b"tb" not in record and records.decode_done("x", record).traceback is None


@pytest.mark.parametrize("raw, expected", [
    (b"plain ascii", True), ("é€😀".encode() * 50_000, True), (b"a" * 65_535 + "é".encode(), True),
    (b"\xff", False), (b"a" * 70_000 + b"\xc3", False), ("é".encode() * 40_000 + b"\x80", False), (b"", True)])
def test_is_utf8_agrees_with_decoding_whole_also_across_its_slice_boundaries(raw, expected):
    assert records.is_utf8(raw) is expected
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert not expected
    else:
        assert expected


def test_meta_rides_before_the_payload_and_round_trips():
    job = make(meta={"traceparent": "00-abc-def-01", "tenant": "acme"}, attempt=1, deaths=1)
    raw = records.encode(job, 10_000)
    assert raw.startswith(b'{"i":"default:abc","a":1,"d":1,"t":')  # the header reap.lua rewrites is unchanged
    assert b'"c":{"traceparent":"00-abc-def-01","tenant":"acme"},"p":' in raw
    assert records.decode(raw, "default") == job


def test_a_job_without_meta_spends_no_byte_on_it_and_reads_back_empty():
    raw = records.encode(make(), 10_000)
    assert b'"c"' not in raw
    assert records.decode(raw, "default").meta == {}


def test_meta_that_is_not_an_object_is_not_a_job():
    raw = b'{"i":"x","a":0,"t":"email.send","c":[1],"p":null}'
    with pytest.raises(InvalidJob) as caught:
        records.decode(raw, "default")
    assert caught.value.reason == "not_a_job"


def test_meta_over_its_own_limit_is_refused_even_when_the_payload_limit_allows_it():
    with pytest.raises(InvalidJob, match=f"the limit is {records.META_LIMIT}"):
        records.encode(make(meta={"x": "y" * records.META_LIMIT}), 1 << 20)


def test_a_dead_record_reads_back_what_the_worker_wrote_and_tolerates_what_reap_writes():
    job = make(attempt=3, history=((1.0, "E: a"), (2.0, "E: b")))
    member = records.encode_dead("default", job, job.id, "max_retries", "E: b", 2.5, "Traceback ...")
    record = records.decode_dead("default", member, 2.75)
    assert (record.id, record.type, record.history, record.traceback) == (
        job.id, "email.send", [(1.0, "E: a"), (2.0, "E: b")], "Traceback ...")
    assert record.summary() == {"id": job.id, "type": "email.send", "queue": "default", "reason": "max_retries",
                                "error": "E: b", "attempts": 3, "died_at": 2.75}
    reaped = records.decode_dead("q", b'{"id":"a","type":"t","reason":"max_deliveries","attempts":2,'
                                      b'"envelope":"{}"}', 1.0)
    assert (reaped.history, reaped.traceback, reaped.envelope) == ([], None, "{}")
    assert records.decode_dead("q", b"not json", 1.0).summary()["id"] == ""


def test_queue_and_id_rules_live_in_names():
    assert names.is_queue_name("mail.eu-1") and not names.is_queue_name("{x}") and not names.is_queue_name(3)
    assert names.is_job_id("a:b/c+d=e@f") and not names.is_job_id("a b") and not names.is_job_id("x" * 201)


@pytest.mark.parametrize("result", [None, {"ok": 1}, [1, "é"], "text"])
def test_a_first_run_success_done_record_is_the_same_json_whichever_way_it_is_built(result):
    fast = records.encode_done("succeeded", 1, None, result, None, "email.send")
    slow = records.encode_done("succeeded", 1, None, result, "x", "email.send")  # a reason takes the dict path
    assert json.loads(fast) == {**json.loads(slow), "x": None}
    assert records.decode_done("a", fast) == records.decode_done("a", slow).__class__(
        id="a", state="succeeded", attempts=1, result=result)
    with pytest.raises((TypeError, ValueError)):
        records.encode_done("succeeded", 1, None, object(), None, "email.send")
