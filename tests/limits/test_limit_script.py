"""limit_take.lua and its companions on a real redis-server, without workers: the invariants of
the permit script one call at a time."""

from __future__ import annotations

import time

import pytest

from geoq.broker.limits import Ask, Lease, LimitBroker
from geoq.broker.scripts import Scripts
from geoq.limits import LimitSpec, parse_key
from tests.support.waiting import wait_until

LEASE_MS = 10_000


@pytest.fixture
def broker(redis_client) -> LimitBroker:
    return LimitBroker(redis_client, Scripts())


def ask(broker: LimitBroker, spec: LimitSpec, *ids: str, key: str | None = None, spare: int = 0):
    (reply,) = broker.take([(spec, [Ask(key, f"w|{i}|0" if spec.leased else "", i) for i in ids], spare)], LEASE_MS)
    return reply


def test_a_route_paused_as_a_whole_holds_every_job_until_the_pause_ends(broker):
    spec = LimitSpec("r", adaptive=True)
    assert broker.pause(spec, None, 0.3) == pytest.approx(0.3, abs=0.01)
    _, held = ask(broker, spec, "a", "b")
    assert {i: code for i, (code, _) in held.items()} == {0: 5, 1: 5} and 0 < held[0][1] <= 0.3
    time.sleep(0.35)
    assert ask(broker, spec, "a", "b") == (0, {})


def test_a_held_job_keeps_its_reserved_permit_and_a_later_job_queues_behind_it(broker):
    spec = LimitSpec("r", rate=10.0)                     # burst 1: one permit per 100 ms
    assert ask(broker, spec, "first") == (0, {})
    _, held = ask(broker, spec, "second")
    assert held[0][0] == 1 and 0.05 < held[0][1] <= 0.1
    _, later = ask(broker, spec, "third")                # came later: its permit after the second's
    assert later[0][0] == 1 and later[0][1] > held[0][1] + 0.05
    time.sleep(held[0][1] + 0.01)
    assert ask(broker, spec, "second") == (0, {})        # its permit was kept for it
    _, early = ask(broker, spec, "third")                # not yet: it waits for its own
    assert early[0][0] == 1


def test_a_dead_workers_slot_comes_back_when_its_lease_expires(broker, redis_client):
    spec = LimitSpec("r", concurrency=1)
    (reply,) = broker.take([(spec, [Ask(None, "dead|a|0", "a")], 0)], lease_ms=300)
    assert reply == (0, {})
    _, held = ask(broker, spec, "b")
    assert held[0][0] == 2 and held[0][1] > 0             # waits, in line
    wait_until(lambda: ask(broker, spec, "b") == (0, {}), timeout=3, interval=0.05,
               message="the unrenewed lease to expire")
    broker.release({"r": [Lease(None, "w|b|0")]}, {"r": 120.0})
    assert broker.states(["r"])[0].in_use == 0


def test_spare_permits_are_given_only_while_the_limit_is_far_from_binding(broker):
    loose, tight = LimitSpec("loose", rate=1e6), LimitSpec("tight", rate=100.0)
    assert ask(broker, loose, "a", "b", spare=400)[0] == 400
    assert ask(broker, tight, "a", "b", spare=2)[0] == 2          # 10 in the bucket: 2 jobs, 2 spare, 6 left
    assert ask(broker, tight, "c", spare=4)[0] == 0               # 5 left, not twice 4 more


def test_a_keys_state_is_gone_soon_after_its_schedule_is_past(broker, redis_client):
    spec = LimitSpec("r", key=parse_key("url_host"), key_rate=5.0)
    assert ask(broker, spec, "a", key="h.example") == (0, {})
    assert redis_client.exists("geoq:{limit:r}:kstate:h.example")
    wait_until(lambda: not redis_client.exists("geoq:{limit:r}:kstate:h.example"), timeout=3, interval=0.05,
               message="the key's state to expire")
