"""Where every job is, read from a Redis Cluster, for end-of-test assertions.

The same Places as tests.support.keyspace, but each queue's keys are read on
the master that serves its slot and the processing lists are found by
scanning every master, one by one (a SCAN on one node sees only its keys).
The slot checks ask the cluster itself (CLUSTER KEYSLOT, CLUSTER SLOTS),
not a client-side hash.
"""

from __future__ import annotations

import json
from typing import Iterable

from redis.cluster import RedisCluster

from tests.support.keyspace import Places

PLACES = ("ready", "scheduled", "state", "dead", "dead_trimmed", "workers")


def places(client: RedisCluster, queues: Iterable[str]) -> Places:
    p = Places()
    queues = list(queues)
    held = processing_lists(client)
    for q in queues:
        tag = f"geoq:{{{q}}}"
        p.ready[q] = client.llen(f"{tag}:ready")
        p.scheduled[q] = client.zcard(f"{tag}:scheduled")
        p.processing[q] = sum(client.llen(key) for key in held if key.startswith(f"{tag}:processing:"))
        p.dead[q] = [json.loads(r) for r in client.zrange(f"{tag}:dead", 0, -1)]
        p.live_states[q] = client.hlen(f"{tag}:state")
    return p


def assert_settled(client: RedisCluster, queues: Iterable[str]) -> Places:
    """Nothing ready, scheduled, in any processing list on any master, or in a live state."""
    return places(client, queues).settled()


def processing_lists(client: RedisCluster) -> list[str]:
    """Every processing list of every queue, found by scanning each master in turn."""
    found: list[str] = []
    for node in client.get_primaries():
        cursor = 0
        while True:
            cursor, batch = node.redis_connection.scan(cursor, match="geoq:{*}:processing:*", count=1000)
            found += [k.decode() for k in batch]
            if cursor == 0:
                break
    return found


def slot(client: RedisCluster, key: str) -> int:
    """The slot the cluster assigns to `key` (CLUSTER KEYSLOT, asked of a server)."""
    return int(client.execute_command("CLUSTER", "KEYSLOT", key, target_nodes=RedisCluster.RANDOM))


def master_port_of_slot(client: RedisCluster, wanted: int) -> int:
    """The port of the master serving a slot, per CLUSTER SLOTS."""
    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS", target_nodes=RedisCluster.RANDOM):
        if start <= wanted <= end:
            return int(master[1])
    raise AssertionError(f"slot {wanted} is not served")


def queue_key_names(queue: str, worker_id: str = "w", job_id: str = "j") -> list[str]:
    """One name of every kind of key a queue has."""
    tag = f"geoq:{{{queue}}}"
    return [f"{tag}:{place}" for place in PLACES] + [f"{tag}:processing:{worker_id}", f"{tag}:done:{job_id}"]
