"""Human-written quantities: durations, sizes and rates. Pure.

Every parser accepts a bare number (seconds, bytes, per second) or a string of
a number and a unit, case-insensitive, with whitespace tolerated. Anything
else, negative numbers included, raises ValueError with a one-line message
that shows an example and the value given.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_rate", "parse_size"]

_QUANTITY = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)")

_SECONDS = {
    "": 1.0, "ms": 0.001, "msec": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}

# Binary units throughout: a "1mb" payload limit means 1 MiB, as in DESIGN.md.
_BYTES = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1024**4, "tib": 1024**4,
}

_DURATION = "a duration such as 500ms, 30s, 5m"
_SIZE = "a size such as 512kb, 1mb, 2gb"
_RATE = "a rate such as 100/s, 10/m, 5/h"


def parse_duration(value: object) -> float:
    """Seconds in *value*: "500ms", "30s", "5m", "1h", "30d", or a bare number of seconds."""
    number, unit = _quantity(value, _DURATION)
    if unit not in _SECONDS:
        raise _error(_DURATION, value)
    return number * _SECONDS[unit]


def parse_size(value: object) -> int:
    """Bytes in *value*: "100b", "512kb", "1mb", "2gb" (kb = 1024), or a bare whole number of bytes."""
    number, unit = _quantity(value, _SIZE)
    if unit not in _BYTES:
        raise _error(_SIZE, value)
    if _BYTES[unit] == 1 and not number.is_integer():
        raise _error(_SIZE, value)  # there is no such thing as half a byte
    return int(number * _BYTES[unit])


def parse_rate(value: object) -> float:
    """Events per second in *value*: "100/s", "10/m", "5/h", "3/10s", or a bare number per second."""
    if not isinstance(value, str) or "/" not in value:
        return _quantity_without_unit(value, _RATE)
    count, _, per = value.partition("/")
    per = per.strip()
    if not per:
        raise _error(_RATE, value)
    try:
        number = _quantity_without_unit(count, _RATE)
        seconds = parse_duration(per if per[:1].isdigit() or per[:1] == "." else "1" + per)
    except ValueError:
        raise _error(_RATE, value) from None
    if seconds <= 0:
        raise _error(_RATE, value)
    return number / seconds


def _quantity(value: object, what: str) -> tuple[float, str]:
    """(number, lower-case unit) of *value*; a bare number has the unit ""."""
    if isinstance(value, bool):  # True is an int to Python, never a quantity to a person
        raise _error(what, value)
    if isinstance(value, (int, float)):
        return _checked(float(value), what, value), ""
    if not isinstance(value, str):
        raise _error(what, value)
    match = _QUANTITY.fullmatch(value.strip().lower())
    if match is None:
        raise _error(what, value)
    return _checked(float(match["number"]), what, value), match["unit"]


def _quantity_without_unit(value: object, what: str) -> float:
    number, unit = _quantity(value, what)
    if unit:
        raise _error(what, value)
    return number


def _checked(number: float, what: str, value: object) -> float:
    if number < 0 or not math.isfinite(number):
        raise _error(what, value)
    return number


def _error(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {value!r}")
