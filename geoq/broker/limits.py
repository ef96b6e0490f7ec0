"""The Redis side of a route's limits: take permits, give back and renew leases, pause a key,
read the state. One script call per route and batch (scripts/limit_*.lua), all its keys under
the route's hash tag (keys.LimitKeys). No policy here: what to do with a job held back is the
worker's (geoq.worker.limiter).

Taking a permit is not a job move (the job stays in the worker's processing list meanwhile),
so it is a script of its own on the route's keys; a job held back then moves with the ordinary
retry script, which is the queue's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

import redis

from geoq.broker import keys
from geoq.broker.clock import redis_time
from geoq.broker.errors import redis_errors
from geoq.broker.scripts import Call, Scripts, run
from geoq.limits import LimitSpec, burst_of, interval_ms

ROUTE_PAUSE = "route"   # the paused set's member for a route paused as a whole (adaptive, no per_key)


def pause_member(spec: LimitSpec, key: str | None) -> str:
    """The paused set's member a job of this key value checks ('' when the route is not adaptive)."""
    if not spec.adaptive:
        return ""
    return ROUTE_PAUSE if key is None else "k:" + key


class Ask(NamedTuple):
    """One job asking for its permits: its key value (None without per_key), lease member and id
    (which a permit reserved for it while it waits is kept under)."""

    key: str | None
    member: str
    job_id: str


class Lease(NamedTuple):
    """A concurrency slot a run holds: its route's key value (None without per_key) and member."""

    key: str | None
    member: str


@dataclass(frozen=True, slots=True)
class LimitState:
    """What `geoq stats` shows of one limited route."""

    route: str
    rate: int             # permits granted in the last whole second
    in_use: int           # concurrency slots held now (0 for a route without concurrency limits)
    paused: int           # key values (or the route) paused now


class LimitBroker:
    """Limit moves of many routes; `client` is a redis.Redis (or cluster client) from connection.connect."""

    def __init__(self, client: "redis.Redis", scripts: Scripts) -> None:
        self.client, self.scripts = client, scripts

    def take(self, batches: Sequence[tuple[LimitSpec, Sequence[Ask], int]],
             lease_ms: int) -> list[tuple[int, dict[int, tuple[int, float]]]]:
        """For each route's batch (spec, asks, spare permits wanted): the spare permits granted,
        and the asks not simply granted, by position: (0, seconds to wait before starting)
        granted, or (what held it back, seconds to wait before asking again); see limit_take.lua.
        An ask not named is granted, to start now. Every route in one round trip."""
        replies = self._run("limit_take", [take_call(spec, asks, lease_ms, spare) for spec, asks, spare in batches])
        return [(int(reply[0]), _verdicts(reply)) for reply in replies]

    def release(self, by_route: dict[str, list[Lease]], run_ms: dict[str, float]) -> None:
        """Give back the slots of ended runs, every route in one round trip."""
        calls = [_lease_call("limit_release", route, leases, [round(run_ms.get(route, 0.0)), len(leases)],
                             with_state=True) for route, leases in by_route.items() if leases]
        if calls:
            self._run("limit_release", calls)

    def renew(self, by_route: dict[str, list[Lease]], lease_ms: int) -> None:
        """Extend the leases of runs still going on, every route in one round trip."""
        calls = [_lease_call("limit_renew", route, leases, [lease_ms], with_state=False)
                 for route, leases in by_route.items() if leases]
        if calls:
            self._run("limit_renew", calls)

    def pause(self, spec: LimitSpec, key: str | None, seconds: float) -> float:
        """Pause a key value (the route, without per_key) for every worker; seconds until it ends."""
        k = keys.limit_keys(spec.route)
        (ms,) = self._run("limit_pause", [Call("limit_pause", (k.paused,),
                                               [pause_member(spec, key), round(seconds * 1000)])])
        return float(ms) / 1000.0

    def states(self, routes: Iterable[str]) -> list[LimitState]:
        """The state of each route's limits, in one round trip."""
        names = list(routes)
        now_ms = round(redis_time(self.client) * 1000)
        pipe = self.client.pipeline(transaction=False)
        for route in names:
            k = keys.limit_keys(route)
            pipe.hmget(k.state, "win", "n", "prev")
            pipe.zcount(k.leases, now_ms, "+inf")   # expired leases (a dead worker's) are not in use
            pipe.zcount(k.paused, now_ms, "+inf")
        with redis_errors("limits"):
            replies = pipe.execute()
        return [_state(route, now_ms, *replies[3 * i:3 * i + 3]) for i, route in enumerate(names)]

    def _run(self, op: str, calls: list[Call]) -> list[Any]:
        with redis_errors(op):
            return run(self.client, self.scripts, calls)


def _verdicts(reply: Any) -> dict[int, tuple[int, float]]:
    return {int(reply[i]) - 1: (int(reply[i + 1]), max(0.0, reply[i + 2] / 1000.0)) for i in range(1, len(reply), 3)}


def take_call(spec: LimitSpec, asks: Sequence[Ask], lease_ms: int, spare: int = 0) -> Call:
    """The limit_take.lua call for one route's batch: each distinct key value once in KEYS."""
    k = keys.limit_keys(spec.route)
    index: dict[str, int] = {}
    for ask in asks:
        if ask.key is not None and ask.key not in index:
            index[ask.key] = len(index) + 1
    names = [k.state, k.leases, k.paused, k.reserved]
    for value in index:
        names += [k.key_state(value), k.key_leases(value), k.key_reserved(value)]
    args: list[object] = [*_rate_args(spec.rate), spec.concurrency or 0, *_rate_args(spec.key_rate),
                          spec.key_concurrency or 0, lease_ms, pause_member(spec, None) if spec.key is None else "",
                          len(index), *[pause_member(spec, value) for value in index]]
    args += [len(asks), " ".join(ask.job_id for ask in asks),
             " ".join(str(index[a.key]) if a.key is not None else "0" for a in asks) if index else "",
             " ".join(ask.member for ask in asks) if spec.leased else "", spare]
    return Call("limit_take", names, args)


def _rate_args(rate: float | None) -> tuple[float, float]:
    """(interval ms, burst tolerance ms) of a rate; (0, 0) without one."""
    if not rate:
        return 0.0, 0.0
    step = interval_ms(rate)
    return step, step * (burst_of(rate) - 1)


def _lease_call(name: str, route: str, leases: Sequence[Lease], head: list[object], *, with_state: bool) -> Call:
    k = keys.limit_keys(route)
    index: dict[str, int] = {}
    args = list(head)
    for lease in leases:
        if lease.key is not None and lease.key not in index:
            index[lease.key] = len(index) + 1
        args += [index[lease.key] if lease.key is not None else 0, lease.member]
    first = [k.state, k.leases] if with_state else [k.leases]
    return Call(name, [*first, *[k.key_leases(value) for value in index]], args)


def _state(route: str, now_ms: int, window: Sequence[bytes | None], in_use: int, paused: int) -> LimitState:
    """The grants of the last whole second: the window's previous count when it is this second's,
    its count when it ended a second ago, else none."""
    sec = now_ms // 1000
    win, n, prev = (int(float(v)) if v is not None else 0 for v in window)
    rate = prev if win == sec else n if win == sec - 1 else 0
    return LimitState(route, rate, int(in_use), int(paused))
