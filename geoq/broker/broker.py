"""The broker: one method per atomic move of a job in Redis. No policy lives here.

Every move is one command, one pipeline of independent single-key commands, or
one Lua script from scripts/. Methods that settle many jobs take them in
groups so the caller can batch a whole flush into one round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import redis
from redis.exceptions import NoScriptError

from geoq.broker import keys, replies
from geoq.broker.clock import redis_time
from geoq.broker.errors import redis_errors, translate
from geoq.broker.scripts import Call, Scripts, add, run

_SCRIPTS: Scripts | None = None
SCAN_COUNT = 1000  # keys or members per SCAN / ZSCAN call: few round trips, short ones
_PAGE = 500
_INLINE = 1 << 16  # envelopes above this many bytes are sent as they are (see _bulk)


def _scripts() -> Scripts:
    global _SCRIPTS  # read from package data once per process, on first use (never at import)
    if _SCRIPTS is None:
        _SCRIPTS = Scripts()
    return _SCRIPTS


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new job goes: the ready list's tail or head, or the scheduled set."""

    where: str = "tail"          # tail | head | delay | at
    value: float | None = None   # seconds for delay, unix time for at


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    envelope: bytes
    placement: Placement


# One per job settled, built on every job's path: NamedTuples, as immutable as a frozen
# dataclass and a third of its cost to build.
class Ack(NamedTuple):
    envelope: bytes
    id: str
    done: bytes


class RetryLater(NamedTuple):
    envelope: bytes
    new_envelope: bytes
    delay: float
    id: str
    attempts: int
    detail: str   # the state value's end: last error and traceback (geoq.records.state_detail)


class Bury(NamedTuple):
    envelope: bytes
    record: bytes  # a JSON object, all but the envelope, which dead.lua adds
    text: bool     # the envelope is UTF-8 (stored as text), else it is stored as hex
    id: str        # '' when the bytes carried no id we could read
    done: bytes


@dataclass(frozen=True, slots=True)
class Handback:
    envelope: bytes
    id: str
    state: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """Everything one flush settles in one queue for one worker; marks are written first."""

    queue: str
    marks: Sequence[tuple[str, str]] = ()   # (id, running state) of jobs that started
    acks: Sequence[Ack] = ()
    retries: Sequence[RetryLater] = ()
    burials: Sequence[Bury] = ()


@dataclass(frozen=True, slots=True)
class SettleResult:
    fenced: int                      # outcomes whose job was no longer ours: nothing written for them
    refused: list[Settlement]        # parts Redis refused; everything else was written
    error: Exception | None          # why the last refused part was refused


@dataclass(frozen=True, slots=True)
class Retention:
    keep: float          # seconds a done record is kept; 0 keeps none
    dead_max_jobs: int
    dead_max_age: float


