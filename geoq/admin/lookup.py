"""`geoq job ID`: where a job is, what it is, and how its runs went."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from geoq import job as jobs
from geoq import records
from geoq.admin import render
from geoq.admin.dead import dead_status, find
from geoq.admin.errors import NotFound
from geoq.admin.session import Session
from geoq.errors import InvalidJob
from geoq.exits import EXIT_OK
from geoq.job import JobStatus
from geoq.records import DeadRecord


@dataclass(frozen=True, slots=True)
class Found:
    queue: str
    status: JobStatus
    type: str | None                  # None when nothing left in Redis names it
    history: tuple[tuple[float, str], ...]
    dead: DeadRecord | None

    def as_json(self) -> dict[str, Any]:
        st = self.status
        return {"id": st.id, "type": self.type, "queue": self.queue, "state": st.state, "attempts": st.attempts,
                "last_error": st.last_error, "result": st.result, "reason": st.reason, "due_at": st.due_at,
                "history": [list(h) for h in self.history], "traceback": st.traceback}


def job(s: Session, args: argparse.Namespace) -> int:
    found = s.read(lambda: locate(s, args.id))
    if found is None:
        raise NotFound(f"no job {args.id} (unknown id, or its record has expired)")
    print(render.to_json(found.as_json()) if args.json else describe(found))
    return EXIT_OK


def locate(s: Session, job_id: str) -> Found | None:
    """The job's live state or done record (Client.status), completed by its envelope or dead record."""
    named = jobs.queue_of_id(job_id)
    likely = list(dict.fromkeys(([named] if named else []) + s.known_queues()))
    hit, scan = status_in(s, job_id, likely), None
    if hit is None:  # an id a producer chose, in a queue no config names: look everywhere
        scan = s.broker.scan_queues()
        hit = status_in(s, job_id, [q for q in s.queues(scan) if q not in likely])
    if hit is None or hit[1].state == "dead":
        dead = find(s, [hit[0]] if hit else s.queues(scan), [job_id])
        if dead:
            record = dead[0]
            status = hit[1] if hit else dead_status(record)
            return Found(record.queue, status, record.type, tuple(record.history), record)
    if hit is None:
        return None
    queue, status = hit
    if status.state == "succeeded":
        _, done = s.client.broker.lookup(queue, job_id)
        return Found(queue, status, records.done_type(done) if done else None, (), None)
    envelope = None
    if status.state in ("queued", "scheduled", "running"):
        scan = scan or s.broker.scan_queues()
        envelope = s.client.broker.find_envelope(queue, job_id, scan.processing.get(queue, ()))
    return _with_envelope(queue, status, envelope)


def status_in(s: Session, job_id: str, queues: list[str]) -> tuple[str, JobStatus] | None:
    """The first of `queues` that knows the job (live or finished), with its status."""
    for queue in queues:
        status = s.client.status(job_id, queue=queue)
        if status is not None:
            return queue, status
    return None


def _with_envelope(queue: str, status: JobStatus, envelope: bytes | None) -> Found:
    if envelope is None:
        return Found(queue, status, None, (), None)
    try:
        decoded = records.decode(envelope, queue)
    except InvalidJob:
        return Found(queue, status, None, (), None)
    return Found(queue, status, decoded.type, decoded.history, None)


def describe(f: Found) -> str:
    st = f.status
    state = st.state + (f" ({st.reason})" if st.reason else "")
    rows = [("id", st.id), ("type", f.type), ("queue", f.queue), ("state", state), ("attempts", str(st.attempts)),
            ("last error", st.last_error)]
    if st.due_at is not None:
        rows.append(("due at", render.when(st.due_at)))
    if st.state == "succeeded":
        rows.append(("result", render.to_json(st.result)))
    lines = [render.table(("FIELD", "VALUE"), rows).split("\n", 1)[1]]
    if f.history:
        lines += ["history:"] + [f"  {render.when(at)}  {render.one_line(err)}" for at, err in f.history]
    lines += render.block("traceback", st.traceback)
    return "\n".join(lines)

