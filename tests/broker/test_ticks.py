"""Ticks are claimed once across every claimant, in order, and missed ones are caught up or skipped as told."""

from __future__ import annotations

from typing import Any

import pytest

from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Broker
from geoq.broker.connection import connect
from geoq.config import ScheduleConfig, default_config
from geoq.errors import PayloadTooLarge
from geoq.ticker import Ticker, last_runs

K = keys.queue_keys("default")
T0 = 1_800_000_000.0   # a whole number of minutes: every: 1m ticks at T0, T0 + 60, ...


def schedule(**kw: Any) -> ScheduleConfig:
    values: dict[str, Any] = {"name": "often", "type": "t.job", "every": 60.0, "queue": "default",
                              "payload": {"n": 1}}
    return ScheduleConfig(**{**values, **kw})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis))


def ready_ids(redis_client) -> list[str]:
    return [records.peek_id(e) or "" for e in redis_client.lrange(K.ready, 0, -1)]


def test_four_tickers_on_one_tick_store_one_job_named_after_schedule_and_tick(redis_url, redis_client):
    clock = Clock(T0 - 1)
    tickers = [Ticker(broker(redis_url), {"often": schedule()}, clock, max_payload=1 << 20) for _ in range(4)]
    clock.now = T0 + 0.01
    claims = [c for t in tickers for c in t.run_due()]
    assert [c.claimed for c in claims].count(True) == 1
    assert ready_ids(redis_client) == ["default:sched:often:1800000000"]
    job = records.decode(redis_client.lrange(K.ready, 0, 0)[0], "default")
    assert (job.type, job.payload, job.enqueued_at) == ("t.job", {"n": 1}, round(T0 + 0.01, 3))
    assert [t.run_due() for t in tickers] == [[], [], [], []]   # nothing new is due
    assert last_runs(tickers[0].broker, [schedule()]) == [T0]
    assert redis_client.hlen(K.state) == 1


def test_a_tick_already_claimed_is_refused_even_to_a_ticker_that_never_saw_it(redis_url, redis_client):
    clock = Clock(T0 + 5)
    first = Ticker(broker(redis_url), {"often": schedule(catch_up=3600.0)}, clock, max_payload=1 << 20,
                   started_at=T0 - 1)
    assert [c.claimed for c in first.run_due()] == [True]
    restarted = Ticker(broker(redis_url), {"often": schedule(catch_up=3600.0)}, clock, max_payload=1 << 20)
    assert [c.claimed for c in restarted.run_due()] == [False]
    assert len(ready_ids(redis_client)) == 1


def test_a_missed_tick_is_skipped_on_start_without_catch_up(redis_url, redis_client):
    ticker = Ticker(broker(redis_url), {"often": schedule()}, Clock(T0 + 30), max_payload=1 << 20)
    assert ticker.run_due() == []
    assert ready_ids(redis_client) == []


def test_a_missed_tick_runs_once_on_start_when_younger_than_catch_up_and_never_when_older(redis_url, redis_client):
    young = Ticker(broker(redis_url), {"often": schedule(catch_up=45.0)}, Clock(T0 + 30), max_payload=1 << 20)
    assert [c.claimed for c in young.run_due()] == [True]
    old = Ticker(broker(redis_url), {"nightly": schedule(name="nightly", catch_up=20.0)}, Clock(T0 + 30),
                 max_payload=1 << 20)
    assert old.run_due() == []
    assert ready_ids(redis_client) == ["default:sched:often:1800000000"]


def test_a_ticker_claims_a_tick_it_lived_through_however_late_its_pass(redis_url, redis_client):
    clock = Clock(T0 - 10)
    ticker = Ticker(broker(redis_url), {"often": schedule()}, clock, max_payload=1 << 20)
    clock.now = T0 + 50       # a pass 50 s late: still this ticker's tick
    assert [c.tick for c in ticker.run_due()] == [T0]
    clock.now = T0 + 200      # two ticks passed between passes: the latest only
    assert [c.tick for c in ticker.run_due()] == [T0 + 180]
    assert ready_ids(redis_client) == ["default:sched:often:1800000000", "default:sched:often:1800000180"]


def test_an_earlier_tick_is_refused_once_a_later_one_is_claimed(redis_url, redis_client):
    b = broker(redis_url)
    state = records.encode_state("queued", 0)
    assert b.claim_tick("default", "often", T0 + 60, "default:x2", state, b'{"i":"default:x2","a":0,"t":"t","p":1}')
    assert not b.claim_tick("default", "often", T0, "default:x1", state, b'{"i":"default:x1","a":0,"t":"t","p":1}')
    assert ready_ids(redis_client) == ["default:x2"]


def test_a_tick_whose_job_is_too_large_raises_once_and_stores_nothing(redis_url, redis_client):
    clock = Clock(T0 - 1)
    ticker = Ticker(broker(redis_url), {"often": schedule(payload="x" * 2000)}, clock, max_payload=1024)
    clock.now = T0
    with pytest.raises(PayloadTooLarge):
        ticker.run_due()
    assert ticker.run_due() == []
    assert redis_client.dbsize() == 0
