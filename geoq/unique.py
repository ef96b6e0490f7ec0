"""Unique jobs: the rule a route declares, the key a job gets, and the lock digest. Pure.

A unique job holds a lock in its queue (enqueue.lua) named by a digest of its key, so the
key's text may be as long as a payload while the Redis key stays short. The default key is
the type plus the canonical payload (sorted keys, compact JSON); a route's `unique.key` is a
template of `{type}`, `{payload}` and `{payload.a.b}` fields.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

_FIELD = re.compile(r"\{([^{}]*)\}")
_PATH = re.compile(r"type|payload(\.[^.{}]+)*")
TEMPLATE_RULE = "text with {type}, {payload} or {payload.FIELD[.FIELD...]} fields, braces only around fields"


@dataclass(frozen=True, slots=True)
class UniqueRule:
    """A route's `unique` block: the key template ("" for type plus payload) and the window (seconds)."""

    key: str = ""
    window: float = 0.0


def check_template(template: str) -> str:
    """The template, or ValueError naming what is wrong with it."""
    rest = _FIELD.sub("", template)
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced braces; expected {TEMPLATE_RULE}")
    for name in _FIELD.findall(template):
        if not _PATH.fullmatch(name):
            raise ValueError(f"unknown field {{{name}}}; expected {TEMPLATE_RULE}")
    return template


def key_text(job_type: str, payload: Any, template: str = "") -> str:
    """The unique key of a job; ValueError when the template names a field the payload lacks."""
    if not template:
        return job_type + "\n" + json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return job_type + "\n" + _FIELD.sub(lambda m: _field(job_type, payload, m.group(1)), template)


def _field(job_type: str, payload: Any, path: str) -> str:
    if path == "type":
        return job_type
    value = payload
    for part in path.split(".")[1:]:
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"unique key field {{{path}}}: the payload has no {part!r} there")
        value = value[part]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def lock_digest(text: str) -> str:
    """The lock's name for a key: 32 hex digits of its SHA-256 (no collision in practice)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
