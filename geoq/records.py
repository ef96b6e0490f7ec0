"""Every record geoq stores in Redis, encoded and decoded in one place. Pure.

Four records, each with the Lua scripts that read or write it as text (a script never decodes
a payload, so each mirrors a part of the layout below; change both together):

**Envelope** (a queued job; the list or set holding it names its queue). One JSON object,
keys in this order:

    {"i": id, "a": runs_made, "d": worker_deaths?, "t": type, "x": expires_at?, "e": enqueued_at,
     "u": due_at?, "m": max_retries?, "o": timeout?, "h": [[at, error], ...]?, "c": meta?,
     "k": unique_lock?, "w": unique_for?, "p": payload}

The id comes first and is restricted to characters JSON never escapes (geoq.names), and the
run counters follow it as bare integers, so a script can read and rewrite this header with one
anchored string match (Lua's cjson would rewrite numbers and empty arrays). The payload comes
last. Mirrored by reap.lua (rewrites "a" and "d", reads "t"), dead_retry.lua (reads "i") and
dead.lua (stores the envelope's bytes in the dead record); `peek_id` reads "i" the same way.
promote.lua reads "x" where it stands, right after "t" (an envelope without it, as every
envelope before expiry was added, never expires), and buries an expired job with a record
mirroring the dead record below.

**State value** (the per-queue state hash, one per job still queued, scheduled or running):
"state|attempts|due_at|last_error", a job waiting for its retry adding "\\n" and its last
run's traceback. Mirrored by enqueue.lua ("q|0||", "s|0|due|"), retry.lua (writes "s|..."
around `state_detail`) and reap.lua ("q|runs||worker died ..."); mark.lua, handback.lua,
dead_retry.lua and tick.lua store values built here. Two codes belong to cancels (cancel.lua):
"c" a waiting job that is cancelled (its envelope, if still in the ready list, is dropped by
fetch.lua) and "x" a running job whose cancel is asked for (fetch.lua, mark.lua, retry.lua,
handback.lua and reap.lua honour both).

**Done record** (results.keep: a finished job's status and result, under a key with a TTL):
{"s": state, "t": type, "a": attempts, "e": last_error, "r": result, "x": dead_reason,
"tb": traceback?}. Mirrored by reap.lua (a job dead by max_deliveries) and cancel.lua (a
cancelled job, its type null when only its id was at hand); ack.lua, dead.lua, cancelled.lua and
Broker.promote_due (a job that expired before it was promoted) store records built here.

**Dead record** (a member of the queue's dead set, scored by Redis time of death):
{"id", "type", "queue", "reason", "error", "attempts", "history", "died_at", "traceback",
then "envelope" (text) or "envelope_hex" (bytes that are not UTF-8)}. dead.lua appends the
envelope to a record built here; reap.lua writes whole ones (max_deliveries: no history,
queue nor traceback, which `DeadRecord` reads as empty). Every script that buries puts the
record's group and sequence number first, {"fp": FINGERPRINT, "seq": N, ...}, for the
dead-set index (geoq.broker.groups; records of an older geoq lack them until rebuilt).
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from geoq.errors import InvalidJob, PayloadTooLarge
from geoq.job import Job, JobControl, JobStatus, built

HISTORY_KEPT = 10  # the last N errors ride along in the envelope; older ones are dropped
META_LIMIT = 4096  # bytes of encoded job.meta: it is copied on every move of the job
NO_LIMIT = 2 ** 31  # max_size for a job already stored: the worker enforces the limit when it fetches it

_NUMBER = (int, float)   # exact types: a bool is not a number here
_INF = float("inf")
_EMPTY: Mapping[str, Any] = MappingProxyType({})  # a job's meta or options when it has none: shared, read-only
# json.dumps builds a new encoder for every call with options; jobs are encoded on every run.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# _COMPACT.encode itself makes json's C encoder afresh on every call (two Python calls, a
# markers dict): half of encoding a small result. This is that C encoder, made once, without
# the circular-reference check; a circular value overflows the recursion instead, and is
# then encoded by _COMPACT, whose error (or whose success) is the answer.
_MAKE_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)   # None where json lacks its C part
_C_ENCODE: Callable[[Any, int], tuple[str, ...]] | None = _MAKE_C_ENCODER and _MAKE_C_ENCODER(
    None, _COMPACT.default, getattr(json.encoder, "c_encode_basestring"), None, ":", ",", False, False, False)
# json.loads is three Python calls and two whitespace matches around this C scanner; envelopes
# are read on every run. The scanner is json's own (its default decoder's), so values are the same.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


# --- envelope ---------------------------------------------------------------------------------

def encode(job: Job, max_size: int) -> bytes:
    """The envelope bytes; PayloadTooLarge past max_size, InvalidJob if the payload or meta is not
    JSON or the meta is not a small object."""
    if (job.attempt == 0 and job.due_at is None and job.control is None and job.max_retries is None
            and job.timeout is None and not job.meta and not job.deaths and not job.history):
        return _encode_plain(job, max_size)
    body: dict[str, Any] = {"i": job.id, "a": job.attempt}
    if job.deaths:
        body["d"] = job.deaths
    body["t"] = job.type
    control = job.control
    if control is not None and control.expires_at is not None:
        body["x"] = round(control.expires_at, 3)
    body["e"] = round(job.enqueued_at, 3)
    if job.due_at is not None:
        body["u"] = round(job.due_at, 3)
    if job.max_retries is not None:
        body["m"] = job.max_retries
    if job.timeout is not None:
        body["o"] = job.timeout
    if job.history:
        body["h"] = [list(entry) for entry in job.history[-HISTORY_KEPT:]]
    if job.meta:
        body["c"] = _checked_meta(job)
    if control is not None and control.unique_key is not None:
        body["k"] = control.unique_key
        body["w"] = control.unique_for or 0
    body["p"] = job.payload
    try:
        raw = _dumps(body).encode()
    except (TypeError, ValueError) as e:
        raise InvalidJob(f"payload of {job.type} is not JSON-serialisable: {e}") from e
    return _sized(job, raw, max_size)


def _encode_plain(job: Job, max_size: int) -> bytes:
    """encode() of a job as most producers enqueue it (no option, never run): the same bytes,
    written around the payload's encoding instead of encoding a dict, at half the cost. The id
    goes in as it is: ids hold only characters JSON never escapes (geoq.names)."""
    try:
        payload = _dumps(job.payload).encode()
    except (TypeError, ValueError) as e:
        raise InvalidJob(f"payload of {job.type} is not JSON-serialisable: {e}") from e
    raw = b'{"i":"%s","a":0,"t":%s,"e":%s,"p":%s}' % (
        job.id.encode(), _json_text(job.type), _time_text(job.enqueued_at), payload)
    return _sized(job, raw, max_size)


def _sized(job: Job, raw: bytes, max_size: int) -> bytes:
    if len(raw) > max_size:
        raise PayloadTooLarge(f"job {job.id} of type {job.type} is {len(raw)} bytes encoded; the limit is {max_size}")
    return raw


def _dumps(value: Any) -> str:
    """_COMPACT.encode(value): the same text, or the same error."""
    if _C_ENCODE is None:
        return _COMPACT.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        return _COMPACT.encode(value)


def meta_size(meta: Mapping[str, Any]) -> int:
    """Bytes `meta` takes encoded, the measure META_LIMIT bounds; TypeError or ValueError if it is not JSON."""
    return len(_dumps(dict(meta)).encode())


def _checked_meta(job: Job) -> Mapping[str, Any]:
    """job.meta as stored: an object of string keys, JSON, at most META_LIMIT bytes encoded."""
    meta = job.meta
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise InvalidJob(f"meta of {job.type} must be a dict with string keys, got {meta!r:.100}")
    try:
        size = meta_size(meta)
    except (TypeError, ValueError) as e:
        raise InvalidJob(f"meta of {job.type} is not JSON-serialisable: {e}") from e
    if size > META_LIMIT:
        raise InvalidJob(f"meta of {job.type} is {size} bytes encoded; the limit is {META_LIMIT}")
    return meta


def decode(raw: bytes, queue: str) -> Job:
    """The Job in an envelope; InvalidJob with .reason 'undecodable' or 'not_a_job'."""
    return from_body(parse(raw), queue)


def parse(raw: bytes) -> dict[str, Any]:
    """An envelope's JSON object, not yet checked to be a job; InvalidJob 'undecodable' or 'not_a_job'."""
    try:
        body = _loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _invalid("undecodable", f"bytes are not UTF-8 JSON: {e}") from e
    if not isinstance(body, dict):
        raise _invalid("not_a_job", f"JSON {type(body).__name__} is not a job object")
    return body


