"""The parent of `geoq-worker CONFIG --processes N`: keeps N worker processes running and stops them together.

It runs no jobs, holds no Redis connection and serves no metrics. Each child is
bin/geoq-worker started afresh (the `command` given), never a fork of this
process: forking a monkeypatched process that runs native threads copies locks
held by threads that do not exist in the copy. The children run in sessions of
their own, so a terminal's Ctrl-C or a signal to the process group reaches this
parent only, and each child sees every stop signal exactly once, forwarded as
SIGTERM (the worker treats both alike, and a child still importing would turn a
SIGINT into a KeyboardInterrupt traceback).

    exit 0   every child stopped cleanly after SIGTERM / SIGINT
    exit 1   a child did not stop cleanly (killed, or crashed while stopping)
    exit 2   a child exited 2 (bad config or credentials): the others were stopped
    exit 3   every child stopped, but one or more exited 3: Redis did not take everything by
             the stop's deadline, and jobs were left in their processing lists for the reaper

When children end differently the most serious status wins: 2, then 1, then 3.

A child that dies for any other reason is started again after a backoff that
doubles while it keeps dying young. This module uses only the standard library
(patched or not) and the pure geoq.exits, so the loop is plain: signal handlers
record, the loop acts.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from geoq.exits import EXIT_CONFIG, EXIT_LEFT, EXIT_OK, EXIT_UNCLEAN  # a child's 0, 2 and 3 mean what main's do

log = logging.getLogger(__name__)

SEVERITY = (EXIT_OK, EXIT_LEFT, EXIT_UNCLEAN, EXIT_CONFIG)  # least serious first
FIRST_DELAY = 0.5      # seconds before restarting a child that died
MAX_DELAY = 30.0       # the doubling stops here
STABLE_AFTER = 30.0    # a child that lived this long starts the doubling over
TICK = 0.2             # seconds between checks on the children; a signal wakes the loop at once
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Exits that are clean during a stop: a child told to stop before it had set up
# its handler dies of the signal itself, holding no jobs.
CLEAN_STOPS = frozenset({0, -signal.SIGTERM})

Command = Callable[[int], Sequence[str]]


@dataclass(slots=True)
class Child:
    """One slot of the N: its current process (None while it waits to be restarted)."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    young_deaths: int = 0       # deaths in a row, each before STABLE_AFTER
    restart_at: float | None = None


class Supervisor:
    """run() starts `processes` children (`command(index)` is each one's argv) and returns the exit status."""

    def __init__(self, command: Command, processes: int) -> None:
        self.command = command
        self.children = [Child(i) for i in range(processes)]
        self.received: deque[int] = deque()     # appended by the signal handler only
        self.wake = threading.Event()
        self.stopping = False
        self.status = EXIT_OK

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for child in self.children:
                self._start(child)
            while any(c.proc is not None for c in self.children) or not self.stopping:
                self.wake.wait(TICK)
                self.wake.clear()
                self._forward_signals()
                self._collect_exits()
                if not self.stopping:
                    self._restart_due()
            log.info("all %d worker processes have stopped", len(self.children))
            return self.status
        finally:
            self._terminate_leftovers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        self.wake.set()

    # -- stopping ----------------------------------------------------------------------------

    def _forward_signals(self) -> None:
        while self.received:
            signum = self.received.popleft()
            name = signal.Signals(signum).name
            if not self.stopping:
                log.info("%s: stopping %d worker processes gracefully", name, self._alive())
                self.stopping = True
            else:
                log.warning("%s while stopping: worker processes interrupt their running jobs and hand them back",
                            name)
            self._send(signal.SIGTERM)

    def _stop_all(self, why: str) -> None:
        log.error("%s: stopping the other worker processes", why)
        self.stopping = True
        self._send(signal.SIGTERM)

    def _send(self, signum: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    def _terminate_leftovers(self) -> None:
        """Only reached with live children if this loop itself failed: they stop gracefully, unwatched."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.terminate()

    # -- children ----------------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.proc = subprocess.Popen(list(self.command(child.index)), start_new_session=True)
        except OSError as e:
            child.proc = None
            log.error("worker process %d could not be started: %s; trying again in %.1fs",
                      child.index, e, self._schedule_restart(child))
            return
        log.info("worker process %d started (pid %d)", child.index, child.proc.pid)

    def _collect_exits(self) -> None:
        for child in self.children:
            if child.proc is None or (code := child.proc.poll()) is None:
                continue
            pid, child.proc = child.proc.pid, None
            if self.stopping:
                self._exited_while_stopping(child, pid, code)
            elif code == EXIT_CONFIG:
                self._worsen(EXIT_CONFIG)
                self._stop_all(f"worker process {child.index} (pid {pid}) exited with status 2 "
                               "(bad config or credentials, see its line above)")
            else:
                delay = self._schedule_restart(child)
                log.error("worker process %d (pid %d) %s; restarting it in %.1fs",
                          child.index, pid, describe(code), delay)

    def _exited_while_stopping(self, child: Child, pid: int, code: int) -> None:
        if code in CLEAN_STOPS:
            log.info("worker process %d (pid %d) has stopped", child.index, pid)
            return
        if code == EXIT_LEFT:
            log.error("worker process %d (pid %d) has stopped, leaving jobs for the reaper (exit status 3)",
                      child.index, pid)
            self._worsen(EXIT_LEFT)
            return
        log.error("worker process %d (pid %d) %s while stopping", child.index, pid, describe(code))
        self._worsen(EXIT_UNCLEAN)

    def _worsen(self, status: int) -> None:
        """Keep the most serious exit status seen so far."""
        self.status = max(self.status, status, key=SEVERITY.index)

    def _schedule_restart(self, child: Child) -> float:
        """Set when the child starts again; the delay."""
        if time.monotonic() - child.started_at >= STABLE_AFTER:
            child.young_deaths = 0
        delay = min(MAX_DELAY, FIRST_DELAY * 2.0 ** child.young_deaths)
        child.young_deaths += 1
        child.restart_at = time.monotonic() + delay
        return delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None and child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    def _alive(self) -> int:
        return sum(1 for c in self.children if c.proc is not None)


def describe(returncode: int) -> str:
    """'exited with status 1' or 'was killed by signal SIGKILL', for a Popen returncode."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"was killed by signal {name}"
