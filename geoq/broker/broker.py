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

from geoq import fingerprint, records
from geoq.broker import keys, replies
from geoq.broker.clock import redis_time
from geoq.broker.errors import redis_errors, translate
from geoq.broker.scripts import Call, Scripts, add, run

_SCRIPTS: Scripts | None = None
SCAN_COUNT = 1000  # keys or members per SCAN / ZSCAN call: few round trips, short ones
_PAGE = 500
_INLINE = 1 << 16  # envelopes above this many bytes are sent as they are (see _bulk)
EXPIRED_ERROR = "Expired: not started by its expiry"  # promote.lua says the same


def shared_scripts() -> Scripts:
    """The process's one Scripts, which every broker of the process shares."""
    global _SCRIPTS  # read from package data once per process, on first use (never at import)
    if _SCRIPTS is None:
        _SCRIPTS = Scripts()
    return _SCRIPTS


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new job goes: the ready list's tail or head, or the scheduled set."""

    where: str = "tail"          # tail | head | delay | at
    value: float | None = None   # seconds for delay, unix time for at


class NewJob(NamedTuple):
    """A job for enqueue_jobs. A NamedTuple: one is built for every job a producer stores, and a
    frozen dataclass costs three times as much to build."""

    id: str
    envelope: bytes
    placement: Placement
    lock: str | None = None   # a unique job's lock (geoq.unique digest): stored only while no job holds it


class Fetched(list[bytes]):  # what callers always had, plus a flag
    """The envelopes one fetch moved; `paused` is True when their queue was found paused
    (then nothing was moved)."""

    paused = False


# A unique job's lock to release when it ends: (lock digest, window seconds).
Unique = tuple[str, float]


# One per job settled, built on every job's path: NamedTuples, as immutable as a frozen
# dataclass and a third of its cost to build.
class Ack(NamedTuple):
    envelope: bytes
    id: str
    done: bytes
    unique: Unique | None = None


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
    unique: Unique | None = None


class Cancelled(NamedTuple):
    """A run a cancel interrupted: it leaves the processing list for good (cancelled.lua)."""

    envelope: bytes
    id: str
    done: bytes
    unique: Unique | None = None


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
    cancels: Sequence[Cancelled] = ()


@dataclass(frozen=True, slots=True)
class SettleResult:
    fenced: int                      # outcomes whose job was no longer ours: nothing written for them
    refused: list[Settlement]        # parts Redis refused; everything else was written
    error: Exception | None          # why the last refused part was refused


@dataclass(frozen=True, slots=True)
class Promotion:
    moved: int                                   # due jobs moved to the ready list
    expired: list[tuple[str, str | None, int]]   # (id, type, runs made) of due jobs buried as expired


@dataclass(frozen=True, slots=True)
class Retention:
    keep: float          # seconds a done record is kept; 0 keeps none
    dead_max_jobs: int
    dead_max_age: float


