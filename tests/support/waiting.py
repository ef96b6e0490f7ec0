"""Wait for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

_NOTHING = object()


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition was not met",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call *predicate* until it returns something truthy, and return that.

    Raises AssertionError naming *message*, the timeout and the predicate's
    last value if the deadline passes first.  Exceptions of the types in
    *ignore* (e.g. ``redis.ConnectionError`` while a server restarts) count as
    "not yet"; any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = _NOTHING
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{message} (waited {timeout:g}s; last value: {last!r})"
            )
        time.sleep(interval)
