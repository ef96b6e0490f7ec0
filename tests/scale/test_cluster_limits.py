"""Route limits on Redis Cluster: each route's counters and per-key counters share one slot, so
one script checks both; several routes on several masters are asked in one round trip."""

from __future__ import annotations

import dataclasses

from geoq.broker import keys
from geoq.broker.connection import connect
from geoq.broker.limits import Ask, Lease, LimitBroker
from geoq.broker.scripts import Scripts
from geoq.config import default_config
from geoq.limits import LimitSpec, parse_key

ROUTES = ["mail.send", "http.fetch", "report.build", "hook.call", "sms.send", "push.send"]


def test_every_key_of_a_route_sits_in_one_slot_and_routes_spread_over_the_masters(cluster, cluster_client):
    for route in ROUTES:
        k = keys.limit_keys(route)
        names = [k.state, k.leases, k.paused, k.reserved, *(f(v) for v in ("a.example", "b" * 500)
                                                           for f in (k.key_state, k.key_leases, k.key_reserved))]
        assert len({cluster.slot_of(n) for n in names}) == 1, route
    assert len({cluster.master_of(keys.limit_keys(r).state).port for r in ROUTES}) >= 2


def test_permits_pauses_and_slots_work_across_masters_in_one_round_trip(cluster, cluster_client):
    broker = LimitBroker(connect(dataclasses.replace(default_config(cluster.url).redis), name="geoq-test"), Scripts())
    specs = [LimitSpec(route, rate=100.0, concurrency=3, key=parse_key("url_host"), key_rate=1.0, adaptive=True)
             for route in ROUTES]
    asks = [Ask(host, f"w1|{route}-{n}|{n}", f"{route}-{n}") for route in ROUTES
            for n, host in enumerate(["a.example", "a.example", "b.example", "c.example", "d.example"])]
    replies = broker.take([(spec, asks[5 * i:5 * i + 5], 0) for i, spec in enumerate(specs)], lease_ms=10_000)
    for spare, named in replies:
        # a.example's second job waits for its key's next permit; three slots go to the first
        # three granted; the fifth job finds the route's slots taken
        assert spare == 0 and sorted(named) == [1, 4] and named[1][0] == 3 and named[4][0] == 2
    broker.pause(specs[0], "b.example", 30)
    states = {s.route: s for s in broker.states(ROUTES)}
    assert all(states[r].in_use == 3 for r in ROUTES) and states[ROUTES[0]].paused == 1
    broker.release({r: [Lease("a.example", f"w1|{r}-0|0")] for r in ROUTES}, {r: 50.0 for r in ROUTES})
    assert all(s.in_use == 2 for s in broker.states(ROUTES))
    (again,) = broker.take([(specs[0], [Ask("b.example", "w1|x|9", "x")], 0)], lease_ms=10_000)
    assert again[1][0][0] == 5   # its key is paused, whichever master holds the route
