"""Output for people (aligned tables, ages, times) and for scripts (JSON). Pure."""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

_ELLIPSIS = "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell; a column of numbers only is right-aligned."""
    cells = [[cell_text(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers))] + [line(row) for row in cells])


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return one_line(str(value))


def one_line(text: str, limit: int | None = None) -> str:
    """Text on one line (newlines and tabs become spaces), cut to `limit` characters."""
    flat = " ".join(text.split())
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + _ELLIPSIS
    return flat


def block(title: str, text: str | None) -> list[str]:
    """A titled block of text kept as written, each line indented; nothing when there is no text."""
    if not text:
        return []
    return [f"{title}:"] + ["  " + line for line in text.splitlines()]


def age(seconds: float | None) -> str:
    """A duration as a person reads it: 850ms, 4.2s, 3m05s, 2h10m, 3d04h."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def when(at: float | None) -> str:
    """A unix time in local time, to the second."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False, default=repr)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