def _loads(text: str) -> Any:
    """json.loads(text): the scanner alone when the text is one JSON value with nothing around it
    (every envelope geoq writes); json.loads otherwise, so any other text and every error are its."""
    try:
        value, end = _SCAN(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def from_body(body: dict[str, Any], queue: str, *, run: bool = False,
              options: Mapping[str, Any] | None = None) -> Job:
    """The Job of a parsed envelope; with run=True, as handed to a handler (attempt = this run's number)."""
    try:
        return _from_body(body, queue, 1 if run else 0, options)
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid("not_a_job", f"JSON object is not a job: {e!r}") from e


def _from_body(body: dict[str, Any], queue: str, next_run: int, options: Mapping[str, Any] | None) -> Job:
    # Runs for every job a worker fetches: exact type checks (`type(x) is int` also refuses a
    # bool) and no generator for the common empty history or meta.
    job_id, job_type, runs, deaths = body["i"], body["t"], body.get("a", 0), body.get("d", 0)
    if type(job_id) is not str or type(job_type) is not str or not job_id or not job_type:
        raise ValueError("'i' and 't' must be non-empty strings")
    if type(runs) is not int or type(deaths) is not int or runs < 0 or deaths < 0:
        raise ValueError("'a' and 'd' must be non-negative integers")
    meta = body.get("c")
    if meta is None:
        meta = _EMPTY
    elif type(meta) is not dict:
        raise ValueError("'c' (meta) must be an object")
    past = body.get("h")
    history = tuple((float(at), str(err)) for at, err in past) if past else ()
    max_retries, timeout, due_at = body.get("m"), body.get("o"), body.get("u")
    if max_retries is not None and (type(max_retries) is not int or max_retries < 0):
        raise ValueError("'m' (max_retries) must be a non-negative integer")
    if timeout is not None and (type(timeout) not in _NUMBER or not 0 < timeout < _INF):
        raise ValueError("'o' (timeout) must be a positive number of seconds")
    if due_at is not None and type(due_at) not in _NUMBER:
        raise ValueError("'u' (due_at) must be a number")
    return built(id=job_id, type=job_type, queue=queue, payload=body.get("p"),
                 attempt=runs + next_run, enqueued_at=float(body.get("e", 0.0)), max_retries=max_retries,
                 timeout=timeout, history=history, deaths=deaths, due_at=due_at, meta=meta,
                 options=_EMPTY if options is None else options,
                 control=_control(body) if "x" in body or "k" in body else None)


def _control(body: dict[str, Any]) -> JobControl:
    # A foreign envelope's wrong types would otherwise fail where they are compared: the
    # worker's fetch loop, for an expiry.
    expires_at, unique_key, unique_for = body.get("x"), body.get("k"), body.get("w")
    if expires_at is not None and type(expires_at) not in _NUMBER:
        raise ValueError("'x' (expires_at) must be a number")
    if unique_key is not None and type(unique_key) is not str:
        raise ValueError("'k' (unique key) must be a string")
    if unique_for is not None and (type(unique_for) not in _NUMBER or unique_for < 0):
        raise ValueError("'w' (unique_for) must be a non-negative number")
    return JobControl(expires_at, unique_key, unique_for)


def _invalid(reason: str, message: str) -> InvalidJob:
    error = InvalidJob(message)
    error.reason = reason  # type: ignore[attr-defined]
    return error


def is_utf8(raw: bytes) -> bool:
    """Whether bytes are UTF-8 text, checked in slices: an oversize envelope may be megabytes,
    and decoding it whole would copy it (up to four times its size, as a str)."""
    if raw.isascii():
        return True
    decoder, view = codecs.getincrementaldecoder("utf-8")(), memoryview(raw)
    try:
        for start in range(0, len(view), _CHECK_SLICE):
            decoder.decode(view[start:start + _CHECK_SLICE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


_CHECK_SLICE = 1 << 16
_HEADER_ID = re.compile(rb'^\{"i":"([A-Za-z0-9._:@/+=-]{1,200})"')  # names.JOB_ID, anchored as the scripts anchor it


def peek_id(raw: bytes) -> str | None:
    """The id of an envelope without decoding it (None when the bytes are not ours)."""
    match = _HEADER_ID.match(raw)
    return match.group(1).decode() if match else None


_HEADER_TYPE = re.compile(rb'^\{"i":"[^"]+","a":\d+,(?:"d":\d+,)?"t":"((?:[^"\\]|\\.)*)"')


def peek_type(raw: bytes) -> str | None:
    """The type an envelope's header names, without decoding the payload (None when not ours)."""
    match = _HEADER_TYPE.match(raw)
    if match is None:
        return None
    try:
        return str(json.loads(b'"' + match.group(1) + b'"'))
    except ValueError:
        return None


# --- state value ------------------------------------------------------------------------------
# Small, because it costs memory per queued job. The traceback of a job waiting for its retry is
# kept here, not in the envelope (which every fetch and retry moves and max_payload counts, so a
# failure could push a job over the limit) nor under a key of its own (every way a job ends,
# purge and reap included, already deletes its state entry, so nothing can outlive it). It costs
# about its own length, at most tracebacks.LIMIT, and only while the job waits (measured on
# Redis 7.0: a 340-byte traceback adds 368 bytes per waiting job here; a key of its own would take 554).
_STATE_CODES = {"q": "queued", "s": "scheduled", "r": "running", "x": "running", "c": "cancelled"}


def state_detail(last_error: str | None, traceback: str | None = None) -> str:
    """The end of a state value: the last error on one line, then the traceback after a newline."""
    detail = (last_error or "").replace("\n", " ")
    return f"{detail}\n{traceback}" if traceback else detail


def encode_state(state: str, attempts: int, due_at: float | None = None, last_error: str | None = None,
                 traceback: str | None = None) -> str:
    due = "" if due_at is None else f"{due_at:.3f}"
    return f"{state[0]}|{attempts}|{due}|{state_detail(last_error, traceback)}"


def decode_state(job_id: str, value: bytes, now: float) -> JobStatus:
    """A live job's status; a scheduled job already due counts as queued (promotion may lag)."""
    code, attempts, due, detail = value.decode("utf-8", "replace").split("|", 3)
    error, _, traceback = detail.partition("\n")
    due_at = float(due) if due else None
    state = _STATE_CODES.get(code, "queued")
    if state == "scheduled" and due_at is not None and due_at <= now:
        state = "queued"
    return JobStatus(id=job_id, state=state, attempts=int(attempts), last_error=error or None, due_at=due_at,
                     traceback=traceback or None)


# --- done record ------------------------------------------------------------------------------

def encode_done(state: str, attempts: int, last_error: str | None, result: Any, reason: str | None,
                job_type: str | None, traceback: str | None = None) -> bytes:
    """The record a finished job leaves for results.keep; TypeError or ValueError if the result is not JSON.
    It names the job's type: once the envelope is gone, nothing else in Redis does. A dead job's
    record holds its last run's traceback under "tb" (absent when there is none)."""
    if last_error is None and reason is None and not traceback:  # every first-run success: no dict to build
        value = b"null" if result is None else _dumps(result).encode()
        return b'{"s":%s,"t":%s,"a":%d,"e":null,"r":%s,"x":null}' % (_json_text(state), _json_text(job_type),
                                                                    attempts, value)
    body = {"s": state, "t": job_type, "a": attempts, "e": last_error, "r": result, "x": reason}
    if traceback:
        body["tb"] = traceback
    return _dumps(body).encode()


@functools.lru_cache(maxsize=1024)  # a worker's few job types and states, encoded once
def _json_text(text: str | None) -> bytes:
    return _dumps(text).encode()


@functools.lru_cache(maxsize=64)  # a batch's jobs share one enqueue time: rounded and written once
def _time_text(at: float) -> bytes:
    return _dumps(round(at, 3)).encode()


def done_type(raw: bytes) -> str | None:
    """The job type a done record names (None in a record written before it named one)."""
    job_type = json.loads(raw).get("t")
    return job_type if isinstance(job_type, str) else None


def decode_done(job_id: str, raw: bytes) -> JobStatus:
    body = json.loads(raw)
    return JobStatus(id=job_id, state=body["s"], attempts=body["a"], last_error=body.get("e"),
                     result=body.get("r"), reason=body.get("x"), traceback=body.get("tb"))


# --- dead record ------------------------------------------------------------------------------

def encode_dead(queue: str, job: Job | None, job_id: str, reason: str, error: str, died_at: float,
                traceback: str | None = None) -> bytes:
    """The dead record but for its envelope: who, why, the attempt history and the last run's
    traceback (None when no run raised).

    dead.lua adds the original bytes to retry from, as `envelope` (text) or `envelope_hex`
    (bytes that are not UTF-8), when it moves the job: an envelope of any size then crosses
    to Redis once, as the argument that names the job, and is never decoded or copied here.
    """
    body: dict[str, Any] = {"id": job_id, "type": job.type if job else None, "queue": queue, "reason": reason,
                            "error": error, "attempts": job.attempt if job else 0,
                            "history": [list(h) for h in job.history] if job else [],
                            "died_at": round(died_at, 3), "traceback": traceback}
    return _dumps(body).encode()


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """One member of a dead set, read. Fields a record lacks (or holds in the wrong type) read as
    empty, so a record from reap.lua, an older geoq or a stray member can still be listed and purged.
    `died_at` is the member's score (Redis time of death), which purges and trims measure against."""

    queue: str
    member: bytes   # the exact set member: moves name it byte for byte, never a re-encoded copy
    died_at: float
    body: Mapping[str, Any]

    @property
    def id(self) -> str:
        return _text(self.body.get("id")) or ""

    @property
    def type(self) -> str | None:
        return _text(self.body.get("type"))

    @property
    def traceback(self) -> str | None:
        return _text(self.body.get("traceback"))

    @property
    def fingerprint(self) -> str | None:
        """The record's group (geoq.fingerprint); None for a record an older geoq wrote, until rebuilt."""
        return _text(self.body.get("fp"))

    @property
    def envelope(self) -> str | None:
        """The original envelope as text; None when its bytes were not UTF-8 (held as hex) or absent."""
        return _text(self.body.get("envelope"))

    @property
    def history(self) -> list[tuple[float, str]]:
        out = []
        for item in self.body.get("history") or ():
            if isinstance(item, list) and len(item) == 2:
                out.append((float(item[0]), str(item[1])))
        return out

    def summary(self) -> dict[str, Any]:
        """The `dead list --json` shape. It leaves out the traceback: up to 8 KiB per job would
        swamp a list; `dead show` and `job` give it."""
        return {"id": self.id, "type": self.type, "queue": self.queue, "reason": self.body.get("reason"),
                "error": self.body.get("error"), "attempts": self.body.get("attempts", 0),
                "died_at": round(self.died_at, 3)}

    def full(self) -> dict[str, Any]:
        """Everything the record holds (the `dead show --json` shape)."""
        return {**self.body, **self.summary(), "history": [list(h) for h in self.history],
                "traceback": self.traceback}


def decode_dead(queue: str, member: bytes, died_at: float) -> DeadRecord:
    """The record in a dead-set member; a member that is not a JSON object reads as an empty record."""
    return DeadRecord(queue, member, died_at, json_object(member))


def json_object(value: bytes | str | None) -> dict[str, Any]:
    """A stored JSON object (a dead record, a worker's description, a group's title); {} when it is
    absent, not JSON or not an object, so one bad value never stops a listing."""
    try:
        found = json.loads(value) if value is not None else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
