"""Deadlines: one timer per distinct timeout expires runs as a gevent.Timeout per run did."""

from __future__ import annotations

import threading
import time
from typing import Callable

import gevent
import pytest

from geoq.worker.deadlines import COMPACT_AT, Deadlines


def in_own_hub(test: Callable[[], None]) -> Callable[[], None]:
    """Run the test in a thread of its own, so on a hub of its own: what other tests of this
    process left in the main thread's hub (its loop, its error stream) cannot touch it, and an
    error inside it is the test's failure."""
    def run() -> None:
        failure: list[BaseException] = []

        def body() -> None:
            try:
                test()
            except BaseException as e:
                failure.append(e)
            finally:
                gevent.get_hub().destroy(destroy_loop=True)

        thread = threading.Thread(target=body)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the test's hub did not finish within 30 s"
        if failure:
            raise failure[0]
    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def timed_run(deadlines: Deadlines, seconds: float, work: float, log: dict) -> None:
    """A run of `work` seconds under a deadline of `seconds`: logs ("done" | "expired", when)."""
    started = time.monotonic()
    deadline = deadlines.start(seconds)
    try:
        gevent.sleep(work)
        log[id(deadline)] = ("done", time.monotonic() - started)
    except gevent.Timeout as t:
        assert t is deadline.error, "the Timeout thrown is the one the run's deadline holds"
        log[id(deadline)] = ("expired", time.monotonic() - started)
    finally:
        deadlines.end(deadline)


@in_own_hub
def test_runs_past_their_deadline_expire_on_time_and_the_others_finish() -> None:
    deadlines, log = Deadlines(), {}
    runs = [gevent.spawn(timed_run, deadlines, 0.3, work, log) for work in (0.01, 5.0, 0.02, 6.0)]
    runs += [gevent.spawn(timed_run, deadlines, 0.6, work, log) for work in (7.0, 0.01)]
    gevent.joinall(runs, timeout=10)
    assert all(run.successful() for run in runs), [run.exception for run in runs]
    outcomes = sorted(log.values())
    assert [o[0] for o in outcomes] == ["done"] * 3 + ["expired"] * 3
    expired = sorted(at for what, at in outcomes if what == "expired")
    # never early; late only by what a busy machine delays a timer
    assert 0.299 <= expired[0] <= expired[1] < 0.55, expired   # the two 0.3 s runs
    assert 0.599 <= expired[2] < 0.85, expired                 # the 0.6 s one


@in_own_hub
def test_a_run_that_ended_is_never_thrown_into_even_when_its_runner_goes_on() -> None:
    deadlines, seen = Deadlines(), []

    def runner() -> None:
        first = deadlines.start(0.05)
        deadlines.end(first)   # ended at once: the lane's timer still fires at its deadline
        try:
            gevent.sleep(0.15)  # the same greenlet, now outside any run
            seen.append("untouched")
        except gevent.Timeout:
            seen.append("thrown")

    gevent.spawn(runner).join(timeout=5)
    assert seen == ["untouched"]


@in_own_hub
def test_an_expiry_that_starts_another_run_in_the_same_lane_times_it_too() -> None:
    deadlines, log = Deadlines(), {}

    def chain() -> None:
        for _ in range(3):
            timed_run(deadlines, 0.05, 1.0, log)   # each expires; the next starts from the expiry

    started = time.monotonic()
    gevent.spawn(chain).join(timeout=5)
    assert [what for what, _ in log.values()] == ["expired"] * 3
    assert 0.15 <= time.monotonic() - started < 0.9


@in_own_hub
def test_ended_runs_behind_a_long_one_are_compacted_and_idle_lanes_swept() -> None:
    deadlines, log = Deadlines(), {}
    long = gevent.spawn(timed_run, deadlines, 30.0, 0.2, log)
    gevent.sleep(0)
    for _ in range(20 * COMPACT_AT):   # short runs end behind the long one, in its lane
        deadlines.end(deadlines.start(30.0))
    lane = deadlines._lanes[30.0]
    assert len(lane.runs) <= 2 * COMPACT_AT
    for n in range(4 * COMPACT_AT):    # one lane per distinct timeout, each idle once its run ended
        deadlines.end(deadlines.start(40.0 + n))
    assert len(deadlines._lanes) <= 2 * COMPACT_AT + 1
    long.join(timeout=5)
    assert list(log.values()) == [("done", pytest.approx(0.2, abs=0.1))]
