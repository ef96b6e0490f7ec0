"""The recorder keeps its counts while Redis is away or refuses them, and writes them once it can."""

from __future__ import annotations

import pytest

from geoq.broker.connection import connect
from geoq.broker.history import HistoryBroker
from geoq.config import default_config
from geoq.errors import BrokerError
from geoq.history import bucket_of, decode_counts, decode_hour
from geoq.job import Job
from geoq.outcome import Outcome
from geoq.worker.recorder import Recorder
from tests.support.redis_server import RedisServer

T0 = 1_800_000_000.0


def job(job_type: str = "t.a") -> Job:
    return Job(id="default:1", type=job_type, payload=None, queue="default", enqueued_at=T0 - 2)


def recorder_at(now: float) -> Recorder:
    return Recorder(keep=3600.0, flush_every=5.0, clock=lambda: now)   # the worker's clock, here fixed


def stored(hb: HistoryBroker) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    ((raw, types),) = hb.read("default", [int(T0 // 3600)])
    return decode_hour(raw)[0].counts, {name: decode_counts(v) for name, v in types.items()}


def test_counts_made_while_redis_is_down_are_written_once_it_is_back():
    with RedisServer() as server:
        hb = HistoryBroker(connect(default_config(server.url).redis))
        r = recorder_at(T0 + 1)
        r.after_run(job(), Outcome("succeeded", duration=1.0))
        server.stop()
        with pytest.raises(BrokerError):
            r.flush(hb)
        r.after_run(job(), Outcome("retry", error="RuntimeError: x", duration=0.5))
        r.buried("default", None)   # the reaper's burial of a job of unknown type
        server.restart()
        assert r.flush(hb) is True
        assert stored(hb) == ((1, 1, 1, 0), {"t.a": (1, 1, 0, 0), "_unknown": (0, 0, 1, 0)})
        assert r.flush(hb) is True and r.tally.pending == {}
        assert stored(hb)[0] == (1, 1, 1, 0)   # nothing written twice


def test_counts_redis_refuses_under_maxmemory_are_kept_for_the_next_flush():
    with RedisServer() as server:
        admin = server.client()
        hb = HistoryBroker(connect(default_config(server.url).redis))
        r = recorder_at(T0 + 1)
        r.after_run(job(), Outcome("dead", error="Fail: no", duration=0.1, reason="fail"))
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        assert r.flush(hb) is False
        assert len(r.tally.pending) == 1 and admin.exists("geoq:{default}:history:500000") == 0
        admin.config_set("maxmemory", 0)
        assert r.flush(hb) is True
        assert stored(hb) == ((0, 0, 1, 0), {"t.a": (0, 0, 1, 0)})


def test_the_wait_of_a_run_is_its_start_less_its_ready_time_and_a_burial_has_none():
    r = recorder_at(T0 + 10)
    r.after_run(job(), Outcome("succeeded", duration=4.0))      # started at T0 + 6, ready at T0 - 2: 8 s
    r.after_run(job(), Outcome("dead", error="unknown type", reason="unknown_type"))
    r.after_run(job(), Outcome("interrupted", duration=1.0))    # not an outcome: not counted at all
    (tally,) = r.tally.pending.values()
    assert tally.counts == [1, 0, 1, 0] and sum(tally.waits) == 1
    assert tally.waits[bucket_of(8.0)] == 1


def test_the_loop_flushes_every_flush_every_and_just_after_each_minute_ends():
    assert recorder_at(T0 + 10).pause() == 5.0
    assert recorder_at(T0 + 58).pause() == pytest.approx(2.2)