class Broker:
    """Moves jobs between a queue's places. `client` is a redis.Redis built by connection.connect."""

    def __init__(self, client: "redis.Redis") -> None:
        self.client = client
        self.scripts = shared_scripts()

    # -- producing -----------------------------------------------------------------------------

    def enqueue(self, batches: Mapping[str, Sequence[NewJob]], chunk: int = 500) -> dict[str, list[bool]]:
        """Store new jobs, one script call per run of jobs with one placement in a queue (at most
        `chunk` jobs, which bounds how long one call holds Redis), all in one round trip, in order.

        Returns per queue one flag per job: True stored, False the id was already
        live (nothing written), so repeating a failed enqueue is always safe.
        """
        return {queue: [answer is True for answer in answers]
                for queue, answers in self.enqueue_jobs(batches, chunk).items()}

    def enqueue_jobs(self, batches: Mapping[str, Sequence[NewJob]],
                     chunk: int = 500) -> dict[str, list[bool | str]]:
        """As enqueue; a unique job (NewJob.lock) goes in a call of its own, and when another job
        holds its key the answer is that job's id instead of a flag (nothing written)."""
        calls, owners = [], []
        for queue, jobs in batches.items():
            k = keys.queue_keys(queue)
            for placement, envelopes, lock in _runs(jobs, chunk):
                value = "" if placement.value is None else repr(placement.value)
                held = (k.ready, k.scheduled, k.state) + ((k.unique(lock),) if lock else ())
                calls.append(Call("enqueue", held, [placement.where, value, *envelopes]))
                owners.append(queue)
        out: dict[str, list[bool | str]] = {queue: [] for queue in batches}
        with redis_errors("enqueue"):
            answered = run(self.client, self.scripts, calls)
        for queue, reply in zip(owners, answered):
            out[queue] += [replies.text(answer) if isinstance(answer, bytes) else answer == 1 for answer in reply]
        return out

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, client: "redis.Redis", queue: str, worker_id: str, n: int, block: float | None) -> Fetched:
        """Move up to n jobs from the ready list into this worker's processing list, in one round trip.

        A non-transactional pipeline: BLMOVE, blocking up to `block` seconds for the first job
        (none when block is None), then the fetch script, which LMOVEs the rest of the batch one
        by one and marks every job it moves (and BLMOVE's) running. Each move is atomic by
        itself, and a job stays in the processing list until it is settled. `client` is a
        connection whose read timeout exceeds `block`.

        A paused queue (its flag read by the script) yields nothing and `paused` set: BLMOVE's
        job goes back to the head of the ready list in the same step that finds the flag. Jobs
        cancelled while they waited are dropped on the way (fetch.lua).
        """
        k = keys.queue_keys(queue)
        processing = k.processing(worker_id)
        rest = Call("fetch", (k.ready, processing, k.state, k.paused), [n - 1 if block else n])
        with redis_errors("fetch"):
            if not block:
                return _fetched(None, run(client, self.scripts, [rest])[0])
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
            return _fetched(first, more[0] if more else [0, 0])

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
            elif call.name not in ("mark", "release"):  # a release is best effort, and idempotent
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
                group = fingerprint.title_of_record(s.queue, b.record)
                args += [_bulk(b.envelope), b.record, "text" if b.text else "hex", b.id, b.done, group.fingerprint,
                         group.meta()]
            done_keys = [k.done(b.id or "_") for b in s.burials]
            calls.append((Call("dead", (processing, k.dead, k.state, *k.dead_index_keys, *done_keys), args),
                          Settlement(s.queue, burials=s.burials)))
            calls.append((trim_step(k, r.dead_max_jobs, r.dead_max_age, counted=True), Settlement(s.queue)))
        if s.cancels:
            args = [int(r.keep)]
            for c in s.cancels:
                args += [_bulk(c.envelope), c.id, c.done]
            calls.append((Call("cancelled", (processing, k.state, k.cancelling, *[k.done(c.id) for c in s.cancels]),
                               args), Settlement(s.queue, cancels=s.cancels)))
        calls += [(call, Settlement(s.queue)) for call in _releases(k, s)]
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
        """Move up to `limit` due jobs from the scheduled set to the ready list (or, expired, to
        the dead set, leaving no done record); the number taken from the set. Due as of `now`
        (a test harness's clock), else as of Redis's TIME."""
        promotion = self.promote_due(queue, limit, 0, now)
        return promotion.moved + len(promotion.expired)

    def promote_due(self, queue: str, limit: int, keep: float, now: float | None = None) -> Promotion:
        """Move up to `limit` due jobs from the scheduled set to the ready list, and those whose
        expiry has passed to the dead set (promote.lua, one atomic step), then store the expired
        jobs' done records for `keep` seconds. The records follow the move in a second round
        trip, as their keys are named by ids only the move learns; one lost with the connection
        leaves the job dead all the same, and its status unknown. Due as of `now`, as promote."""
        k = keys.queue_keys(queue)
        args: list[object] = [limit, queue] if now is None else [limit, queue, repr(now)]
        with redis_errors("promote"):
            ((moved, *rest),) = run(self.client, self.scripts,
                                    [Call("promote", (k.scheduled, k.ready, k.dead, k.state, *k.dead_index_keys),
                                          args)])
        expired = [(replies.text(rest[i]), replies.text(rest[i + 1]) or None, int(rest[i + 2]))
                   for i in range(0, len(rest), 3)]
        if expired and keep > 0:
            pipe = self.client.pipeline(transaction=False)
            for job_id, job_type, runs in expired:
                pipe.set(k.done(job_id), records.encode_done("dead", runs, EXPIRED_ERROR, None, "expired", job_type),
                         ex=int(keep))
            with redis_errors("promote"):
                pipe.execute()
        return Promotion(int(moved), expired)

    # -- job control ---------------------------------------------------------------------------

    def cancel(self, queue: str, job_id: str, scheduled: bytes | None, job_type: str | None, keep: float) -> bool:
        """Cancel one job of `queue` (cancel.lua): True if it was queued, scheduled or running.
        `scheduled` is its envelope as the scheduled set holds it, when the caller found it
        there (then it leaves the set at once; else a waiting job is dropped when fetched)."""
        k = keys.queue_keys(queue)
        call = Call("cancel", (k.scheduled, k.state, k.cancelling, k.done(job_id)),
                    [job_id, scheduled or b"", job_type or "", int(keep)])
        with redis_errors("cancel"):
            (answer,) = run(self.client, self.scripts, [call])
        return bool(answer == 1)

    def find_scheduled(self, queue: str, job_id: str) -> bytes | None:
        """The envelope of a job in the scheduled set, or None (a ZSCAN of the set, in pages)."""
        prefix = b'{"i":' + json.dumps(job_id).encode() + b","
        with redis_errors("find"):
            for member, _ in self.client.zscan_iter(keys.queue_keys(queue).scheduled,
                                                    match=keys.glob_escape(prefix.decode()) + "*", count=SCAN_COUNT):
                return bytes(member)
        return None

    def cancel_requests(self, queues: Sequence[str]) -> set[str]:
        """Ids of running jobs whose cancel is asked for, in any of `queues`: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(keys.queue_keys(queue).cancelling, 0, -1)
        with redis_errors("cancels"):
            answers = pipe.execute()
        return {replies.text(job_id) for ids in answers for job_id in ids}

    def set_paused(self, queue: str, paused: bool) -> bool:
        """Pause or resume a queue for every worker; True if that changed anything."""
        flag = keys.queue_keys(queue).paused
        with redis_errors("pause"):
            changed = self.client.set(flag, b"1", nx=True) if paused else self.client.delete(flag)
        return bool(changed)

    def paused(self, queues: Sequence[str]) -> set[str]:
        """Which of `queues` are paused: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.exists(keys.queue_keys(queue).paused)
        with redis_errors("pause"):
            answers = pipe.execute()
        return {queue for queue, flag in zip(queues, answers) if flag}

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


