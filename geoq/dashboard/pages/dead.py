"""Dead jobs, grouped by error fingerprint (geoq.admin.groups): filter by queue, type and text;
retry or delete one job, a group, or every dead job of a queue. The groups layer bounds the
Redis work of each page and batches group-wide moves; this page only renders and dispatches."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qsl, urlsplit

from geoq.admin import groups, render
from geoq.admin.errors import UsageError
from geoq.admin.groups import Group
from geoq.admin.session import Session
from geoq.dashboard.html import Markup, card, el, table
from geoq.dashboard.http import Response, bad_request
from geoq.dashboard.layout import PAGE_SIZE, View, cursor_pager, link, page
from geoq.dashboard.pages.common import done, html, id_arg, queue_arg, queue_names, when
from geoq.records import DeadRecord

_FINGERPRINT_MAX = 128


def show(s: Session, view: View) -> Response:
    names = queue_names(s)
    queue = queue_arg(view, required=False)
    job_type, text, cursor = view.request.arg("type") or None, view.request.arg("text") or None, _cursor(view)
    with _cursor_checked():
        found = groups.list_groups(s, [queue] if queue else names, job_type, text, cursor, PAGE_SIZE)
    filters = dict(queue=queue, type=job_type, text=text)
    title = ("about " if found.estimated else "") + f"{found.total:,} group{'' if found.total == 1 else 's'}"
    body = [card("Filter", _filters(view, names, queue, job_type or "", text or "")),
            card(title, table(("Jobs", "Error", "Queue", "Type", "First seen", "Last seen", ""),
                              [_group_row(view, g) for g in found.groups], empty="no dead job matches"),
                 cursor_pager(view, "/dead", found.next_cursor, cursor is None, **filters),
                 extra=_queue_actions(view, queue) if queue else "")]
    return html(page(view, "Dead jobs", *body))


def _cursor(view: View) -> str | None:
    cursor = view.request.arg("cursor")
    if len(cursor) > 200:
        raise bad_request("cursor: too long; start again from the first page")
    return cursor or None


@contextmanager
def _cursor_checked() -> Iterator[None]:
    """A cursor the groups layer refuses (edited, from an older version, or another group's) is a
    400 with one line, not a 500; the refused text is not echoed back. A cursor is the only
    argument these calls take from the request that the groups layer checks (the page's limit is
    fixed), so its UsageError is the cursor's."""
    try:
        yield
    except UsageError:
        raise bad_request("cursor: not one this page gave; start again from the first page") from None


def _filters(view: View, names: Sequence[str], queue: str, job_type: str, text: str) -> Markup:
    options = [el("option", "all queues", value="")] + [el("option", n, value=n, selected=n == queue) for n in names]
    return el("form", el("select", *options, name="queue", aria_label="queue"),
              el("input", type="text", name="type", value=job_type, placeholder="job type", aria_label="job type"),
              el("input", type="search", name="text", value=text, placeholder="text in the error",
                 aria_label="text in the error"),
              el("button", "Filter", type="submit", class_="btn primary"),
              el("a", "clear", href=view.url("/dead")), method="get", action=view.url("/dead"), class_="filters")


def _group_row(view: View, g: Group) -> list[Any]:
    fields = {"scope": "group", "queue": g.queue, "fp": g.fingerprint, "back": view.url("/dead", **_kept(view))}
    error = el("span", el("strong", g.error_type), ": " if g.message else "", g.message, class_="clip",
               title=f"{g.error_type}: {g.message}")
    actions = view.actions(link(view, "jobs →", "/dead/group", queue=g.queue, fp=g.fingerprint),
                           view.action("/dead/retry", "Retry", fields),
                           view.action("/dead/delete", "Delete", fields, danger=True,
                                       confirm=f"Delete the {g.count:,} dead jobs of this group?"))
    return [el("span", f"{g.count:,}", class_="bad"), error, g.queue, g.type or "-", when(g.first_seen),
            when(g.last_seen), actions]


def _kept(view: View) -> dict[str, str]:
    return {name: view.request.arg(name) for name in ("queue", "type", "text")}


def _queue_actions(view: View, queue: str) -> Markup:
    fields = {"scope": "all", "queue": queue, "back": view.url("/dead", queue=queue)}
    return view.actions(view.action("/dead/retry", f"Retry all of {queue}", fields,
                                    confirm=f"Put every dead job of {queue} back on its ready list?"),
                        view.action("/dead/delete", f"Delete all of {queue}", fields, danger=True,
                                    confirm=f"Delete every dead job of {queue}? This cannot be undone."))


# -- one group ---------------------------------------------------------------------------------


def show_group(s: Session, view: View) -> Response:
    queue, fingerprint, cursor = queue_arg(view), _fingerprint(view), _cursor(view)
    with _cursor_checked():
        found, next_cursor = groups.group_jobs(s, queue, fingerprint, cursor, PAGE_SIZE)
    here = view.url("/dead/group", queue=queue, fp=fingerprint)
    fields = {"scope": "group", "queue": queue, "fp": fingerprint, "back": view.url("/dead", queue=queue)}
    extra = view.actions(view.action("/dead/retry", "Retry the group", fields),
                         view.action("/dead/delete", "Delete the group", fields, danger=True,
                                     confirm="Delete every dead job of this group?"))
    title = render.one_line(str(found[0].body.get("error") or ""), 120) if found else "this group is empty now"
    body = card(title, table(("Job", "Type", "Reason", "Runs", "Died", "Error", ""),
                             [_job_row(view, r, here) for r in found], empty="no dead job left in this group"),
                cursor_pager(view, "/dead/group", next_cursor, cursor is None, queue=queue, fp=fingerprint),
                extra=extra)
    back = el("p", link(view, "← every group of " + queue, "/dead", queue=queue), " · fingerprint ",
              el("code", fingerprint), class_="crumbs")
    return html(page(view, f"Dead jobs of one group in {queue}", back, body))


def _fingerprint(view: View) -> str:
    fingerprint = view.request.arg("fp")
    if not fingerprint or len(fingerprint) > _FINGERPRINT_MAX or not fingerprint.isalnum():
        raise bad_request(f"fp: expected a group's fingerprint (letters and digits), got {fingerprint[:40]!r}")
    return fingerprint


def _job_row(view: View, r: DeadRecord, back: str) -> list[Any]:
    fields = {"scope": "job", "queue": r.queue, "id": r.id, "back": back}
    actions = view.actions(view.action("/dead/retry", "Retry", fields),
                           view.action("/dead/delete", "Delete", fields, danger=True,
                                       confirm=f"Delete dead job {r.id}?"))
    return [link(view, el("code", r.id or "?"), "/job", id=r.id), r.type or "-", str(r.body.get("reason") or "-"),
            r.body.get("attempts", 0), when(r.died_at),
            el("span", render.one_line(str(r.body.get("error") or "")), class_="clip"), actions]


# -- actions -----------------------------------------------------------------------------------

Act = Callable[[Session, str, str], int]


def retry(s: Session, view: View) -> Response:
    return _act(s, view, "retried", groups.retry_dead, groups.retry_group, groups.retry_all)


def delete(s: Session, view: View) -> Response:
    return _act(s, view, "deleted", groups.delete_dead, groups.delete_group, groups.delete_all)


def _act(s: Session, view: View, did: str, one: Callable[[Session, str, Sequence[str]], int], group: Act,
         every: Callable[[Session, str], int]) -> Response:
    scope, queue = view.request.arg("scope"), queue_arg(view)
    if scope == "job":
        job_id = id_arg(view)
        n, what = one(s, queue, [job_id]), f"dead job {job_id}"
    elif scope == "group":
        n, what = group(s, queue, _fingerprint(view)), "dead jobs of the group"
    elif scope == "all":
        n, what = every(s, queue), f"dead jobs of {queue}"
    else:
        raise bad_request(f"scope: expected job, group or all, got {scope[:20]!r}")
    message = f"{did} {n:,} {what}" if scope != "job" else (f"{what} {did}" if n else f"{what} was not {did} "
                                                                                       "(no longer dead, or live again)")
    path, query = _back(view)
    return done(view, path, message, **query)


def _back(view: View) -> tuple[str, dict[str, str]]:
    """Where the form came from (path and query), inside the app only: never another site."""
    parts = urlsplit(view.request.arg("back"))
    root = view.request.root
    path = parts.path[len(root):] if parts.path.startswith(root) else ""
    if parts.scheme or parts.netloc or not path.startswith(("/dead", "/job")):
        return "/dead", {}
    return path, {k: v for k, v in parse_qsl(parts.query) if k != "done"}
