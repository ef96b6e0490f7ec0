"""The frame every page shares: sidebar, title, notices, and the small forms that act."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from geoq.dashboard.html import Markup, el, escape
from geoq.dashboard.http import Request
from geoq.dashboard.security import FIELD

NAV = (("/", "Overview"), ("/queues", "Queues"), ("/workers", "Workers"), ("/scheduled", "Scheduled"),
       ("/dead", "Dead jobs"))
PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class View:
    """What a page needs besides Redis: the request, whether it may act, and its form token."""

    request: Request
    read_only: bool
    token: str

    def url(self, path: str, **query: Any) -> str:
        return self.request.url(path, **query)

    def action(self, path: str, label: str, fields: dict[str, Any], *, danger: bool = False,
               confirm: str | None = None) -> Markup:
        """A one-button POST form (nothing in read-only mode). `confirm` asks first (dashboard.js)."""
        if self.read_only:
            return Markup("")
        hidden = [el("input", type="hidden", name=name, value=value) for name, value in fields.items()]
        return el("form", el("input", type="hidden", name=FIELD, value=self.token), *hidden,
                  el("button", label, type="submit", class_="btn danger" if danger else "btn"),
                  method="post", action=self.url(path), class_="inline", data_confirm=confirm)

    def actions(self, *forms: Markup) -> Markup:
        return el("div", *forms, class_="actions")


def page(view: View, title: str, *body: Any, wide: bool = False, scripts: Sequence[str] = ()) -> Markup:
    """The whole document around a page's cards."""
    r = view.request
    here = "/" + r.path.strip("/").split("/")[0] if r.path.strip("/") else "/"
    nav = [el("a", label, href=view.url(path), class_="active" if path == here else None) for path, label in NAV]
    lookup = el("form", el("input", type="search", name="id", placeholder="Job id…", aria_label="job id",
                           value=r.query.get("id", "") if here == "/job" else None),
                method="get", action=view.url("/job"), class_="lookup")
    notice = r.query.get("done")
    head = el("head", el("meta", charset="utf-8"), el("meta", name="viewport", content="width=device-width"),
              el("title", f"{title} · geoq"), el("link", rel="stylesheet", href=view.url("/static/uPlot.min.css")),
              el("link", rel="stylesheet", href=view.url("/static/dashboard.css")),
              el("link", rel="icon", href=view.url("/static/favicon.svg")),
              *[el("script", src=view.url("/static/" + name), defer=True) for name in scripts],
              el("script", src=view.url("/static/dashboard.js"), defer=True))
    side = el("nav", el("a", el("span", "geoq", class_="logo-mark"), " dashboard", href=view.url("/"), class_="brand"),
              *nav, lookup, el("div", "read-only" if view.read_only else "", class_="mode"), class_="side")
    refresh = el("label", el("input", type="checkbox", id="auto-refresh"), " auto-refresh", class_="refresh",
                 title="reload this page every 5 seconds")
    main = el("main", el("header", el("h1", title), refresh, class_="top"),
              el("p", notice, class_="notice", role="status") if notice else "", *body,
              class_="wide" if wide else None)
    return Markup("<!doctype html>" + el("html", head, el("body", side, main), lang="en"))


def pager(view: View, path: str, page_no: int, has_next: bool, **query: Any) -> Markup:
    """Previous / next links for an offset-paged list."""
    prev = el("a", "← previous", href=view.url(path, **query, page=page_no - 1)) if page_no > 1 else ""
    nxt = el("a", "next →", href=view.url(path, **query, page=page_no + 1)) if has_next else ""
    if not prev and not nxt:
        return Markup("")
    return el("div", prev, el("span", f"page {page_no}"), nxt, class_="pager")


def cursor_pager(view: View, path: str, next_cursor: str | None, first: bool, **query: Any) -> Markup:
    """First page / next links for a cursor-paged list (a cursor only goes forward)."""
    if next_cursor is None and first:
        return Markup("")
    start = el("a", "⇤ first page", href=view.url(path, **query)) if not first else ""
    nxt = el("a", "next →", href=view.url(path, **query, cursor=next_cursor)) if next_cursor else ""
    return el("div", start, nxt, class_="pager")


def link(view: View, text: Any, path: str, **query: Any) -> Markup:
    return el("a", text, href=view.url(path, **query))


def code(text: Any) -> Markup:
    return el("code", escape(text))
