"""One log line when a loop's Redis work starts failing and one when it works again, not one per retry.

Every loop that retries against Redis (fetch, settle, promote, heartbeat, the
worker's wait for Redis, the depth scrape) reports its outages through an
Outage, so an outage of an hour is two lines, not thousands. Pure: it keeps one
flag and calls a sink. A loop passes its logger's `log`; the heartbeat's native
thread, which must not log itself, passes a sink that leaves the lines as news
for the hub to log.
"""

from __future__ import annotations

import logging
from typing import Protocol


class Sink(Protocol):
    """Where an outage's lines go: `Logger.log` fits, or any callable taking (level, msg, *args)."""

    def __call__(self, level: int, msg: str, /, *args: object) -> None: ...


class Outage:
    """The state of one loop's outage, and its two lines.

    `failure` is a %-format of one argument, the error. The first failure of an
    outage tells it at ERROR; later ones tell it only if `repeats` gives a level
    for them. `recovery` is told at WARNING by the first success after a
    failure, and never otherwise. `failing` is already updated when the sink is
    called, so a sink can tell a failure's line from the recovery's.
    """

    __slots__ = ("_sink", "_failure", "_recovery", "_repeats", "_failing")

    def __init__(self, sink: Sink, failure: str, recovery: str, *, repeats: int | None = None) -> None:
        self._sink, self._failure, self._recovery, self._repeats = sink, failure, recovery, repeats
        self._failing = False

    @property
    def failing(self) -> bool:
        """True from a failure until the next success."""
        return self._failing

    def failed(self, error: object) -> None:
        if not self._failing:
            self._failing = True
            self._sink(logging.ERROR, self._failure, error)
        elif self._repeats is not None:
            self._sink(self._repeats, self._failure, error)

    def recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._sink(logging.WARNING, self._recovery)
