"""Run timeouts with one timer per distinct timeout, not one gevent.Timeout per run.

A gevent.Timeout per run cost about 2 us of every job's CPU (a Python object, and a libev
timer made, started, stopped and closed), a twentieth of a no-op job. A worker's runs share a
handful of timeouts (its routes' and a few jobs' own), and runs that share one expire in the
order they started. So each distinct timeout keeps a lane: its runs in start order, and one
timer armed for the oldest. Starting a run appends to its lane; ending it marks it ended.

When the timer fires, it throws a fresh gevent.Timeout into each run past its deadline, as
gevent.Timeout's own timer does (from the hub, into the suspended greenlet), drops the ended
runs before the first live one, and is armed again for that one. The Timeout a run receives
is the one its Deadline holds, so the caller can tell its own expiry from another timer's.

Bounded: ended runs stay in a lane only while a longer run ahead of them is live, and a lane
that reaches twice its live runs (at least 128) is compacted, so it never holds more than twice
the runs under way plus 128; a lane whose runs all ended is removed at its next firing, or by
the sweep a new lane starts once the lanes have doubled (jobs with timeouts of their own).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import gevent

SLACK = 0.0005  # a timer may fire this much before a deadline (libev rounds): it counts as due
COMPACT_AT = 128  # a lane's length that first has it counted for compaction
_FIRING = object()  # a lane's timer while it fires: a run started meanwhile arms nothing


class Deadline:
    """One run's deadline: `error` is the Timeout thrown into it, once it expired."""

    __slots__ = ("at", "glet", "live", "error")

    def __init__(self, at: float, glet: Any) -> None:
        self.at = at
        self.glet = glet
        self.live = True
        self.error: gevent.Timeout | None = None


class Deadlines:
    """The deadlines of the runs under way in this process's hub."""

    def __init__(self) -> None:
        self._lanes: dict[float, _Lane] = {}
        self._sweep_at = COMPACT_AT

    def start(self, seconds: float) -> Deadline:
        """The current greenlet's run expires `seconds` from now; end() it when the run ends."""
        lane = self._lanes.get(seconds)
        if lane is None:
            if len(self._lanes) >= self._sweep_at:
                self._sweep()
            lane = self._lanes[seconds] = _Lane(seconds, self._lanes)
        return lane.add(gevent.getcurrent())

    def _sweep(self) -> None:
        """Remove the lanes whose runs all ended (jobs with timeouts of their own can make many);
        counted again only once the lanes have doubled."""
        for seconds, lane in list(self._lanes.items()):
            if lane.idle():
                del self._lanes[seconds]
        self._sweep_at = max(COMPACT_AT, 2 * len(self._lanes))

    @staticmethod
    def end(deadline: Deadline) -> None:
        """The run ended (or expired): nothing is thrown into it from now on."""
        if deadline.live:
            deadline.live = False
            deadline.glet = None


class _Lane:
    """The runs of one timeout, in start order, and the timer of the oldest."""

    def __init__(self, seconds: float, lanes: dict[float, _Lane]) -> None:
        self.seconds = seconds
        self.runs: deque[Deadline] = deque()
        self.lanes = lanes
        self.timer: Any = None
        self.compact_at = COMPACT_AT

    def add(self, glet: Any) -> Deadline:
        deadline = Deadline(time.monotonic() + self.seconds, glet)
        runs = self.runs
        while runs and not runs[0].live:  # runs mostly end in start order: drop them as they do
            runs.popleft()
        if len(runs) >= self.compact_at:
            self._compact()
        self.runs.append(deadline)
        if self.timer is None:
            self._arm(self.seconds)
        return deadline

    def idle(self) -> bool:
        """True, with its timer stopped, when every run of the lane ended (and it is not firing)."""
        if any(d.live for d in self.runs) or self.timer is _FIRING:
            return False
        if self.timer is not None:
            self.timer.close()
            self.timer = None
        return True

    def _compact(self) -> None:
        """Drop the ended runs kept behind a long live one. Counted again only once the lane
        has doubled, so each run is looked at a bounded number of times."""
        self.runs = deque(d for d in self.runs if d.live)
        self.compact_at = max(COMPACT_AT, 2 * len(self.runs))

    def _arm(self, after: float) -> None:
        self.timer = gevent.get_hub().loop.timer(max(0.0, after), ref=False)
        self.timer.start(self._fire, update=True)

    def _fire(self) -> None:
        self.timer.close()
        self.timer = _FIRING
        runs, now = self.runs, time.monotonic()
        while runs and (not runs[0].live or runs[0].at <= now + SLACK):
            deadline = runs.popleft()
            if deadline.live:
                glet = deadline.glet
                deadline.error = gevent.Timeout(self.seconds)  # never started: it is only thrown
                Deadlines.end(deadline)
                glet.throw(deadline.error)   # runs the greenlet until it blocks again
                now = time.monotonic()
                runs = self.runs   # compacted by a run the throw started
        self.timer = None
        if runs:
            self._arm(runs[0].at - now)
        elif self.lanes.get(self.seconds) is self:
            del self.lanes[self.seconds]
