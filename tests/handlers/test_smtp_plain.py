"""The SMTP handler writes plain mails out directly: byte for byte what the email package makes of them."""

from __future__ import annotations

import random
import re

from geoq.handlers.smtp import _BUILD, _message, _plain_message, build_envelope

SENDERS = ["bench@example.com", "Geoq Bench <noreply@mail.example.org>", "a.b+tag@x-y.example", "A <a@b.co>"]
ADDRESSES = ["user@example.com", "first.last@sub.example.org", "x_y-z+1@a.io", "u1@example.com"]
SUBJECTS = ["hello", "Order #1234 (paid): thanks!", "a" * 60, "a" * 69, "a" * 70, "[ticket] re: 50% off; ok?",
            "", "two  spaces", " leading", "=?utf-8?q?x?=", "caf\u00e9", "tab\there"]
LINES = ["hello", "", "x" * 78, "x" * 79, "trailing spaces   ", "\tindented", ". a dot", "From the start",
         "punctuation !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "caf\u00e9", "bell\a"]
ENDS = ["\n", "\r\n", "\r", ""]


def payloads(count: int) -> list[dict]:
    rng = random.Random(13)
    made = []
    for _ in range(count):
        lines = [rng.choice(LINES) + rng.choice(ENDS) for _ in range(rng.randrange(0, 6))]
        payload = {"to": rng.sample(ADDRESSES, rng.randrange(1, 4)), "subject": rng.choice(SUBJECTS),
                   "body": "".join(lines)}
        if rng.random() < 0.3:
            payload["cc"] = rng.choice(ADDRESSES)
        if rng.random() < 0.2:
            payload["to"] = []
            payload["bcc"] = rng.choice(ADDRESSES)
        if rng.random() < 0.2:
            payload["to"] = rng.choice(ADDRESSES)  # one address as a string
        made.append(payload)
    return made


def as_list(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else value


def test_every_plain_mail_is_the_email_packages_bytes():
    written = 0
    for sender in SENDERS:
        for payload in payloads(300):
            to, cc = as_list(payload.get("to")), as_list(payload.get("cc"))
            plain = _plain_message(payload, sender, to, cc)
            if plain is None:
                continue
            written += 1
            date = re.search(rb"\r\nDate: (.*?)\r\n", plain[0])[1].decode()
            stamped = {**payload, "headers": {"Date": date, "Message-ID": plain[1]}}
            assert plain[0] == _message(stamped, sender, to, cc).as_bytes(policy=_BUILD), payload
    assert written > 200  # many shapes above are plain; the others take the email package's way


def test_a_plain_mail_and_one_that_is_not_both_reach_their_envelope():
    plain = build_envelope({"to": "a@example.com", "bcc": "b@example.com", "subject": "s", "body": "b"},
                           "Me <me@example.com>")
    other = build_envelope({"to": "a@example.com", "subject": "caf\u00e9", "body": "b"}, "me@example.com")
    assert plain.recipients == ("a@example.com", "b@example.com") and plain.sender == "me@example.com"
    assert b"\r\nMessage-ID: " + plain.message_id.encode() + b"\r\n" in plain.data
    assert b"Subject: =?utf-8?q?caf=C3=A9?=" in other.data and not other.international
