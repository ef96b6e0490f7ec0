"""Error fingerprints: which dead jobs failed the same way. Pure.

Dead jobs group by their queue, job type, exception type (or, for a death no exception
caused, its reason) and error message with what varies from job to job masked: URLs,
e-mail addresses, quoted strings, uuids and other hex ids, IP addresses, host names and
numbers (digits inside a name too: ``user123`` is ``user<num>``). The fingerprint is a
short digest of those four parts; the masked message is the group's title.

Two scripts bury jobs without Python at hand (reap.lua: max_deliveries, promote.lua:
expired): they compute the same digest with redis.sha1hex over `digest_text`, with the
fixed titles below, which tests/unit/test_fingerprint.py pins against these functions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from geoq.records import json_object

SEPARATOR = "\x1f"   # between the digest's parts: a character no part holds in practice
DIGEST_CHARS = 16    # 64 bits: ~250 groups per queue collide with odds of 1 in 10^15
MAX_TITLE = 300      # characters of masked message kept (and digested): the rest is detail

EXPIRED_TITLE = "Expired: not started by its expiry"           # promote.lua uses this title
MAX_DELIVERIES_TITLE = "its worker died during <num> runs"     # reap.lua uses this title

_FIXED_TITLES = {"expired": EXPIRED_TITLE, "max_deliveries": MAX_DELIVERIES_TITLE}   # as the scripts title them
_EXCEPTION_RAISED = ("max_retries", "fail")   # reasons whose error names an exception: "Type: message"
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?:: ?(.*))?$", re.S)

_TLDS = ("com|net|org|io|dev|app|co|uk|de|fr|nl|se|ch|it|es|pl|ru|jp|cn|br|in|us|eu|ca|au|info|biz|"
         "local|internal|lan|localdomain|edu|gov|me|tv|xyz|cloud|ai|svc|cluster")
# Each pattern with its mask and the text that must be there for it to match at all (checking
# that first is what makes a mask cheap: a pattern tried at every character of a message costs
# 5-15 us each, and a worker masks every job it buries), applied in this order: a later one
# never sees what an earlier one replaced (a URL holds a host, an e-mail address a name).
_MASKS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"), "<url>", "://"),
    (re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<email>", "@"),
    (re.compile(r"'[^'\n]{0,200}'"), "'<str>'", "'"),
    (re.compile(r'"[^"\n]{0,200}"'), '"<str>"', '"'),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>", "-"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>", "."),
    (re.compile(r"(?<![\w:])(?:(?=[0-9a-fA-F:]*::)[0-9a-fA-F:]{2,39}|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4})(?![\w:])"),
     "<ip>", ":"),
    (re.compile(r"\b(?:[A-Za-z0-9-]+\.)+(?:" + _TLDS + r")\b(?::\d+)?(?!\.\w)", re.I), "<host>", "."),
    (re.compile(r"\b(?:localhost|[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+):\d{2,5}\b"), "<host>", ":"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>", "0x"),
)
_WORD = re.compile(r"\b\w{8,}\b")                 # a long word: a hex id or a mixed id, or not
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGIT_RUNS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACES = re.compile(r"\s+")


def mask(message: str) -> str:
    """The message with whatever varies between jobs masked, on one line, at most MAX_TITLE long."""
    for pattern, replacement, needs in _MASKS:
        if needs in message:
            message = pattern.sub(replacement, message)
    if any(c.isdigit() for c in message):
        message = _NUMBER.sub("<num>", _WORD.sub(_long_word, message))
    return _SPACES.sub(" ", message).strip()[:MAX_TITLE]


def _long_word(found: re.Match[str]) -> str:
    """A hex id (digits and a-f letters, both) or a mixed id (letters between two runs of
    digits: ch_3MqLiJ7ix0snN0B15) is masked whole; other words keep their letters."""
    word = found[0]
    if word.isdigit() or not any(c.isdigit() for c in word):
        return word
    if _HEX.fullmatch(word):
        return "<hex>"
    return "<id>" if len(_DIGIT_RUNS.findall(word)) >= 2 else word


def digest_text(queue: str, job_type: str, error_type: str, masked: str) -> str:
    """What the fingerprint digests (the Lua scripts build the same string)."""
    return SEPARATOR.join((queue, job_type, error_type, masked))


def fingerprint(queue: str, job_type: str, error_type: str, masked: str) -> str:
    """The group's short hex digest of its four parts; `masked` is mask()'s output."""
    text = digest_text(queue, job_type, error_type, masked)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True, slots=True)
class Title:
    """What names a group: its fingerprint and the parts it digests."""

    fingerprint: str
    queue: str
    type: str         # "" when the job's type is unknown
    error_type: str   # the exception's class name, or the death's reason when no exception caused it
    message: str      # masked

    def meta(self) -> bytes:
        """The group's stored description (geoq.broker.groups keeps one per group)."""
        return json.dumps({"type": self.type, "error_type": self.error_type, "message": self.message},
                          separators=(",", ":"), ensure_ascii=False).encode()


def error_parts(reason: str, error: str) -> tuple[str, str]:
    """(error type, masked message) of a death: an exception's "Type: message" split, else the
    reason as the type and the whole error masked."""
    if reason in _FIXED_TITLES:   # expired when promoted or when fetched: one group either way
        return reason, _FIXED_TITLES[reason]
    if reason in _EXCEPTION_RAISED:
        found = _EXCEPTION.match(error.strip())
        if found:
            return found[1], mask(found[2] or "")
    return reason or "unknown", mask(error)


def title_of_record(queue: str, record: bytes) -> Title:
    """The group of a dead record (geoq.records.encode_dead's JSON, or any bytes: a record that
    is not a JSON object groups as reason "unknown")."""
    body = json_object(record)
    return title(queue, _text(body.get("type")), _text(body.get("reason")) or "", _text(body.get("error")) or "")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def title(queue: str, job_type: str | None, reason: str, error: str) -> Title:
    """The group a dead job belongs to."""
    error_type, masked = error_parts(reason, error)
    kind = job_type or ""
    return Title(fingerprint(queue, kind, error_type, masked), queue, kind, error_type, masked)
