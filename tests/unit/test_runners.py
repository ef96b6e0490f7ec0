"""Runners: the worker's long-lived job greenlets keep gevent Pool's promises at a fraction of its cost."""

from __future__ import annotations

import logging

import gevent
import pytest
from gevent.event import Event

from geoq.worker.runners import Runners


class Jobs:
    """Runs that block until released, recording what started, ended and was interrupted."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.ended: list[int] = []
        self.interrupted: list[int] = []
        self.release = Event()
        self.peak = 0

    def run(self, n: int) -> None:
        self.started.append(n)
        self.peak = max(self.peak, len(self.started) - len(self.ended) - len(self.interrupted))
        try:
            self.release.wait()
        except gevent.GreenletExit:
            self.interrupted.append(n)
            raise
        self.ended.append(n)


def test_every_job_runs_once_and_no_more_than_size_at_once() -> None:
    jobs = Jobs()
    runners = Runners(5, jobs.run, idle_kept=2)
    handed = 0
    releaser = gevent.spawn_later(0.05, jobs.release.set)
    while handed < 40:
        runners.wait_available()
        for _ in range(runners.free_count()):
            runners.spawn(handed)
            handed += 1
        assert len(runners) <= 5
    assert runners.join(timeout=5)
    releaser.join()
    assert sorted(jobs.ended) == list(range(40)) and jobs.peak == 5
    assert len(runners) == 0 and runners.free_count() == 5


def test_a_full_set_has_no_room_until_a_job_ends() -> None:
    jobs = Jobs()
    runners = Runners(2, jobs.run, idle_kept=2)
    runners.spawn(1)
    runners.spawn(2)
    assert runners.free_count() == 0
    assert gevent.with_timeout(0.05, runners.wait_available, timeout_value="full") == "full"
    jobs.release.set()
    runners.wait_available(timeout=5)
    assert runners.free_count() >= 1


def test_runners_beyond_the_idle_ones_kept_end_after_a_burst() -> None:
    jobs = Jobs()
    runners = Runners(50, jobs.run, idle_kept=3)
    for n in range(50):
        runners.spawn(n)
    gevent.sleep(0)
    assert len(runners._greenlets) == 50
    jobs.release.set()
    assert runners.join(timeout=5)
    gevent.sleep(0)
    assert len(runners._greenlets) == 3


def test_kill_interrupts_running_jobs_and_drops_those_not_started() -> None:
    jobs = Jobs()
    runners = Runners(3, jobs.run, idle_kept=3)
    for n in range(3):
        runners.spawn(n)
    gevent.sleep(0.01)  # all three are running
    runners.kill(timeout=5)
    assert sorted(jobs.interrupted) == [0, 1, 2] and jobs.ended == []
    assert len(runners) == 0 and runners.join(timeout=0)
    with pytest.raises(RuntimeError, match="killed"):
        runners.spawn(9)


def test_jobs_handed_over_but_not_started_never_run_after_kill() -> None:
    jobs = Jobs()
    runners = Runners(3, jobs.run, idle_kept=3)
    for n in range(3):
        runners.spawn(n)
    runners.kill(timeout=5)  # before any runner had its turn
    gevent.sleep(0.01)
    assert jobs.started == [] and len(runners) == 0


def test_a_run_that_raises_is_logged_and_its_runner_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    def run(n: int) -> None:
        if n == 0:
            raise RuntimeError("a bug")
        done.append(n)

    runners = Runners(1, run, idle_kept=1)
    with caplog.at_level(logging.ERROR, logger="geoq.worker.runners"):
        runners.spawn(0)
        assert runners.join(timeout=5)
        runners.spawn(1)
        assert runners.join(timeout=5)
    assert done == [1] and len(runners._greenlets) == 1
    assert "raised past the executor" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_idle_runners_each_take_one_of_a_batch_handed_over_at_once() -> None:
    jobs = Jobs()
    runners = Runners(20, jobs.run, idle_kept=20)
    for n in range(20):            # twenty runners start, then all wait idle
        runners.spawn(n)
    jobs.release.set()
    assert runners.join(timeout=5)
    gevent.sleep(0)
    assert len(runners._greenlets) == 20 and len(runners._idle) == 20
    jobs.release.clear()
    for n in range(20, 35):        # fifteen at once: fifteen idle runners wake, none is spawned
        runners.spawn(n)
    gevent.sleep(0.01)
    assert sorted(jobs.started[20:]) == list(range(20, 35)) and len(runners._greenlets) == 20
    assert len(runners._idle) == 5
    jobs.release.set()
    assert runners.join(timeout=5) and sorted(jobs.ended) == list(range(35))


def test_an_idle_runner_killed_is_never_woken_and_the_rest_still_run_jobs() -> None:
    jobs = Jobs()
    jobs.release.set()
    runners = Runners(4, jobs.run, idle_kept=4)
    for n in range(4):
        runners.spawn(n)
    assert runners.join(timeout=5)
    gevent.sleep(0)
    victim = next(iter(runners._greenlets))
    victim.kill()
    assert len(runners._idle) == 3 and victim not in runners._greenlets
    for n in range(4, 7):
        runners.spawn(n)
    assert runners.join(timeout=5) and sorted(jobs.ended) == list(range(7))
