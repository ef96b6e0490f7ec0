"""`geoq dead list | show | retry | purge`: work with the dead-letter list."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from geoq import job as jobs
from geoq import records
from geoq.admin import render
from geoq.admin.errors import NotFound, UsageError
from geoq.admin.revive import read, revival
from geoq.admin.session import Session
from geoq.broker.admin import GONE, LIVE, REVIVED, DeadEntry, Revival
from geoq.broker.groups import GroupBroker
from geoq.exits import EXIT_OK
from geoq.job import JobStatus
from geoq.records import DeadRecord

_PAGE = 500
_CHUNK = 200           # jobs per retry script call: bounds how long one call holds Redis
_FIND_ONE_BY_ONE = 20  # more ids than this are matched in one scan of each dead set instead
_ERROR_WIDTH = 60
_ENVELOPE_WIDTH = 2000  # characters of an envelope `dead show` prints for people


def queues_for(s: Session, queue: str | None) -> list[str]:
    return [jobs.check_queue(queue)] if queue else s.queues()


# -- list --------------------------------------------------------------------------------------


def dead_list(s: Session, args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError("--limit: expected 0 (no limit) or a positive number")
    newest = s.read(lambda: _newest_of_all(s, args.queue, args.type, args.limit))
    if args.json:
        print(render.to_json([r.summary() for r in newest]))
    elif not newest:
        print("the dead list is empty" + (f" for type {args.type}" if args.type else ""))
    else:
        print(render.table(("DIED", "QUEUE", "ID", "TYPE", "REASON", "ATTEMPTS", "ERROR"),
                           [_row(r) for r in newest]))
    return EXIT_OK


def _newest_of_all(s: Session, queue: str | None, job_type: str | None, limit: int) -> list[DeadRecord]:
    """The newest dead records of the queue (or of every queue), newest first."""
    found: list[DeadRecord] = []
    for name in queues_for(s, queue):
        found += _newest(s, name, job_type, limit)
    found.sort(key=lambda r: r.died_at, reverse=True)
    return found[:limit] if limit else found


def _newest(s: Session, queue: str, job_type: str | None, limit: int) -> list[DeadRecord]:
    out: list[DeadRecord] = []
    start = 0
    while not limit or len(out) < limit:
        page = s.broker.dead_page(queue, start, _PAGE)
        out += [r for r in map(read, page) if job_type is None or r.type == job_type]
        if len(page) < _PAGE:
            break
        start += _PAGE
    return out[:limit] if limit else out


def _row(r: DeadRecord) -> Sequence[Any]:
    s = r.summary()
    return (render.when(s["died_at"]), s["queue"], s["id"] or "?", s["type"], s["reason"], s["attempts"],
            render.one_line(str(s["error"] or ""), _ERROR_WIDTH))


# -- show --------------------------------------------------------------------------------------


def dead_show(s: Session, args: argparse.Namespace) -> int:
    found = s.read(lambda: find(s, queues_for(s, args.queue), [args.id]))
    if not found:
        raise NotFound(f"job {args.id} is not in the dead list")
    newest, older = found[0], len(found) - 1
    if args.json:
        print(render.to_json(newest.full()))
        return EXIT_OK
    print(describe(newest))
    if older:
        print(f"(and {older} older dead record{'s' if older > 1 else ''} of the same id)")
    return EXIT_OK


def describe(r: DeadRecord) -> str:
    """A record for people: its fields, its history, the last run's traceback, then the envelope as stored."""
    s = r.full()
    lines = [render.table(("FIELD", "VALUE"), [
        ("id", s["id"] or "?"), ("type", s["type"]), ("queue", s["queue"]), ("reason", s["reason"]),
        ("error", s["error"]), ("attempts", str(s["attempts"])), ("died at", render.when(s["died_at"])),
    ]).split("\n", 1)[1]]
    if r.history:
        lines += ["history:"] + [f"  {render.when(at)}  {render.one_line(err)}" for at, err in r.history]
    lines += render.block("traceback", r.traceback)
    if "envelope" in s:
        text = str(s["envelope"])
        lines += _envelope_lines("envelope", len(text.encode()), text)
    elif "envelope_hex" in s:
        text = str(s["envelope_hex"])
        lines += _envelope_lines("envelope (hex, not UTF-8)", len(text) // 2, text)
    return "\n".join(lines)


def _envelope_lines(title: str, size: int, text: str) -> list[str]:
    """The envelope on one line, cut for a terminal: an oversize one may be megabytes."""
    if len(text) <= _ENVELOPE_WIDTH:
        return [f"{title}:", "  " + render.one_line(text)]
    return [f"{title}, {size} bytes, cut (--json gives it whole):",
            "  " + render.one_line(text[:_ENVELOPE_WIDTH * 2], _ENVELOPE_WIDTH)]


def find(s: Session, queues: Sequence[str], ids: Sequence[str]) -> list[DeadRecord]:
    """The dead records of these job ids in these queues, newest first: through the id index,
    else (an id no index names: buried by an older geoq, not yet rebuilt) by a scan of each set."""
    indexed = find_indexed(s, queues, ids)
    wanted = set(ids).difference(r.id for r in indexed)
    if not wanted:
        return indexed
    entries: list[DeadEntry] = []
    for queue in queues:
        if len(wanted) <= _FIND_ONE_BY_ONE:
            for job_id in wanted:
                entries += s.broker.dead_find(queue, job_id)
        else:
            entries += s.broker.dead_scan(queue)
    unique = {r.member: r for r in map(read, entries) if r.id in wanted}  # ZSCAN may repeat one
    return sorted([*indexed, *unique.values()], key=lambda r: r.died_at, reverse=True)


def find_indexed(s: Session, queues: Sequence[str], ids: Sequence[str]) -> list[DeadRecord]:
    """The indexed dead records of these ids in these queues, newest first: a round trip per id."""
    gb, out = GroupBroker(s.broker.client, s.broker.scripts), []
    for job_id in dict.fromkeys(ids):
        by_queue: dict[str, list[str]] = {}
        for queue, entry in gb.entries_of_id(queues, job_id):
            by_queue.setdefault(queue, []).append(entry)
        for queue, entries in by_queue.items():
            out += [read(e) for e in gb.records(queue, entries) if e is not None]
    return sorted(out, key=lambda r: r.died_at, reverse=True)


# -- retry -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a retry did: the ids re-queued, the records left dead (and why), the records gone meanwhile."""

    retried: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    gone: int = 0

    def skip(self, record: DeadRecord, why: str) -> None:
        self.skipped.append({"id": record.id, "queue": record.queue, "why": why})


def dead_retry(s: Session, args: argparse.Namespace) -> int:
    """Back to the ready list with attempts reset, each record moved at most once by anyone."""
    if bool(args.ids) == bool(args.all):
        raise UsageError("dead retry: give job ids, or --all (not both)")
    queues = queues_for(s, args.queue)
    tally = Tally()
    if args.all:
        # Only what was dead when the command began: a job that dies again meanwhile stays dead.
        until = s.broker.server_time()
        for queue in queues:
            retry_dead_before(s, queue, until, tally, args.type)
        missing: list[str] = []
    else:
        newest = newest_per_id(find(s, queues, args.ids), args.type)
        for queue in queues:
            retry_records(s, queue, (r for r in newest if r.queue == queue), tally)
        missing = [i for i in dict.fromkeys(args.ids) if i not in {r.id for r in newest}]
    _report_retry(args, tally, missing)
    return _named_outcome(args, tally, missing, "retried")


def _type_ok(r: DeadRecord, job_type: str | None) -> bool:
    return job_type is None or r.type == job_type


def retry_dead_before(s: Session, queue: str, until: float, tally: Tally, job_type: str | None = None) -> None:
    """Every record of the queue dead at `until` (Redis time; of `job_type`, if given) back on its
    ready list, read in one scan of the dead set; a job that dies again meanwhile stays dead."""
    retry_records(s, queue, (r for r in map(read, s.broker.dead_scan(queue))
                             if r.died_at <= until and _type_ok(r, job_type)), tally)


def newest_per_id(found: Iterable[DeadRecord], job_type: str | None = None) -> list[DeadRecord]:
    """Of records found newest first, each id's newest (of `job_type`, if given): the one a retry moves."""
    out: dict[str, DeadRecord] = {}
    for r in found:  # newest first, so the first seen per id wins
        if _type_ok(r, job_type):
            out.setdefault(r.id, r)
    return list(out.values())


def retry_records(s: Session, queue: str, chosen: Iterable[DeadRecord], tally: Tally) -> None:
    state = records.encode_state("queued", 0)
    for chunk in _chunks(chosen, _CHUNK):
        revivals: list[tuple[DeadRecord, Revival]] = []
        for r in chunk:
            made = revival(r)
            if isinstance(made, str):
                tally.skip(r, made)
            else:
                revivals.append((r, made))
        codes = s.broker.dead_revive(queue, [rv for _, rv in revivals], state)
        for (r, rv), code in zip(revivals, codes):
            if code == REVIVED:
                tally.retried.append(rv.id)
            elif code == GONE:
                tally.gone += 1
            else:
                tally.skip(r, "its id is live again (enqueued since it died)" if code == LIVE
                           else "its envelope carries no readable id")


def _report_retry(args: argparse.Namespace, tally: Tally, missing: list[str]) -> None:
    if args.json:
        print(render.to_json({"retried": len(tally.retried), "ids": tally.retried, "skipped": tally.skipped,
                              "missing": missing, "gone": tally.gone}))
        return
    print(f"retried {len(tally.retried)} dead job{'' if len(tally.retried) == 1 else 's'}")
    for item in tally.skipped:
        print(f"left dead: {item['id'] or '?'} ({item['queue']}): {item['why']}")


def _named_outcome(args: argparse.Namespace, tally: Tally, missing: list[str], done: str) -> int:
    """Exit 1 when a job named on the command line was not acted on; one line says which."""
    problems = [f"{i} (not in the dead list)" for i in missing]
    if not args.all:
        problems += [f"{item['id']} ({item['why']})" for item in tally.skipped]
    if problems:
        raise NotFound(f"not {done}: " + ", ".join(problems))
    return EXIT_OK


def _chunks(items: Iterable[DeadRecord], size: int) -> Iterator[list[DeadRecord]]:
    chunk: list[DeadRecord] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- purge -------------------------------------------------------------------------------------


def dead_purge(s: Session, args: argparse.Namespace) -> int:
    if sum((bool(args.ids), bool(args.all), args.older_than is not None)) != 1:
        raise UsageError("dead purge: give job ids, --all or --older-than AGE (one of them)")
    queues = queues_for(s, args.queue)
    purged: dict[str, int] = {}
    missing: list[str] = []
    if args.ids:
        found = find(s, queues, args.ids)
        for queue in queues:
            purged[queue] = s.broker.dead_remove(queue, [r.member for r in found if r.queue == queue])
        missing = [i for i in dict.fromkeys(args.ids) if i not in {r.id for r in found}]
    elif args.all:
        purged = {queue: s.broker.dead_remove_all(queue) for queue in queues}
    else:
        purged = {queue: s.broker.dead_remove_older(queue, args.older_than) for queue in queues}
    total = sum(purged.values())
    if args.json:
        print(render.to_json({"purged": total, "queues": {q: n for q, n in purged.items() if n}, "missing": missing}))
    else:
        print(f"purged {total} dead job{'' if total == 1 else 's'}")
    if missing:
        raise NotFound("not purged: " + ", ".join(f"{i} (not in the dead list)" for i in missing))
    return EXIT_OK


def dead_status(record: DeadRecord) -> JobStatus:
    """A dead job's status read from its record (when its done record has expired)."""
    body = record.body
    return JobStatus(id=record.id, state="dead", attempts=int(body.get("attempts") or 0),
                     last_error=body.get("error"), reason=body.get("reason"), traceback=record.traceback)
