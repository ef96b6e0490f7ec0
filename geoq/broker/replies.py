"""Reading Redis replies as text or as bytes, in one place.

geoq's clients are built with decode_responses=False, so replies are bytes; a client
made otherwise (a caller's own, or one of redis-py's helpers) answers str. Every spot
that needs one or the other reads the reply through these.
"""

from __future__ import annotations


def text(value: object) -> str:
    """A reply as text; bytes that are not UTF-8 read with replacement characters."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def raw(value: bytes | str) -> bytes:
    """A reply as bytes, as it was stored (an envelope, compared byte for byte)."""
    return value if isinstance(value, bytes) else value.encode()
