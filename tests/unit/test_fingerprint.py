"""geoq.fingerprint: what varies between jobs is masked, what names the failure is kept."""

from __future__ import annotations

import hashlib

import pytest

from geoq import fingerprint
from geoq.fingerprint import error_parts, mask, title, title_of_record

MASKED = {
    "connect to 10.0.0.12:6379 timed out": "connect to <ip> timed out",
    "connect to [2001:db8::1]:25 failed": "connect to [<ip>]:<num> failed",
    "fe80::1ff:fe23:4567:890a unreachable": "<ip> unreachable",
    "mailbox bob.smith+tag@example.co.uk is full": "mailbox <email> is full",
    "GET https://api.example.com/v1/users/42?x=1 returned 503": "GET <url> returned <num>",
    "user123 not found": "user<num> not found",
    "order 8f14e45f-ceea-467f-a0e4-bd3c1d2c3f11 missing": "order <uuid> missing",
    "invalid token abc123def4567890": "invalid token <hex>",
    "object at 0x7f3a2c1b9d90 is gone": "object at <hex> is gone",
    "charge ch_3MqLiJLkdIwHu7ix0snN0B15 failed": "charge <id> failed",
    "cannot reach smtp.mail-relay.internal:587 after 3 tries": "cannot reach <host> after <num> tries",
    "redis at localhost:6379 is loading": "redis at <host> is loading",
    "lookup of db-1.prod.example.com failed": "lookup of <host> failed",
    "no route for job type 'report.build'": "no route for job type '<str>'",
    'field "email" is required': 'field "<str>" is required',
    "took 3.5s for 1,234 rows": "took <num>s for <num> rows",
    "at 12:30:45 the lock expired": "at <num>:<num>:<num> the lock expired",
    "  many\n lines\tand   spaces ": "many lines and spaces",
}

KEPT = [
    "Connection refused",
    "module geoq.errors has no attribute Fail",   # dotted names that are not hosts stay
    "deadbeef cafe",                              # words made of hex letters stay
    "HTTPSConnectionPool is full",
]


@pytest.mark.parametrize("message", list(MASKED))
def test_what_varies_between_jobs_is_masked(message: str) -> None:
    assert mask(message) == MASKED[message]


@pytest.mark.parametrize("message", KEPT)
def test_what_names_the_failure_is_kept(message: str) -> None:
    assert mask(message) == message


def test_a_long_message_is_cut_to_the_title_length() -> None:
    assert len(mask("x" * 10_000)) == fingerprint.MAX_TITLE


def test_messages_that_differ_only_in_ids_share_a_fingerprint_and_others_do_not() -> None:
    a = title("mail", "email.send", "max_retries", "SMTPDataError: 550 mailbox a1@x.com unknown (id 81723)")
    b = title("mail", "email.send", "max_retries", "SMTPDataError: 552 mailbox zed@y.org unknown (id 9)")
    assert a.fingerprint == b.fingerprint and a.message == "<num> mailbox <email> unknown (id <num>)"
    assert a.error_type == "SMTPDataError" and len(a.fingerprint) == fingerprint.DIGEST_CHARS
    others = [title("bulk", "email.send", "max_retries", "SMTPDataError: 550 x"),
              title("mail", "email.other", "max_retries", "SMTPDataError: 550 x"),
              title("mail", "email.send", "max_retries", "SMTPAuthError: 550 x"),
              title("mail", "email.send", "max_retries", "SMTPDataError: 550 y")]
    assert len({t.fingerprint for t in others} | {a.fingerprint}) == 5


@pytest.mark.parametrize(("reason", "error", "parts"), [
    ("max_retries", "ValueError: bad id 7", ("ValueError", "bad id <num>")),
    ("max_retries", "requests.exceptions.ConnectTimeout: timed out", ("requests.exceptions.ConnectTimeout",
                                                                      "timed out")),
    ("max_retries", "KeyError", ("KeyError", "")),
    ("max_retries", "Timeout: handler ran past its timeout", ("Timeout", "handler ran past its timeout")),
    ("fail", "Fail: customer 12 closed", ("Fail", "customer <num> closed")),
    ("max_deliveries", "its worker died during 3 runs", ("max_deliveries", fingerprint.MAX_DELIVERIES_TITLE)),
    ("expired", "Expired: not started by its expiry at 1765000000.123", ("expired", fingerprint.EXPIRED_TITLE)),
    ("expired", "Expired: not started by its expiry", ("expired", fingerprint.EXPIRED_TITLE)),
    ("unknown_type", "no route for job type 'x.y'", ("unknown_type", "no route for job type '<str>'")),
    ("oversize", "job is 2000000 bytes; the limit is 1048576", ("oversize", "job is <num> bytes; the limit is <num>")),
    ("", "something", ("unknown", "something")),
])
def test_the_error_type_is_the_exception_or_else_the_reason(reason: str, error: str, parts: tuple[str, str]) -> None:
    assert error_parts(reason, error) == parts


def test_the_digest_is_the_one_the_lua_scripts_compute() -> None:
    # reap.lua and promote.lua: string.sub(redis.sha1hex(queue .. '\31' .. type .. '\31' .. reason .. '\31' .. TITLE), 1, 16)
    text = "default\x1ft.job\x1fmax_deliveries\x1f" + fingerprint.MAX_DELIVERIES_TITLE
    assert title("default", "t.job", "max_deliveries", "x").fingerprint == hashlib.sha1(text.encode()).hexdigest()[:16]


def test_a_record_that_is_not_a_json_object_groups_under_unknown() -> None:
    assert title_of_record("q", b"not json").error_type == "unknown"
    assert title_of_record("q", b"[1]") == title("q", None, "", "")
    record = b'{"id":"q:1","type":"t","reason":"fail","error":"Fail: no 5"}'
    assert title_of_record("q", record) == title("q", "t", "fail", "Fail: no 5")


def test_a_title_describes_its_group_as_json() -> None:
    t = title("q", "t", "max_retries", "ValueError: é 5")
    assert t.meta() == '{"type":"t","error_type":"ValueError","message":"é <num>"}'.encode()