TRIM_STEP = 100  # records one trim step drops, with their index entries: about 2-4 ms of Redis time (bench/dead_groups.py)


def trim_step(k: keys.QueueKeys, kept: int | None, max_age: float | None, *, counted: bool,
              step: int = TRIM_STEP) -> Call:
    """One call of trim.lua: drop up to `step` of the oldest dead records past `kept` records or
    `max_age` seconds (None: no such bound), counted in the set's trimmed counter if `counted`."""
    return Call("trim", (k.dead, *k.dead_index_keys, k.dead_trimmed) if counted else (k.dead, *k.dead_index_keys),
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


def _runs(jobs: Sequence[NewJob], most: int) -> Iterator[tuple[Placement, list[bytes], str | None]]:
    """Consecutive jobs with one placement, at most `most` at a time, in order; a unique job
    (with its lock) alone."""
    run: list[bytes] = []
    placement = jobs[0].placement if jobs else Placement()
    for job in jobs:
        if run and ((job.placement is not placement and job.placement != placement) or len(run) >= most):
            yield placement, run, None
            run = []
        placement = job.placement
        if job.lock is not None:
            if run:
                yield placement, run, None
                run = []
            yield placement, [job.envelope], job.lock
            continue
        run.append(job.envelope)
    if run:
        yield placement, run, None


def _releases(k: keys.QueueKeys, s: Settlement) -> list[Call]:
    """One release.lua call per unique job a settlement ends: its key's window starts."""
    ended: list[Ack | Bury | Cancelled] = [*s.acks, *s.burials, *s.cancels]
    return [Call("release", (k.state, k.unique(item.unique[0])), [item.id, repr(item.unique[1])])
            for item in ended if item.unique is not None]


def _fetched(first: bytes | None, reply: list[Any]) -> Fetched:
    """The jobs of one fetch: BLMOVE's (unless fetch.lua took it out again) and the script's."""
    tail_gone, paused, *moved = reply
    out = Fetched(([first] if first is not None and not tail_gone else []) + moved)
    out.paused = paused == 1
    return out


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
