"""Queues: each queue's depth in every place, its oldest waiting job, paused or not; pause,
resume and purge. Reads per page: one pipeline of counts, one of list heads (PAGE_SIZE queues)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from geoq import records
from geoq.admin.session import Session
from geoq.broker.inspect import Depth, read_depths
from geoq.dashboard.html import Markup, badge, card, el, table
from geoq.dashboard.http import Response
from geoq.dashboard.layout import PAGE_SIZE, View, link, page, pager
from geoq.dashboard.pages.common import ago, done, html, queue_arg, queue_names
from geoq.errors import InvalidJob


@dataclass(frozen=True, slots=True)
class QueueRow:
    depth: Depth
    oldest: float | None   # seconds the job at the head of the ready list has waited; None when empty


def queue_rows(s: Session, names: Sequence[str]) -> list[QueueRow]:
    if not names:
        return []
    depths = read_depths(s.broker.client, names, "dashboard")
    heads, now = s.broker.heads(names), s.broker.server_time()
    return [QueueRow(d, _waited(head, now)) for d, head in zip(depths, heads)]


def _waited(head: bytes | None, now: float) -> float | None:
    """How long the next job to run has waited: since it was due, or else since it was enqueued."""
    if head is None:
        return None
    try:
        body = records.parse(head)
    except InvalidJob:
        return None
    since = body.get("u") or body.get("e")
    return max(0.0, now - since) if isinstance(since, (int, float)) else None


def show(s: Session, view: View) -> Response:
    page_no = view.request.number("page", 1)
    names = queue_names(s)
    start = (page_no - 1) * PAGE_SIZE
    rows = queue_rows(s, names[start:start + PAGE_SIZE])
    body = card(f"{len(names)} queue{'' if len(names) == 1 else 's'}",
                table(("Queue", "State", "Ready", "Scheduled", "Processing", "Dead", "Oldest waiting", ""),
                      [_row(view, r) for r in rows], empty="no queue yet", class_="numbers"),
                pager(view, "/queues", page_no, start + PAGE_SIZE < len(names)))
    return html(page(view, "Queues", body))


def _row(view: View, r: QueueRow) -> list[Any]:
    d = r.depth
    state = badge("paused", "warn") if d.paused else badge("active", "ok")
    toggle = (view.action("/queues/resume", "Resume", {"queue": d.queue}) if d.paused
              else view.action("/queues/pause", "Pause", {"queue": d.queue}))
    purge = view.action("/queues/purge", "Purge", {"queue": d.queue}, danger=True,
                        confirm=f"Delete every waiting (ready and scheduled) job of {d.queue}?")
    scheduled = link(view, f"{d.scheduled:,}", "/scheduled", queue=d.queue) if d.scheduled else "0"
    return [el("strong", d.queue), state, f"{d.ready:,}", scheduled,
            f"{d.processing:,}", _dead_link(view, d), ago(r.oldest), view.actions(toggle, purge)]


def _dead_link(view: View, d: Depth) -> Markup:
    text = f"{d.dead:,}"
    return link(view, el("span", text, class_="bad") if d.dead else text, "/dead", queue=d.queue)


def pause(s: Session, view: View) -> Response:
    queue = queue_arg(view)
    changed = s.client.pause(queue)
    return done(view, "/queues", f"queue {queue} paused" if changed else f"queue {queue} was paused already")


def resume(s: Session, view: View) -> Response:
    queue = queue_arg(view)
    changed = s.client.resume(queue)
    return done(view, "/queues", f"queue {queue} resumed" if changed else f"queue {queue} was not paused")


def purge(s: Session, view: View) -> Response:
    queue = queue_arg(view)
    ready, scheduled = s.broker.purge(queue)
    return done(view, "/queues", f"queue {queue}: purged {ready:,} ready and {scheduled:,} scheduled jobs")
