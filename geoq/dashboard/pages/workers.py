"""Workers: each registered worker, its load and how long since it last proved it was alive.
One HGETALL of the registry and one pipeline of heartbeat checks, then a page of PAGE_SIZE."""

from __future__ import annotations

from typing import Any

from geoq.admin.session import Session
from geoq.broker.admin import WorkerEntry
from geoq.dashboard.html import badge, card, el, table
from geoq.dashboard.http import Response
from geoq.dashboard.layout import PAGE_SIZE, View, page, pager
from geoq.dashboard.pages.common import ago, html, when


def show(s: Session, view: View) -> Response:
    page_no = view.request.number("page", 1)
    workers = sorted(s.broker.workers(), key=lambda w: (not w.alive, w.id))
    start = (page_no - 1) * PAGE_SIZE
    alive = sum(1 for w in workers if w.alive)
    body = card(f"{alive} alive, {len(workers) - alive} silent",
                table(("Worker", "State", "Host", "Queues", "Concurrency", "In flight", "Heartbeat", "Started"),
                      [_row(w) for w in workers[start:start + PAGE_SIZE]], empty="no worker has registered",
                      class_="numbers"),
                pager(view, "/workers", page_no, start + PAGE_SIZE < len(workers)))
    return html(page(view, "Workers", body))


def _row(w: WorkerEntry) -> list[Any]:
    info = w.info
    queues = info.get("queues")
    started = info.get("started_at")
    load = _load(info.get("in_flight"), info.get("concurrency"))
    return [el("code", w.id), badge("alive", "ok") if w.alive else badge("silent", "bad"),
            f"{info.get('host', '-')} (pid {info.get('pid', '?')})",
            ", ".join(map(str, queues)) if isinstance(queues, list) else "-",
            info.get("concurrency", "-"), load, ago(w.heartbeat_age),
            when(started if isinstance(started, (int, float)) else None)]


def _load(in_flight: Any, concurrency: Any) -> Any:
    if not isinstance(in_flight, int) or not isinstance(concurrency, int) or concurrency <= 0:
        return in_flight if in_flight is not None else "-"
    return el("span", f"{in_flight:,} ", el("span", f"({100 * in_flight / concurrency:.0f}%)", class_="muted"))
