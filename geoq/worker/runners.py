"""The greenlets that run jobs: long-lived, at most `size` jobs handed over at once.

A greenlet spawned per job (gevent.pool.Pool) costs a Greenlet built, started, linked
into the pool's group and torn down again for every job: measured at about 15 us of a
no-op job's CPU here, more than the job's decode, run and settlement together. Runners
instead take jobs from one bounded queue and keep running: a job handed to a waiting
runner costs a queue put and, at most, one switch.

Runners are started as work arrives (never more than `size`), and a runner that finishes
a job while `idle_kept` others already wait for work ends, so a burst at a high
concurrency does not leave thousands of idle greenlets (and their saved stacks) behind.

The interface is the part of gevent's Pool the worker uses (len, size, free_count,
wait_available, spawn, join, kill), with the same meaning: a job counts from the moment it
is handed over until its run returns, and kill() interrupts running jobs with GreenletExit
(the executor reports them interrupted) while jobs handed over but not started never run.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Generic, TypeVar

import gevent
from gevent.event import Event
from gevent.queue import Queue

log = logging.getLogger(__name__)

T = TypeVar("T")


class Runners(Generic[T]):
    """Runs `run(item)` for each item spawned, in at most `size` long-lived greenlets."""

    def __init__(self, size: int, run: Callable[[T], Any], *, idle_kept: int) -> None:
        self.size = size
        self._run = run
        self._idle_kept = max(1, idle_kept)
        self._work: Queue = Queue(size)   # bounded: at most size jobs are ever handed over at once
        self._busy = 0                    # handed over and not yet finished, queued or running
        self._waiting = 0                 # runners blocked on the queue, waiting for work
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
        if self._waiting <= self._work.qsize() and len(self._greenlets) < self.size:
            self._greenlets.add(gevent.spawn(self._loop))
        self._work.put_nowait(item)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every job handed over has finished; False on timeout."""
        return bool(self._empty.wait(timeout))

    def kill(self, timeout: float | None = None) -> None:
        """Interrupt the running jobs and end every runner; jobs not yet started are dropped
        (the worker still holds their envelopes and hands them back)."""
        self._killed = True
        gevent.killall(list(self._greenlets), timeout=timeout)
        while not self._work.empty():
            self._work.get_nowait()
            self._finished()

    def _loop(self) -> None:
        try:
            while True:
                self._waiting += 1
                try:
                    item = self._work.get()
                finally:
                    self._waiting -= 1
                try:
                    self._run(item)
                except Exception:  # the executor reports a job's own failures; this is geoq's bug
                    log.exception("a job's run raised past the executor; the runner goes on")
                finally:
                    self._finished()
                if self._waiting >= self._idle_kept and self._work.empty():
                    return  # enough runners wait already: this one ends rather than idle
        finally:
            self._greenlets.discard(gevent.getcurrent())

    def _finished(self) -> None:
        self._busy -= 1
        self._room.set()
        if self._busy == 0:
            self._empty.set()
