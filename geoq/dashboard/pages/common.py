"""What several pages share: the list of queues, times for people, and the answer to an action."""

from __future__ import annotations

import json
import time
from typing import Any

from geoq import job as jobs
from geoq.admin import render
from geoq.admin.session import Session
from geoq.dashboard.html import Markup, el
from geoq.dashboard.http import Response, bad_request, redirect
from geoq.dashboard.layout import View
from geoq.dashboard.security import masked
from geoq.errors import InvalidJob

PREVIEW = 160   # characters of a payload shown in a list


def queue_names(s: Session) -> list[str]:
    """The config's queues, then those workers registered for (one SMEMBERS: no keyspace scan)."""
    known = s.known_queues()
    return known + sorted(s.broker.registered_queues().difference(known))


def html(markup: Markup) -> Response:
    return Response(200, markup.encode())


def done(view: View, path: str, message: str, **query: Any) -> Response:
    """After an action: back to the page, which shows `message`."""
    return redirect(view.url(path, **query, done=message))


def queue_arg(view: View, name: str = "queue", required: bool = True) -> str:
    raw = view.request.arg(name)
    if not raw:
        if required:
            raise bad_request(f"{name}: a queue name is required")
        return ""
    try:
        return jobs.check_queue(raw)
    except InvalidJob as e:
        raise bad_request(f"{name}: {e}") from None


def id_arg(view: View, name: str = "id") -> str:
    raw = view.request.arg(name)
    if not raw:
        raise bad_request(f"{name}: a job id is required")
    try:
        return jobs.check_id(raw)
    except InvalidJob as e:
        raise bad_request(f"{name}: {e}") from None


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "just now" if seconds < 1 else render.age(seconds) + " ago"


def when(at: float | None) -> Markup:
    """A time as a person reads it, the exact unix time in its tooltip."""
    if at is None:
        return Markup("-")
    return el("time", time.strftime("%b %d %H:%M:%S", time.localtime(at)), title=f"{render.when(at)} ({at:.3f})")


def preview(value: Any) -> str:
    """A payload on one line, secrets masked, cut to PREVIEW characters."""
    text = json.dumps(masked(value), ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW else text[:PREVIEW - 1] + "…"


def pretty(value: Any) -> str:
    return json.dumps(masked(value), ensure_ascii=False, indent=2, default=str)
