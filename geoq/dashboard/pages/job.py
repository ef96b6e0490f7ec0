"""One job by id: where it is, its state, attempts, history, traceback and payload (secrets
masked), and what can be done to it. Reads: its state and done record in the queue its id
names (else each configured queue), its dead record through the groups layer's id index, and
its envelope from at most ENVELOPE_SEARCH entries of a ready list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geoq import job as jobs
from geoq import records
from geoq.admin import groups
from geoq.admin.lookup import status_in
from geoq.admin.session import Session
from geoq.dashboard.html import Markup, badge, card, el, table
from geoq.dashboard.http import Response, not_found
from geoq.dashboard.layout import View, page
from geoq.dashboard.pages.common import done, html, id_arg, pretty, when
from geoq.errors import InvalidJob
from geoq.job import JobStatus
from geoq.records import DeadRecord

ENVELOPE_SEARCH = 10_000   # ready-list entries read, from the tail, looking for a queued job's payload
SHOWN = 20_000             # characters of a payload or result shown
_STATE_KIND = {"succeeded": "ok", "dead": "bad", "cancelled": "warn", "running": "info", "queued": "info",
               "scheduled": ""}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Located:
    queue: str
    status: JobStatus
    type: str | None
    history: list[tuple[float, str]]
    payload: Any          # _MISSING when nothing left in Redis holds it
    dead: DeadRecord | None


def locate(s: Session, job_id: str) -> Located | None:
    named = jobs.queue_of_id(job_id)
    hit = status_in(s, job_id, list(dict.fromkeys(([named] if named else []) + s.known_queues())))
    if hit is None or hit[1].state == "dead":
        record = groups.find_dead(s, job_id)
        if record is not None:
            return _from_dead(record, hit[1] if hit else None)
    if hit is None:
        return None
    queue, status = hit
    if status.state in ("queued", "scheduled", "running"):
        envelope = s.client.broker.find_envelope(queue, job_id, ready_limit=ENVELOPE_SEARCH)
        return _from_envelope(queue, status, envelope)
    _, done_record = s.client.broker.lookup(queue, job_id)
    return Located(queue, status, records.done_type(done_record) if done_record else None, [], _MISSING, None)


def _from_dead(r: DeadRecord, status: JobStatus | None) -> Located:
    body = r.body
    status = status or JobStatus(id=r.id, state="dead", attempts=int(body.get("attempts") or 0),
                                 last_error=body.get("error"), reason=body.get("reason"), traceback=r.traceback)
    return Located(r.queue, status, r.type, r.history, _payload(r.envelope.encode() if r.envelope else None), r)


def _from_envelope(queue: str, status: JobStatus, envelope: bytes | None) -> Located:
    try:
        job = records.decode(envelope, queue) if envelope else None
    except InvalidJob:
        job = None
    if job is None:
        return Located(queue, status, None, [], _MISSING, None)
    return Located(queue, status, job.type, list(job.history), job.payload, None)


def _payload(envelope: bytes | None) -> Any:
    if envelope is None:
        return _MISSING
    try:
        return records.parse(envelope).get("p")
    except InvalidJob:
        return _MISSING


def show(s: Session, view: View) -> Response:
    if not view.request.arg("id"):
        return html(page(view, "Find a job", card("Job id", _search(view))))
    job_id = id_arg(view)
    found = locate(s, job_id)
    if found is None:
        raise not_found(f"no job {job_id} (unknown id, or its record has expired)")
    st = found.status
    body = [card("Job", _fields(found), extra=_actions(view, found))]
    if found.history:
        body.append(card("Attempts", table(("When", "Error"), [(when(at), err) for at, err in found.history])))
    if st.traceback:
        body.append(card("Traceback of the last run", el("pre", st.traceback)))
    body.append(card("Payload (secrets masked)", _block(found.payload, "no payload left in Redis for this job")))
    if st.state == "succeeded":
        body.append(card("Result (secrets masked)", _block(st.result, "")))
    return html(page(view, f"Job {job_id}", *body))


def _search(view: View) -> Markup:
    return el("form", el("input", type="search", name="id", placeholder="job id", aria_label="job id"),
              el("button", "Find", type="submit", class_="btn primary"), method="get", action=view.url("/job"),
              class_="filters")


def _fields(f: Located) -> Markup:
    st = f.status
    state = el("span", badge(st.state, _STATE_KIND.get(st.state, "")), f"  {st.reason}" if st.reason else "")
    rows = [("id", el("code", st.id)), ("state", state), ("type", f.type or "-"), ("queue", f.queue),
            ("runs made", st.attempts), ("last error", st.last_error or "-")]
    if st.due_at is not None:
        rows.append(("due at", when(st.due_at)))
    if f.dead is not None:
        rows.append(("died at", when(f.dead.died_at)))
    return el("table", el("tbody", *(el("tr", el("th", k), el("td", v)) for k, v in rows)), class_="fields")


def _actions(view: View, f: Located) -> Markup:
    st, back = f.status, view.url("/job", id=f.status.id)
    if f.dead is not None:
        fields = {"scope": "job", "queue": f.queue, "id": st.id, "back": back}
        gone = {**fields, "back": view.url("/dead", queue=f.queue)}   # a deleted job has no page to return to
        return view.actions(view.action("/dead/retry", "Retry", fields),
                            view.action("/dead/delete", "Delete", gone, danger=True,
                                        confirm=f"Delete dead job {st.id}?"))
    if st.state in ("queued", "scheduled", "running"):
        return view.actions(view.action("/job/cancel", "Cancel", {"queue": f.queue, "id": st.id}, danger=True,
                                        confirm=f"Cancel job {st.id}?"))
    return Markup("")


def _block(value: Any, missing: str) -> Markup:
    if value is _MISSING:
        return el("p", missing, class_="empty")
    text = pretty(value)
    return el("pre", text if len(text) <= SHOWN else text[:SHOWN] + f"\n… ({len(text):,} characters, cut)")


def cancel(s: Session, view: View) -> Response:
    job_id = id_arg(view)
    cancelled = s.client.cancel(job_id, queue=view.request.arg("queue") or None)
    message = f"job {job_id} cancelled" if cancelled else f"job {job_id} was not cancelled: it has finished"
    return done(view, "/job", message, id=job_id)
