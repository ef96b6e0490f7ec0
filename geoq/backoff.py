"""Retry delays: exponential with full jitter, capped. Pure."""

from __future__ import annotations

import random
from typing import Callable


def delay(retry: int, base: float, cap: float, jitter: str = "full",
          rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `retry` (1 for the first retry).

    Full jitter draws from [0, min(cap, base * 2^(retry-1))], which spreads a
    burst of failures over the whole window instead of retrying in lockstep.
    """
    exponent = min(max(retry, 1) - 1, 62)  # past 2^62 every realistic cap has long been reached
    ceiling = float(min(cap, base * (2 ** exponent)))
    if jitter == "none":
        return ceiling
    return float(rand()) * ceiling