class Broker:
    """Moves jobs between a queue's places. `client` is a redis.Redis built by connection.connect."""

    def __init__(self, client: "redis.Redis") -> None:
        self.client = client
        self.scripts = _scripts()

    # -- producing -----------------------------------------------------------------------------

    def enqueue(self, batches: Mapping[str, Sequence[NewJob]], chunk: int = 500) -> dict[str, list[bool]]:
        """Store new jobs, one script call per run of jobs with one placement in a queue (at most
        `chunk` jobs, which bounds how long one call holds Redis), all in one round trip, in order.

        Returns per queue one flag per job: True stored, False the id was already
        live (nothing written), so repeating a failed enqueue is always safe.
        """
        calls, owners = [], []
        for queue, jobs in batches.items():
            k = keys.queue_keys(queue)
            for placement, envelopes in _runs(jobs, chunk):
                value = "" if placement.value is None else repr(placement.value)
                calls.append(Call("enqueue", (k.ready, k.scheduled, k.state), [placement.where, value, *envelopes]))
                owners.append(queue)
        out: dict[str, list[bool]] = {queue: [] for queue in batches}
        with redis_errors("enqueue"):
            replies = run(self.client, self.scripts, calls)
        for queue, reply in zip(owners, replies):
            out[queue] += [flag == 1 for flag in reply]
        return out

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, client: "redis.Redis", queue: str, worker_id: str, n: int, block: float | None) -> list[bytes]:
        """Move up to n jobs from the ready list into this worker's processing list, in one round trip.

        A non-transactional pipeline: BLMOVE, blocking up to `block` seconds for the first job
        (none when block is None), then the fetch script, which LMOVEs the rest of the batch one
        by one and marks every job it moves (and BLMOVE's) running. Each move is atomic by
        itself, and a job stays in the processing list until it is settled. `client` is a
        connection whose read timeout exceeds `block`.
        """
        k = keys.queue_keys(queue)
        processing = k.processing(worker_id)
        rest = Call("fetch", (k.ready, processing, k.state), [n - 1 if block else n])
        with redis_errors("fetch"):
            if not block:
                return list(run(client, self.scripts, [rest])[0])
            pipe = client.pipeline(transaction=False)
            pipe.blmove(k.ready, processing, block, "LEFT", "RIGHT")  # type: ignore[arg-type]  # Redis takes a float
            add(pipe, self.scripts, rest)  # with n == 1 it moves nothing, but marks BLMOVE's job
            first, *more = pipe.execute(raise_on_error=False)
            if more and isinstance(more[0], NoScriptError):  # a restarted Redis: the script never ran
                more = run(client, self.scripts, [rest])
            for reply in (first, *more):
                if isinstance(reply, Exception):
                    raise reply  # a job moved by the other part waits in the processing list for reconciliation
            # The script's jobs count even when BLMOVE timed out: they may have come in between.
            return ([first] if first is not None else []) + (list(more[0]) if more else [])

    def processing(self, queue: str, worker_id: str) -> list[bytes]:
        """The jobs this worker holds in a queue (for handback and reconciliation)."""
        with redis_errors("processing"):
            return [replies.raw(e) for e in self.client.lrange(keys.queue_keys(queue).processing(worker_id), 0, -1)]

    # -- settling ------------------------------------------------------------------------------

    def settle(self, worker_id: str, settlements: Sequence[Settlement], retention: Retention,
               now: float | None = None) -> SettleResult:
        """Apply marks, acks, retries and burials of several queues in one round trip.

        Each part is its own atomic script; a part Redis refused (maxmemory, a read-only
        replica) comes back in `refused` to be tried again, while the parts it took stay
        done. A lost connection raises: then nothing is known, and replaying everything is
        safe because every move first checks that its job is still in the processing list.
        Retry delays count from `now` (a test harness's clock), else from Redis's TIME.
        """
        calls, parts = [], []
        for s in settlements:
            for call, part in self._settle_calls(worker_id, s, retention, now):
                calls.append(call)
                parts.append(part)
        if not calls:
            return SettleResult(0, [], None)
        with redis_errors("settle"):
            replies = run(self.client, self.scripts, calls, raise_errors=False)
        fenced, refused, error = 0, [], None
        for call, part, reply in zip(calls, parts, replies):
            if call.name == "trim":  # best effort (the next burial trims again); a long trim ends here
                if not isinstance(reply, Exception) and reply[1] > 0:
                    self.trim_dead(part.queue, retention)
            elif isinstance(reply, Exception):
                refused.append(part)
                error = translate(reply, "settle") if isinstance(reply, redis.RedisError) else reply
            elif call.name != "mark":
                fenced += len(reply)
        return SettleResult(fenced, refused, error)

    def _settle_calls(self, worker_id: str, s: Settlement, r: Retention,
                      now: float | None = None) -> list[tuple[Call, Settlement]]:
        k = keys.queue_keys(s.queue)
        processing = k.processing(worker_id)
        calls = []
        if s.marks:
            calls.append((Call("mark", (k.state,), [part for pair in s.marks for part in pair]),
                          Settlement(s.queue, marks=s.marks)))
        if s.acks:
            args: list[object] = [int(r.keep)]
            for a in s.acks:
                args += [_bulk(a.envelope), a.done]
            done_keys = [k.done(a.id) for a in s.acks]
            calls.append((Call("ack", (processing, k.state, *done_keys), args), Settlement(s.queue, acks=s.acks)))
        if s.retries:
            args = ["" if now is None else repr(now)]
            for t in s.retries:
                args += [_bulk(t.envelope), _bulk(t.new_envelope), repr(t.delay), t.id, t.attempts, t.detail]
            calls.append((Call("retry", (processing, k.scheduled, k.state), args),
                          Settlement(s.queue, retries=s.retries)))
        if s.burials:
            args = [int(r.keep)]
            for b in s.burials:
                args += [_bulk(b.envelope), b.record, "text" if b.text else "hex", b.id, b.done]
            done_keys = [k.done(b.id or "_") for b in s.burials]
            calls.append((Call("dead", (processing, k.dead, k.state, *done_keys), args),
                          Settlement(s.queue, burials=s.burials)))
            calls.append((trim_step(k, r.dead_max_jobs, r.dead_max_age, counted=True), Settlement(s.queue)))
        return calls

    def handback(self, queue: str, worker_id: str, jobs: Sequence[Handback]) -> int:
        """Return unfinished jobs to the head of their ready list; the number moved."""
        if not jobs:
            return 0
        k = keys.queue_keys(queue)
        args: list[object] = []
        for j in jobs:
            args += [_bulk(j.envelope), j.id, j.state]
        with redis_errors("handback"):
            (moved,) = run(self.client, self.scripts, [Call("handback", (k.processing(worker_id), k.ready, k.state), args)])
        return int(moved)

    # -- scheduling ----------------------------------------------------------------------------

    def promote(self, queue: str, limit: int = 1000, now: float | None = None) -> int:
        """Move up to `limit` due jobs from the scheduled set to the ready list; the number moved.
        Due as of `now` (a test harness's clock), else as of Redis's TIME."""
        k = keys.queue_keys(queue)
        args: list[object] = [limit] if now is None else [limit, repr(now)]
        with redis_errors("promote"):
            (moved,) = run(self.client, self.scripts, [Call("promote", (k.scheduled, k.ready), args)])
        return int(moved)

    def claim_tick(self, queue: str, schedule: str, tick: float, job_id: str, state: str, envelope: bytes) -> bool:
        """Claim a schedule's tick and enqueue its job at the ready list's tail, in one step (tick.lua):
        True if this call claimed it, False if that tick or a later one was claimed already."""
        k = keys.queue_keys(queue)
        call = Call("tick", (k.ticks, k.ready, k.state), [schedule, repr(tick), job_id, state, envelope])
        with redis_errors("tick"):
            (claimed,) = run(self.client, self.scripts, [call])
        return bool(claimed)

    def last_ticks(self, wanted: Sequence[tuple[str, str]]) -> list[float | None]:
        """The last tick claimed of each (queue, schedule), None where none is known; one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue, schedule in wanted:
            pipe.hget(keys.queue_keys(queue).ticks, schedule)
        with redis_errors("ticks"):
            found = pipe.execute()
        return [None if value is None else float(value) for value in found]

    def trim_dead(self, queue: str, retention: Retention) -> int:
        """Trim a queue's dead set to its bounds, oldest first, in bounded steps; the records dropped."""
        return trim_dead(self.client, self.scripts, queue, retention)

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, queue: str, job_id: str) -> tuple[bytes | None, bytes | None]:
        """The live state value and the done record of a job (either may be None), in one round trip."""
        k = keys.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(k.state, job_id)
        pipe.get(k.done(job_id))
        with redis_errors("lookup"):
            state, done = pipe.execute()
        return state, done

    def find_envelope(self, queue: str, job_id: str, holders: Sequence[str] | None = None,
                      ready_limit: int = 100_000) -> bytes | None:
        """The envelope of a live job, or None if not seen: looked for in the scheduled set, the
        processing lists of `holders` (default: every worker the queue has known), then the last
        `ready_limit` entries of the ready list.

        The ready list is read from its tail in pages: workers take from the head, which moves
        every entry towards it, so a head-first walk could step over the very job it looks for;
        counted from the tail, an entry only moves away from the pages already read.
        """
        k = keys.queue_keys(queue)
        prefix = b'{"i":' + json.dumps(job_id).encode() + b","
        with redis_errors("find"):
            for member, _ in self.client.zscan_iter(k.scheduled, match=keys.glob_escape(prefix.decode()) + "*",
                                                    count=SCAN_COUNT):
                return bytes(member)
            if holders is None:
                holders = sorted(replies.text(w) for w in self.client.smembers(k.workers))
            for worker_id in holders:
                found = _starting(self.client.lrange(k.processing(worker_id), 0, -1), prefix)
                if found is not None:
                    return found
            for end in range(-1, -ready_limit - 1, -_PAGE):
                page = self.client.lrange(k.ready, end - _PAGE + 1, end)
                found = _starting(reversed(page), prefix)
                if found is not None or len(page) < _PAGE:
                    return found
        return None

    def server_time(self) -> float:
        return redis_time(self.client)

    def ping(self) -> None:
        with redis_errors("ping"):
            self.client.ping()

    def load_scripts(self) -> None:
        with redis_errors("script load"):
            self.scripts.load(self.client)


