"""Scheduled jobs of one queue, soonest first: run one now (run_now.lua moves it to the head of
the ready list) or delete it (cancel.lua: it ends cancelled). A page is one ZRANGE by rank; an
action finds its job by its due time (ZRANGEBYSCORE of one score), never by scanning the set."""

from __future__ import annotations

import math
from typing import Any

from geoq import records
from geoq.admin import render
from geoq.admin.session import Session
from geoq.broker.inspect import read_depths
from geoq.dashboard.html import Markup, card, el, table
from geoq.dashboard.http import Response, bad_request, not_found
from geoq.dashboard.layout import PAGE_SIZE, View, link, page, pager
from geoq.dashboard.pages.common import done, html, id_arg, preview, queue_arg, queue_names
from geoq.errors import InvalidJob


def show(s: Session, view: View) -> Response:
    names = queue_names(s)
    queue = queue_arg(view, required=False) or _busiest(s, names)
    page_no = view.request.number("page", 1)
    rows = s.broker.scheduled_page(queue, (page_no - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    now = s.broker.server_time()
    body = card(f"Scheduled in {queue}",
                table(("Job", "Type", "Due", "Runs made", "Last error", "Payload", ""),
                      [_row(view, queue, raw, due, now) for raw, due in rows[:PAGE_SIZE]],
                      empty="no job is scheduled in this queue"),
                pager(view, "/scheduled", page_no, len(rows) > PAGE_SIZE, queue=queue),
                extra=_picker(view, names, queue))
    return html(page(view, "Scheduled jobs", body))


def _busiest(s: Session, names: list[str]) -> str:
    """The queue to show first: the first (in config order) holding scheduled jobs; one round trip
    (holders={}: no processing list is counted)."""
    shown = names[:PAGE_SIZE]
    depths = read_depths(s.broker.client, shown, "dashboard", holders={}) if shown else []
    return next((d.queue for d in depths if d.scheduled), shown[0] if shown else "default")


def _picker(view: View, names: list[str], queue: str) -> Markup:
    options = [el("option", name, value=name, selected=name == queue) for name in names]
    return el("form", el("select", *options, name="queue", aria_label="queue"),
              el("button", "Show", type="submit", class_="btn"), method="get", action=view.url("/scheduled"),
              class_="filters")


def _row(view: View, queue: str, raw: bytes, due: float, now: float) -> list[Any]:
    try:
        body = records.parse(raw)
    except InvalidJob:
        body = {}
    job_id = str(body.get("i") or "?")
    history = body.get("h") or []
    last = history[-1][1] if history and isinstance(history[-1], list) and len(history[-1]) == 2 else ""
    fields = {"queue": queue, "id": job_id, "due": repr(due)}
    actions = view.actions(view.action("/scheduled/run", "Run now", fields),
                           view.action("/scheduled/delete", "Delete", fields, danger=True,
                                       confirm=f"Delete scheduled job {job_id}? It ends cancelled."))
    return [link(view, el("code", job_id), "/job", id=job_id), str(body.get("t") or "?"), _due(due, now),
            body.get("a", 0), el("span", render.one_line(str(last)), class_="clip"),
            el("span", preview(body.get("p")), class_="clip mono"), actions]


def _due(due: float, now: float) -> Markup:
    wait = due - now
    text = "due now" if wait <= 0 else "in " + render.age(wait)
    return el("time", text, title=render.when(due))


def _found(s: Session, view: View) -> tuple[str, str, bytes]:
    """The queue, id and exact envelope an action names, or 404 when it is no longer scheduled."""
    queue, job_id, raw_due = queue_arg(view), id_arg(view), view.request.arg("due")
    try:
        due = float(raw_due)
    except ValueError:
        raise bad_request(f"due: expected a time in unix seconds, got {raw_due[:40]!r}") from None
    if not math.isfinite(due):
        raise bad_request("due: expected a finite time in unix seconds")
    for envelope in s.broker.scheduled_at(queue, due):
        if records.peek_id(envelope) == job_id:
            return queue, job_id, envelope
    raise not_found(f"job {job_id} is no longer scheduled in {queue} (run, promoted or deleted meanwhile)")


def run_now(s: Session, view: View) -> Response:
    queue, job_id, envelope = _found(s, view)
    moved = s.broker.run_now(queue, envelope)
    message = f"job {job_id} moved to the head of {queue}" if moved else f"job {job_id} was no longer scheduled"
    return done(view, "/scheduled", message, queue=queue)


def delete(s: Session, view: View) -> Response:
    queue, job_id, envelope = _found(s, view)
    cancelled = s.client.broker.cancel(queue, job_id, envelope, records.peek_type(envelope), s.config.results.keep)
    message = f"job {job_id} deleted (cancelled)" if cancelled else f"job {job_id} was no longer scheduled"
    return done(view, "/scheduled", message, queue=queue)
