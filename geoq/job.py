"""The job envelope: a frozen Job, its compact JSON form, and its status record. Pure.

Envelope layout (one JSON object, keys in this order):

    {"i": id, "a": runs_made, "d": worker_deaths?, "t": type, "e": enqueued_at,
     "u": due_at?, "m": max_retries?, "o": timeout?, "h": [[at, error], ...]?, "p": payload}

The id comes first and is restricted to characters JSON never escapes, and the
run counters follow it as bare integers, so a Lua script can read and rewrite
this header with one anchored string match without decoding the payload
(Lua's cjson would rewrite numbers and empty arrays). The payload comes last.
The queue is not stored: the list a job sits in names it, and every byte here
costs Redis memory for every queued job.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from geoq.broker import keys
from geoq.errors import InvalidJob, PayloadTooLarge

STATES = ("queued", "scheduled", "running", "succeeded", "dead")
DEAD_REASONS = ("max_retries", "fail", "max_deliveries", "undecodable", "not_a_job", "unknown_type", "oversize")
HISTORY_KEPT = 10  # the last N errors ride along in the envelope; older ones are dropped

_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")
_NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})
# json.dumps builds a new encoder for every call with options; jobs are encoded on every run.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work. `attempt` is the number of the current run (1 on the first), 0 before any."""

    id: str
    type: str
    queue: str
    payload: Any
    attempt: int = 0
    enqueued_at: float = 0.0
    max_retries: int | None = None
    timeout: float | None = None
    history: tuple[tuple[float, str], ...] = ()
    deaths: int = 0
    due_at: float | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: _NO_OPTIONS, compare=False)

    @property
    def ready_at(self) -> float:
        """When the job could first start: its due time if it was delayed or retried, else its enqueue time."""
        return self.due_at if self.due_at is not None else self.enqueued_at

    @property
    def last_error(self) -> str | None:
        return self.history[-1][1] if self.history else None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What Client.status() reports. `result` is set only for a succeeded job that returned one.

    `traceback` is the formatted traceback of the last failed run (geoq.tracebacks): set while the
    job waits for its retry (scheduled, or queued once due) and once it is dead; None otherwise. A
    running job has none (the run under way supersedes it), nor has a job that never ran or whose
    last run ended in its worker's death.
    """

    id: str
    state: str
    attempts: int
    last_error: str | None = None
    result: Any = None
    reason: str | None = None
    due_at: float | None = None
    traceback: str | None = None


def new_id(queue: str) -> str:
    """A fresh id that names its queue, so status(id) can find the job's keys."""
    return f"{queue}:{urlsafe_b64encode(os.urandom(12)).decode()}"  # 16 characters, no padding


def queue_of_id(job_id: str) -> str | None:
    """The queue a generated id names, or None for an id a producer chose."""
    queue, sep, _ = job_id.rpartition(":")
    return queue if sep and keys.is_queue_name(queue) else None


def check_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _ID_RE.match(job_id):
        raise InvalidJob(f"job id {job_id!r} must be 1-200 characters of A-Z a-z 0-9 . _ : @ / + = -")
    return job_id


def check_queue(queue: str) -> str:
    if not keys.is_queue_name(queue):
        raise InvalidJob(f"queue name {queue!r} must be {keys.QUEUE_NAME_RULE}")
    return queue


def encode(job: Job, max_size: int) -> bytes:
    """The envelope bytes; PayloadTooLarge past max_size, InvalidJob if the payload is not JSON."""
    body: dict[str, Any] = {"i": job.id, "a": job.attempt}
    if job.deaths:
        body["d"] = job.deaths
    body.update(t=job.type, e=round(job.enqueued_at, 3))
    if job.due_at is not None:
        body["u"] = round(job.due_at, 3)
    if job.max_retries is not None:
        body["m"] = job.max_retries
    if job.timeout is not None:
        body["o"] = job.timeout
    if job.history:
        body["h"] = [list(entry) for entry in job.history[-HISTORY_KEPT:]]
    body["p"] = job.payload
    try:
        raw = _COMPACT.encode(body).encode()
    except (TypeError, ValueError) as e:
        raise InvalidJob(f"payload of {job.type} is not JSON-serialisable: {e}") from e
    if len(raw) > max_size:
        raise PayloadTooLarge(f"job {job.id} of type {job.type} is {len(raw)} bytes encoded; the limit is {max_size}")
    return raw


