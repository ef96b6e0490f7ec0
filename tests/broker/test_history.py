"""history.lua adds flushes to a queue-hour's keys atomically, bounded, and they read back as written."""

from __future__ import annotations

from geoq import history
from geoq.broker import keys
from geoq.broker.connection import connect
from geoq.broker.history import HistoryBroker
from geoq.config import default_config
from geoq.history import OTHER, SLOT_BYTES, TYPE_CAP, Tally, decode_counts, decode_hour, hour_blocks

T0 = 1_800_000_000.0   # a whole hour
HOUR = int(T0 // 3600)
K = keys.queue_keys("mail")
WEEK = 7 * 86400.0


def history_broker(redis_url: str) -> HistoryBroker:
    return HistoryBroker(connect(default_config(redis_url).redis))


def flush(hb: HistoryBroker, tally: Tally, keep: float = WEEK) -> list[bool]:
    return hb.add(hour_blocks(tally.take()), keep)


def test_two_flushes_add_up_minute_by_minute_and_type_by_type(redis_url, redis_client):
    hb, t = history_broker(redis_url), Tally()
    for _ in range(3):
        t.ended("mail", "email.send", "succeeded", T0 + 61)
    t.ended("mail", "email.send", "cancelled", T0 + 61, waited=0.25)
    assert flush(hb, t) == [True]
    t.ended("mail", "email.send", "retried", T0 + 62)
    t.ended("mail", "email.bounce", "dead", T0 + 62, waited=0.25)
    flush(hb, t)
    ((raw, types),) = hb.read("mail", [HOUR])
    minutes = decode_hour(raw)
    assert minutes[1].counts == (3, 1, 1, 1) and minutes[1].waits[history.bucket_of(0.25)] == 2
    assert all(m == history.EMPTY for i, m in enumerate(minutes) if i != 1)
    assert {name: decode_counts(v) for name, v in types.items()} == {"email.send": (3, 1, 0, 1),
                                                                      "email.bounce": (0, 0, 1, 0)}
    assert redis_client.strlen(K.history(HOUR)) == 2 * SLOT_BYTES   # slots up to the last written one


def test_both_keys_expire_history_keep_after_the_hour_they_cover(redis_url, redis_client):
    hb, t = history_broker(redis_url), Tally()
    t.ended("mail", "email.send", "succeeded", T0)
    flush(hb, t, keep=600.0)
    for key in (K.history(HOUR), K.history_types(HOUR)):
        assert 600 < redis_client.ttl(key) <= 600 + 3600


def test_types_past_the_cap_of_a_queue_hour_are_counted_under_other_in_redis(redis_url, redis_client):
    hb = history_broker(redis_url)
    for batch in range(3):   # each flush within the worker's own cap; together past Redis's
        t = Tally()
        for i in range(40):
            t.ended("mail", f"type.{batch}.{i}", "succeeded", T0)
        flush(hb, t)
    types = {name: decode_counts(v) for name, v in hb.read("mail", [HOUR])[0][1].items()}
    assert len(types) == TYPE_CAP + 1
    assert types[OTHER] == (120 - TYPE_CAP, 0, 0, 0)
    assert sum(c[0] for c in types.values()) == 120


def test_a_flush_across_an_hour_boundary_reads_back_from_both_hours(redis_url):
    hb, t = history_broker(redis_url), Tally()
    t.ended("mail", "a", "succeeded", T0 - 1)      # minute 59 of the hour before
    t.ended("mail", "a", "dead", T0 + 1)           # minute 0 of this one
    assert flush(hb, t) == [True, True]
    (before, before_types), (now, now_types) = hb.read("mail", [HOUR - 1, HOUR])
    assert decode_hour(before)[59].counts == (1, 0, 0, 0) and decode_hour(now)[0].counts == (0, 0, 1, 0)
    assert decode_counts(before_types["a"]) == (1, 0, 0, 0) and decode_counts(now_types["a"]) == (0, 0, 1, 0)
    assert hb.read("mail", [HOUR + 1]) == [(None, {})]


def test_counts_saturate_at_the_uint32_maximum_instead_of_wrapping(redis_url):
    hb = history_broker(redis_url)
    big = history.MinuteTally()
    big.counts[0] = 2 ** 32 - 2
    big.types["a"] = [2 ** 32 - 2, 0, 0, 0]
    for _ in range(2):
        hb.add(hour_blocks({("mail", HOUR * 60): big}), WEEK)
    raw, types = hb.read("mail", [HOUR])[0]
    assert decode_hour(raw)[0].counts[0] == 2 ** 32 - 1 and decode_counts(types["a"])[0] == 2 ** 32 - 1
