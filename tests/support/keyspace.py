"""Read where every job is, straight from Redis, for end-of-test assertions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

import redis


@dataclass
class Places:
    ready: dict[str, int] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)
    processing: dict[str, int] = field(default_factory=dict)
    dead: dict[str, list[dict]] = field(default_factory=dict)
    live_states: dict[str, int] = field(default_factory=dict)

    def total(self, kind: str) -> int:
        value = getattr(self, kind)
        return sum(len(v) if isinstance(v, list) else v for v in value.values())

    def settled(self) -> "Places":
        """Assert nothing is left ready, scheduled, in a processing list or in a live state; self."""
        assert self.total("ready") == 0, self.ready
        assert self.total("scheduled") == 0, self.scheduled
        assert self.total("processing") == 0, self.processing
        assert self.total("live_states") == 0, self.live_states
        return self


def places(client: redis.Redis, queues: Iterable[str]) -> Places:
    p = Places()
    for q in queues:
        tag = f"geoq:{{{q}}}"
        p.ready[q] = client.llen(f"{tag}:ready")
        p.scheduled[q] = client.zcard(f"{tag}:scheduled")
        p.processing[q] = sum(client.llen(k) for k in client.scan_iter(match=f"{tag}:processing:*"))
        p.dead[q] = [json.loads(r) for r in client.zrange(f"{tag}:dead", 0, -1)]
        p.live_states[q] = client.hlen(f"{tag}:state")
    return p


def assert_settled(client: redis.Redis, queues: Iterable[str]) -> Places:
    """Nothing left ready, scheduled, in a processing list or in a live state; the places, for more checks."""
    return places(client, queues).settled()