def decode(raw: bytes, queue: str) -> Job:
    """The Job in an envelope; InvalidJob with .reason 'undecodable' or 'not_a_job'."""
    return from_body(parse(raw), queue)


def parse(raw: bytes) -> dict[str, Any]:
    """An envelope's JSON object, not yet checked to be a job; InvalidJob 'undecodable' or 'not_a_job'."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _invalid("undecodable", f"bytes are not UTF-8 JSON: {e}") from e
    if not isinstance(body, dict):
        raise _invalid("not_a_job", f"JSON {type(body).__name__} is not a job object")
    return body


def from_body(body: dict[str, Any], queue: str, *, run: bool = False,
              options: Mapping[str, Any] | None = None) -> Job:
    """The Job of a parsed envelope; with run=True, as handed to a handler (attempt = this run's number)."""
    try:
        return _from_body(body, queue, 1 if run else 0, options)
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid("not_a_job", f"JSON object is not a job: {e!r}") from e


def _from_body(body: dict[str, Any], queue: str, next_run: int, options: Mapping[str, Any] | None) -> Job:
    job_id, job_type, runs, deaths = body["i"], body["t"], body.get("a", 0), body.get("d", 0)
    if not isinstance(job_id, str) or not isinstance(job_type, str) or not job_id or not job_type:
        raise ValueError("'i' and 't' must be non-empty strings")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (runs, deaths)):
        raise ValueError("'a' and 'd' must be non-negative integers")
    history = tuple((float(at), str(err)) for at, err in body.get("h", ()))
    return Job(id=job_id, type=job_type, queue=queue, payload=body.get("p"),
               attempt=runs + next_run, enqueued_at=float(body.get("e", 0.0)), max_retries=body.get("m"),
               timeout=body.get("o"), history=history, deaths=deaths, due_at=body.get("u"),
               options=_NO_OPTIONS if options is None else options)


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


def peek_id(raw: bytes) -> str | None:
    """The id of an envelope without decoding it (None when the bytes are not ours)."""
    match = re.match(rb'^\{"i":"([A-Za-z0-9._:@/+=-]{1,200})"', raw)
    return match.group(1).decode() if match else None


# The per-queue state hash holds "state|attempts|due_at|last_error" for every job
# still queued, scheduled or running: small, because it costs memory per queued job.
# A job waiting for its retry adds "\n" and its last run's traceback: kept here, not in
# the envelope (which every fetch and retry moves and max_payload counts, so a failure
# could push a job over the limit) nor under a key of its own (every way a job ends,
# purge and reap included, already deletes its state entry, so nothing can outlive it).
# It costs about its own length, at most tracebacks.LIMIT, and only while the job waits
# (measured on Redis 7.0: a 340-byte traceback adds 368 bytes per waiting job here; a key
# of its own would take 554).
# Mirrored by retry.lua (appends state_detail) and reap.lua (writes a traceback-less value).
_STATE_CODES = {"q": "queued", "s": "scheduled", "r": "running"}


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


def encode_done(state: str, attempts: int, last_error: str | None, result: Any, reason: str | None,
                job_type: str | None, traceback: str | None = None) -> bytes:
    """The record a finished job leaves for results.keep; TypeError or ValueError if the result is not JSON.
    It names the job's type: once the envelope is gone, nothing else in Redis does. A dead job's
    record holds its last run's traceback under "tb" (absent when there is none)."""
    body = {"s": state, "t": job_type, "a": attempts, "e": last_error, "r": result, "x": reason}
    if traceback:
        body["tb"] = traceback
    return _COMPACT.encode(body).encode()


def done_type(raw: bytes) -> str | None:
    """The job type a done record names (None in a record written before it named one)."""
    job_type = json.loads(raw).get("t")
    return job_type if isinstance(job_type, str) else None


def decode_done(job_id: str, raw: bytes) -> JobStatus:
    body = json.loads(raw)
    return JobStatus(id=job_id, state=body["s"], attempts=body["a"], last_error=body.get("e"),
                     result=body.get("r"), reason=body.get("x"), traceback=body.get("tb"))
