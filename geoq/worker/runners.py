"""The greenlets that run jobs: long-lived, at most `size` jobs handed over at once.

A greenlet spawned per job (gevent.pool.Pool) costs a Greenlet built, started, linked
into the pool's group and torn down again for every job: measured at about 15 us of a
no-op job's CPU here, more than the job's decode, run and settlement together. Runners
instead take jobs from one bounded queue and keep running: a job handed to a waiting
runner costs a queue put and, at most, one switch.

Runners are started as work arrives (never more than `size`), and a runner that finishes
a job while `idle_kept` others already wait for work ends, so a burst at a high
concurrency does not leave thousands of idle greenlets (and their saved stacks) behind.

Jobs wait in a deque and idle runners on Waiters, not in a gevent Queue: a Queue.get that
had to wait ends by removing its waiter from the queue's list of getters, where it no longer
is, so each such get scanned every other waiting runner (measured: 6% of a worker's
instructions at concurrency 1,000). Here a runner is woken by popping its Waiter, and a
waiter is searched for only when its runner is killed while idle.

The interface is the part of gevent's Pool the worker uses (len, size, free_count,
wait_available, spawn, join, kill), with the same meaning: a job counts from the moment it
is handed over until its run returns, and kill() interrupts running jobs with GreenletExit
(the executor reports them interrupted) while jobs handed over but not started never run.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable, Generic, TypeVar

import gevent
from gevent.event import Event
from gevent.hub import Waiter

log = logging.getLogger(__name__)

T = TypeVar("T")


class Runners(Generic[T]):
    """Runs `run(item)` for each item spawned, in at most `size` long-lived greenlets."""

    def __init__(self, size: int, run: Callable[[T], Any], *, idle_kept: int) -> None:
        self.size = size
        self._run = run
        self._idle_kept = max(1, idle_kept)
        self._work: deque[T] = deque()    # handed over, not yet taken: at most size (spawn's contract)
        self._idle: deque[Waiter] = deque()  # runners waiting for work, woken in order
        self._waking: Any = None          # the hub callback that wakes idle runners, when one is due
        self._busy = 0                    # handed over and not yet finished, queued or running
        self._greenlets: set[gevent.Greenlet] = set()
        self._room, self._empty = Event(), Event()
        self._room.set()
        self._empty.set()
        self._killed = False

    def __len__(self) -> int:
        return self._busy

    def free_count(self) -> int:
        return self.size - self._busy

    def wait_available(self, timeout: float | None = None) -> None:
        """Block until a job can be handed over without exceeding `size`."""
        self._room.wait(timeout)

    def spawn(self, item: T) -> None:
        """Hand one job over; it must fit (the caller took free_count() first): never blocks."""
        if self._killed:
            raise RuntimeError("runners were killed: no more jobs")
        self._busy += 1
        self._empty.clear()
        if self._busy >= self.size:
            self._room.clear()
        # One more runner when every waiting one already has a job coming to it.
        if len(self._idle) <= len(self._work) and len(self._greenlets) < self.size:
            self._greenlets.add(gevent.spawn(self._loop))
        self._work.append(item)
        if self._idle and self._waking is None:
            self._waking = gevent.get_hub().loop.run_callback(self._wake)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every job handed over has finished; False on timeout."""
        return bool(self._empty.wait(timeout))

    def kill(self, timeout: float | None = None) -> None:
        """Interrupt the running jobs and end every runner; jobs not yet started are dropped
        (the worker still holds their envelopes and hands them back)."""
        self._killed = True
        gevent.killall(list(self._greenlets), timeout=timeout)
        while self._work:
            self._work.popleft()
            self._finished()

    def _wake(self) -> None:
        """In the hub: wake idle runners while jobs wait; each takes one as it wakes."""
        self._waking = None
        while self._idle and self._work:
            self._idle.popleft().switch(None)   # runs that runner until it blocks again

    def _take(self) -> T:
        while not self._work:
            waiter = Waiter()
            self._idle.append(waiter)
            try:
                waiter.get()
            except BaseException:   # killed while idle: its waiter must not be woken
                if waiter in self._idle:
                    self._idle.remove(waiter)
                raise
        return self._work.popleft()

    def _loop(self) -> None:
        try:
            while True:
                item = self._take()
                try:
                    self._run(item)
                except Exception:  # the executor reports a job's own failures; this is geoq's bug
                    log.exception("a job's run raised past the executor; the runner goes on")
                finally:
                    self._finished()
                if len(self._idle) >= self._idle_kept and not self._work:
                    return  # enough runners wait already: this one ends rather than idle
        finally:
            self._greenlets.discard(gevent.getcurrent())

    def _finished(self) -> None:
        self._busy -= 1
        self._room.set()
        if self._busy == 0:
            self._empty.set()
