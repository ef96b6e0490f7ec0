"""HTML built from code, escaped by construction: a str is text, a Markup is already HTML.

No template engine (one less dependency, nothing to configure): `el("td", value)` escapes
`value` unless it is Markup, so a payload holding `<script>` shows as text wherever it lands.
"""

from __future__ import annotations

import html
from typing import Any, Iterable

_VOID = frozenset({"input", "meta", "link", "br", "img"})


class Markup(str):
    """Text that is HTML already (built by el, join or escape): never escaped again."""

    __slots__ = ()


def escape(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(items: Iterable[Any], sep: str = "") -> Markup:
    return Markup(escape(sep).join(escape(item) for item in items))


def el(tag: str, *children: Any, **attrs: Any) -> Markup:
    """<tag attrs>children</tag>. A trailing underscore is dropped from a name (class_), other
    underscores become dashes (data_confirm); True gives a bare attribute, None or False none."""
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{escape(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in _VOID:
        return Markup(opening)
    return Markup(opening + join(children) + f"</{tag}>")


def table(headers: Iterable[Any], rows: Iterable[Iterable[Any]], empty: str = "nothing here",
          **attrs: Any) -> Markup:
    head = el("thead", el("tr", *(el("th", h) for h in headers)))
    body = [el("tr", *(el("td", cell) for cell in row)) for row in rows]
    if not body:
        return el("p", empty, class_="empty")
    return el("div", el("table", head, el("tbody", *body), **attrs), class_="table-wrap")


def card(title: Any, *children: Any, extra: Any = "") -> Markup:
    return el("section", el("header", el("h2", title), extra), *children, class_="card")


def badge(text: Any, kind: str = "") -> Markup:
    return el("span", text, class_=f"badge {kind}".strip())