TRIM_STEP = 1000  # records one trim step drops: about 1 ms of Redis's time (measured), whatever the backlog


def trim_step(k: keys.QueueKeys, kept: int | None, max_age: float | None, *, counted: bool,
              step: int = TRIM_STEP) -> Call:
    """One call of trim.lua: drop up to `step` of the oldest dead records past `kept` records or
    `max_age` seconds (None: no such bound), counted in the set's trimmed counter if `counted`."""
    return Call("trim", (k.dead, k.dead_trimmed) if counted else (k.dead,),
                ["" if kept is None else kept, "" if max_age is None else repr(max_age), step])


def trim_dead(client: "redis.Redis", scripts: Scripts, queue: str, retention: Retention) -> int:
    """Trim a queue's dead set to its retention bounds, counting what goes, in bounded steps."""
    step = trim_step(keys.queue_keys(queue), retention.dead_max_jobs, retention.dead_max_age, counted=True)
    return drop_dead(client, scripts, step, "trim")


def drop_dead(client: "redis.Redis", scripts: Scripts, step: Call, op: str) -> int:
    """Repeat a trim step until nothing is past its bounds; the records dropped.

    Each step is atomic and short; between steps other clients are served. Records that pass
    a bound while this runs are dropped too.
    """
    dropped = 0
    while True:
        with redis_errors(op):
            ((n, over),) = run(client, scripts, [step])
        dropped += int(n)
        if not over:
            return dropped


def _runs(jobs: Sequence[NewJob], most: int) -> Iterator[tuple[Placement, list[bytes]]]:
    """Consecutive jobs with one placement, at most `most` at a time, in order."""
    run: list[bytes] = []
    placement = jobs[0].placement if jobs else Placement()
    for job in jobs:
        if run and ((job.placement is not placement and job.placement != placement) or len(run) >= most):
            yield placement, run
            run = []
        placement = job.placement
        run.append(job.envelope)
    if run:
        yield placement, run


def _bulk(envelope: bytes) -> bytes | memoryview:
    """An envelope as a command argument. A large one goes as a memoryview, which redis-py
    sends to the socket as it is, as a chunk of its own; given bytes, its default packer
    (hiredis) copies them with every other argument into one new bytes object. Small ones
    stay bytes: a memoryview is always a chunk of its own, and each chunk is one send."""
    return memoryview(envelope) if len(envelope) > _INLINE else envelope


def _starting(envelopes: Iterable[Any], prefix: bytes) -> bytes | None:
    for env in envelopes:
        if bytes(env).startswith(prefix):
            return bytes(env)
    return None
