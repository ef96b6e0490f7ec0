"""Rate and concurrency limits of a route, fleet-wide: the pure part. No I/O.

A route's ``limits`` block (DESIGN.md section 11) becomes a `LimitSpec` once, at start-up;
this module also finds a job's limit key in its payload (`key_of`) and turns a server's
request to slow down (`geoq.errors.Throttled`) into a pause (`pause_for`). The counting
itself happens in Redis, in one script per batch of jobs (geoq/broker/scripts/limit_take.lua),
so that every worker process of the fleet shares one count.

Rates are enforced as GCRA (the virtual-scheduling form of a token bucket): each grant moves
a "theoretical arrival time" on by 1/rate, and a grant is allowed while that time is at most
`burst - 1` intervals ahead of now. The burst is a tenth of a second's worth (at least one),
so in any window of W seconds at most rate x W + burst runs start: 110 in a second for 100/s.
Permits that fall due while no job asks are lost beyond the burst, so a job held back is woken
when its permit is due (geoq.worker.limiter.Waker), not at a scheduler's next pass (0.1-0.3 s
later): with the scheduler alone, 3 workers at 100/s reached 85/s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from geoq.errors import LimitKeyError, Throttled

__all__ = ["BUILT_IN_KEYS", "KeyRule", "LimitSpec", "burst_of", "key_of", "parse_key", "pause_for",
           "LIMIT_LABELS"]

BUILT_IN_KEYS = ("url_host", "recipient_domain")
KEY_RULE = "url_host, recipient_domain or a template such as {payload.account_id}"
BURST_SECONDS = 0.1      # a burst is this many seconds' worth of the rate (at least one run)

# What held a job back, as the limit script reports it and as geoq_limited_total labels it.
LIMIT_LABELS = {1: "rate", 2: "concurrency", 3: "key_rate", 4: "key_concurrency", 5: "paused_key"}

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELD_PATH = re.compile(r"payload(?:\.[A-Za-z0-9_-]+)+")


@dataclass(frozen=True, slots=True)
class KeyRule:
    """How a job's limit key is found: a built-in rule, or a template of payload fields.

    `parts` alternates literal text and field paths: ("acct-", ("account_id",), "") for
    "acct-{payload.account_id}"; empty for a built-in rule.
    """

    source: str                                  # url_host | recipient_domain | template
    text: str                                    # as written in the config, for messages
    parts: tuple[str | tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One route's limits; None where the route sets no such limit.

    `pause` is the pause when a server that asks us to slow down names no time (SMTP never
    does), `max_pause` caps whatever it asks. Both are seconds.
    """

    route: str
    rate: float | None = None
    concurrency: int | None = None
    key: KeyRule | None = None
    key_rate: float | None = None
    key_concurrency: int | None = None
    adaptive: bool = False
    pause: float = 30.0
    max_pause: float = 300.0

    @property
    def leased(self) -> bool:
        """Whether runs hold a concurrency slot (a lease in Redis) while they run."""
        return self.concurrency is not None or self.key_concurrency is not None


def burst_of(rate: float) -> int:
    """Runs a rate lets start at once after an idle spell: a tenth of a second's worth, at least one."""
    return max(1, int(rate * BURST_SECONDS))


def interval_ms(rate: float | None) -> float:
    """Milliseconds between two runs at `rate`; 0 when there is no rate limit."""
    return 0.0 if not rate else 1000.0 / rate


def parse_key(text: object) -> KeyRule:
    """A per_key `key` as written: a built-in name or a template; ValueError naming what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected {KEY_RULE}, got {text!r}")
    if text in BUILT_IN_KEYS:
        return KeyRule(text, text)
    if "{" not in text and "}" not in text:
        raise ValueError(f"expected {KEY_RULE}, got {text!r} (not a built-in key)")
    return KeyRule("template", text, _template_parts(text))


def _template_parts(text: str) -> tuple[str | tuple[str, ...], ...]:
    parts: list[str | tuple[str, ...]] = []
    end = 0
    for match in _PLACEHOLDER.finditer(text):
        if not _FIELD_PATH.fullmatch(match[1]):
            raise ValueError(f"expected {{payload.FIELD}} placeholders in the key template, got {text!r}")
        parts += [text[end:match.start()], tuple(match[1].split(".")[1:])]
        end = match.end()
    rest = text[end:]
    if "{" in rest or "}" in rest or any("{" in p or "}" in p for p in parts if isinstance(p, str)):
        raise ValueError(f"expected balanced {{payload.FIELD}} placeholders in the key template, got {text!r}")
    return (*parts, rest)


def key_of(rule: KeyRule, payload: Any) -> str:
    """The limit key of a job with this payload; LimitKeyError (the job fails at once) when the
    payload lacks what the rule reads. Host and domain names are lower-cased."""
    if rule.source == "url_host":
        return _url_host(rule, payload)
    if rule.source == "recipient_domain":
        return _recipient_domain(rule, payload)
    return "".join(p if isinstance(p, str) else _field(rule, payload, p) for p in rule.parts)


def _url_host(rule: KeyRule, payload: Any) -> str:
    url = payload.get("url") if isinstance(payload, dict) else None
    try:
        host = urlsplit(url.strip()).hostname if isinstance(url, str) else None
    except ValueError:
        host = None
    if not host:
        raise LimitKeyError(f"limits.per_key.key {rule.text}: the payload has no 'url' with a host")
    return host


def _recipient_domain(rule: KeyRule, payload: Any) -> str:
    to = payload.get("to") if isinstance(payload, dict) else None
    first = to[0] if isinstance(to, list) and to else to
    address = parseaddr(first)[1] if isinstance(first, str) else ""
    domain = address.rpartition("@")[2].strip().lower() if "@" in address else ""
    if not domain:
        raise LimitKeyError(f"limits.per_key.key {rule.text}: the payload has no 'to' address with a domain")
    return domain


def _field(rule: KeyRule, payload: Any, path: tuple[str, ...]) -> str:
    value = payload
    for name in path:
        if not isinstance(value, dict) or name not in value:
            where = "payload." + ".".join(path)
            raise LimitKeyError(f"limits.per_key.key {rule.text}: the payload has no {where}")
        value = value[name]
    if isinstance(value, (dict, list)) or value is None:
        raise LimitKeyError(f"limits.per_key.key {rule.text}: payload.{'.'.join(path)} is not a plain value")
    return str(value).lower() if isinstance(value, bool) else str(value)


def pause_for(spec: LimitSpec, error: BaseException) -> float | None:
    """Seconds to pause the job's key for, when an adaptive route's handler was told to slow down;
    None when this error is no such signal (or the route is not adaptive): a failure like any other."""
    if not spec.adaptive or not isinstance(error, Throttled):
        return None
    asked = spec.pause if error.delay is None else error.delay
    return min(max(0.0, asked), spec.max_pause) if math.isfinite(asked) else spec.max_pause
