"""The history tally, its wait buckets and quantiles, and the stored layout, without Redis."""

from __future__ import annotations

import random
import struct

import pytest

from geoq import history
from geoq.history import (BUCKETS, COUNTS, OTHER, SLOT_BYTES, SLOTS, TYPE_CAP, MinuteTally, Tally, bucket_bounds,
                          bucket_of, decode_counts, decode_hour, encode_counts, encode_slot, hour_blocks, quantile)

T0 = 1_800_000_000.0   # a whole hour: minute 0 of hour 500000


def test_a_wait_falls_in_the_bucket_whose_bounds_hold_it():
    for seconds in (0.0, 0.0004, 0.001, 0.0015, 0.02, 1.0, 3.7, 59.9, 3600.0, 86400.0):
        low, high = bucket_bounds(bucket_of(seconds))
        assert low <= seconds < high or bucket_of(seconds) == BUCKETS - 1, seconds


def test_buckets_grow_by_a_factor_of_root_two_up_to_six_days_then_one_open_bucket():
    assert bucket_of(0.0009) == 0 and bucket_of(0.001) == 1
    low, high = bucket_bounds(10)
    assert high / low == pytest.approx(2 ** 0.5)
    assert bucket_bounds(BUCKETS - 1)[0] == pytest.approx(2 ** 29 / 1000)
    assert bucket_of(7 * 86400.0) == bucket_of(1e9) == BUCKETS - 1


def test_quantiles_of_known_waits_are_within_a_bucket_of_the_truth():
    rng = random.Random(7)
    waits = sorted(rng.lognormvariate(0, 1.5) for _ in range(20000))
    hist = [0] * BUCKETS
    for w in waits:
        hist[bucket_of(w)] += 1
    for q in (0.5, 0.95, 0.99):
        true = waits[int(q * len(waits)) - 1]
        assert quantile(hist, q) == pytest.approx(true, rel=0.2), q


def test_an_empty_histogram_has_no_quantile_and_one_wait_is_its_own_every_quantile():
    assert quantile([0] * BUCKETS, 0.5) is None
    hist = [0] * BUCKETS
    hist[bucket_of(2.0)] = 1
    low, high = bucket_bounds(bucket_of(2.0))
    assert all(low <= quantile(hist, q) <= high for q in (0.5, 0.95, 0.99))  # type: ignore[operator]


def test_the_tally_counts_each_outcome_by_queue_minute_and_type():
    t = Tally()
    t.ended("q", "a", "succeeded", T0 + 1, waited=0.5)
    t.ended("q", "a", "retried", T0 + 59)
    t.ended("q", "b", "dead", T0 + 60)
    t.ended("r", "a", "cancelled", T0)
    t.ended("q", "a", "interrupted", T0)   # not an outcome of the job: not counted
    taken = t.take()
    assert set(taken) == {("q", int(T0 // 60)), ("q", int(T0 // 60) + 1), ("r", int(T0 // 60))}
    first = taken[("q", int(T0 // 60))]
    assert first.counts == [1, 1, 0, 0] and first.types == {"a": [1, 1, 0, 0]}
    assert first.waits[bucket_of(0.5)] == 1 and sum(first.waits) == 1
    assert t.take() == {}


def test_a_run_ending_in_an_earlier_minute_still_counts_there_and_the_current_minute_stays():
    t = Tally()
    t.ended("q", "a", "succeeded", T0 + 60)
    t.ended("q", "a", "succeeded", T0 + 59.9)   # a run reported late, ended the minute before
    t.ended("q", "a", "dead", T0 + 61)
    taken = t.take()
    assert taken[("q", int(T0 // 60))].counts == [1, 0, 0, 0]
    assert taken[("q", int(T0 // 60) + 1)].counts == [1, 0, 1, 0]


def test_types_past_the_cap_and_overlong_names_are_counted_under_other():
    m = MinuteTally()
    for i in range(TYPE_CAP + 30):
        m.count(f"t{i}", 0)
    m.count("x" * (history.MAX_TYPE_NAME + 1), 2)
    assert len(m.types) == TYPE_CAP + 1
    assert m.types[OTHER] == [30, 0, 1, 0]
    assert m.counts == [TYPE_CAP + 30, 0, 1, 0]


def test_counts_given_back_after_a_failed_flush_merge_with_newer_ones():
    t = Tally()
    t.ended("q", "a", "succeeded", T0)
    taken = t.take()
    t.ended("q", "a", "succeeded", T0 + 5)
    t.give_back(taken)
    (tally,) = t.take().values()
    assert tally.counts[0] == 2 and tally.types == {"a": [2, 0, 0, 0]}


def test_the_tally_holds_a_bounded_number_of_minutes_dropping_the_oldest():
    t = Tally(max_pending=3)
    for m in range(5):
        t.ended("q", "a", "succeeded", T0 + 60 * m)
    assert sorted(k[1] for k in t.pending) == [int(T0 // 60) + m for m in (2, 3, 4)]
    assert t.dropped == 2
    t.give_back({("q", int(T0 // 60) - 9): MinuteTally()})
    assert len(t.pending) == 3 and t.dropped == 3


def test_a_flush_is_grouped_by_queue_hour_with_types_summed_over_the_hour():
    t = Tally()
    t.ended("q", "a", "succeeded", T0 + 3599)       # minute 59 of the first hour
    t.ended("q", "a", "dead", T0 + 3600)            # minute 0 of the next
    t.ended("q", "a", "succeeded", T0)
    blocks = hour_blocks(t.take())
    assert [(b.queue, b.hour, sorted(b.slots)) for b in blocks] == [("q", int(T0 // 3600), [0, 59]),
                                                                     ("q", int(T0 // 3600) + 1, [0])]
    assert decode_counts(blocks[0].types["a"]) == (2, 0, 0, 0)
    assert decode_counts(blocks[1].types["a"]) == (0, 0, 1, 0)


def test_an_hour_string_decodes_slot_by_slot_with_absent_slots_as_zeros():
    waits = [0] * BUCKETS
    waits[5] = 7
    raw = b"\0" * (3 * SLOT_BYTES) + encode_slot([1, 2, 3, 4], waits)
    minutes = decode_hour(raw)
    assert len(minutes) == SLOTS
    assert minutes[3].counts == (1, 2, 3, 4) and minutes[3].waits[5] == 7
    assert minutes[0] == minutes[4] == minutes[59] == history.EMPTY
    assert decode_hour(None) == [history.EMPTY] * SLOTS


def test_encoded_values_are_little_endian_uint32_capped_at_their_maximum():
    assert len(encode_slot([0] * len(COUNTS), [0] * BUCKETS)) == SLOT_BYTES == 256
    assert encode_counts([1, 2 ** 40, 0, 0]) == struct.pack("<4I", 1, 2 ** 32 - 1, 0, 0)
    assert decode_counts(b"short") == (0, 0, 0, 0)
