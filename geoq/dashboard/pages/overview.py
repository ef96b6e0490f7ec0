"""Overview: the fleet at a glance (depths, workers) and charts over the history workers write:
jobs processed, failed and dead, and wait-time quantiles per queue, over 1h, 24h or 7d.

Depths and history are read for the first MAX_QUEUES queues only (the totals count those), the
history already summed into at most the window's number of points (read_history's `step`: a
point's wait quantiles are those of all its runs), so a page costs the same whatever the traffic
was, and a week costs a few hundred points per queue, not one per minute.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from geoq.admin import history
from geoq.admin.history import Minute, QueueHistory, TypeTotals
from geoq.admin.session import Session
from geoq.dashboard.html import Markup, badge, card, el, table
from geoq.dashboard.http import Response, bad_request
from geoq.dashboard.layout import View, link, page
from geoq.dashboard.pages.common import ago, html, queue_names
from geoq.dashboard.pages.queues import QueueRow, queue_rows

WINDOWS = {"1h": (3600, 60), "24h": (86400, 144), "7d": (7 * 86400, 168)}   # seconds, points drawn
MAX_QUEUES = 20
BUSIEST = 8


def show(s: Session, view: View) -> Response:
    window = view.request.arg("window", "1h")
    if window not in WINDOWS:
        raise bad_request(f"window: expected one of {', '.join(WINDOWS)}, got {window[:20]!r}")
    since, points = WINDOWS[window]
    names = queue_names(s)
    rows = queue_rows(s, names[:MAX_QUEUES])
    histories = history.read_history(s, names[:MAX_QUEUES], since, step=math.ceil(since / 60 / points))
    workers = [w for w in s.broker.workers() if w.alive]
    body = [_totals(view, rows, workers),
            card("Busiest queues", _busiest(view, rows), extra=link(view, "all queues →", "/queues")),
            _windows(view, window),
            card("Jobs per " + _bucket_name(since, points), _chart(_throughput(history.fleet_minutes(histories),
                                                                               points))),
            _wait_cards(histories, points), card("Job types over the window", _types(histories))]
    return html(page(view, "Overview", *body, scripts=("uPlot.iife.min.js",)))


def _totals(view: View, rows: Sequence[QueueRow], workers: Sequence[Any]) -> Markup:
    def tile(label: str, value: int, path: str, kind: str = "") -> Markup:
        return el("a", el("span", f"{value:,}", class_="value"), el("span", label, class_="label"),
                  href=view.url(path), class_=f"tile {kind}".strip())
    sums = {place: sum(getattr(r.depth, place) for r in rows) for place in ("ready", "scheduled", "processing",
                                                                            "dead")}
    paused = sum(1 for r in rows if r.depth.paused)
    return el("div", tile("ready", sums["ready"], "/queues"), tile("scheduled", sums["scheduled"], "/scheduled"),
              tile("processing", sums["processing"], "/queues"),
              tile("dead", sums["dead"], "/dead", "bad" if sums["dead"] else ""),
              tile("workers alive", len(workers), "/workers"),
              tile("queues paused", paused, "/queues", "warn" if paused else ""), class_="tiles")


def _busiest(view: View, rows: Sequence[QueueRow]) -> Markup:
    """The queues with the most jobs waiting, at most BUSIEST of them."""
    ranked = sorted(rows, key=lambda r: -(r.depth.ready + r.depth.scheduled + r.depth.processing))[:BUSIEST]
    return table(("Queue", "State", "Ready", "Scheduled", "Processing", "Dead", "Oldest waiting"),
                 [[el("strong", r.depth.queue), badge("paused", "warn") if r.depth.paused else badge("active", "ok"),
                   f"{r.depth.ready:,}", f"{r.depth.scheduled:,}", f"{r.depth.processing:,}",
                   link(view, el("span", f"{r.depth.dead:,}", class_="bad"), "/dead", queue=r.depth.queue)
                   if r.depth.dead else "0", ago(r.oldest)] for r in ranked], empty="no queue yet", class_="numbers")


def _windows(view: View, current: str) -> Markup:
    return el("div", *(el("a", name, href=view.url("/", window=name), class_="active" if name == current else None)
                       for name in WINDOWS), class_="segmented", role="group", aria_label="time window")


def _bucket_name(since: int, points: int) -> str:
    step = since // points
    if step <= 60:
        return "minute"
    return f"{step // 60} minutes" if step < 3600 else "hour" if step < 7200 else f"{step // 3600} hours"


def _chart(spec: dict[str, Any]) -> Markup:
    """A chart's data in a data attribute (escaped as any attribute), drawn by dashboard.js."""
    return el("div", class_="chart", data_chart=json.dumps(spec, separators=(",", ":")))


def _throughput(minutes: Sequence[Minute], points: int) -> dict[str, Any]:
    shown = history.downsample(minutes, points)
    return {"unit": "jobs", "x": [m.at for m in shown],
            "series": [{"label": "processed", "values": [m.processed for m in shown]},
                       {"label": "failed", "values": [m.failed for m in shown]},
                       {"label": "dead", "values": [m.dead for m in shown]}]}


def _waits(h: QueueHistory, points: int) -> dict[str, Any]:
    shown = history.downsample(h.minutes, points)
    return {"unit": "s", "x": [m.at for m in shown],
            "series": [{"label": name, "values": [getattr(m, "wait_" + name) for m in shown]}
                       for name in ("p50", "p95", "p99")]}


def _wait_cards(histories: Sequence[QueueHistory], points: int) -> Markup:
    charts = [el("div", el("h3", h.queue), _chart(_waits(h, points)), class_="small-chart") for h in histories]
    return card("Wait before start, per queue (p50 / p95 / p99)",
                el("div", *charts, class_="chart-grid") if charts else el("p", "no queue yet", class_="empty"))


def _types(histories: Sequence[QueueHistory]) -> Markup:
    totals: dict[str, list[int]] = {}
    for h in histories:
        for t in h.types:
            into = totals.setdefault(t.type, [0, 0, 0, 0, 0])
            for i, value in enumerate(_counts(t)):
                into[i] += value
    rows = sorted(totals.items(), key=lambda item: -item[1][0])
    return table(("Type", "Processed", "Succeeded", "Failed", "Retried", "Dead"),
                 [[t, *(f"{n:,}" for n in counts)] for t, counts in rows],
                 empty="no job ran in this window", class_="numbers")


def _counts(t: TypeTotals) -> tuple[int, int, int, int, int]:
    return t.processed, t.succeeded, t.failed, t.retried, t.dead
