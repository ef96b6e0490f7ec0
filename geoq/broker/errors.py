"""Translation of redis-py's exceptions into geoq's tree, at the broker's edge."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import redis.exceptions as rex

from geoq.errors import BrokerError, RedisAuthError, RedisFull, RedisUnavailable

_AUTH_WORDS = ("NOAUTH", "WRONGPASS", "NOPERM", "invalid username-password", "certificate verify failed",
               "Authentication required", "CERTIFICATE_VERIFY_FAILED")
_FULL_WORDS = ("OOM", "READONLY", "UNBLOCKED", "MASTERDOWN", "LOADING")


def translate(error: Exception, op: str) -> BrokerError:
    """The geoq error for a redis-py error raised during `op` (one line, no secrets)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    message = f"redis {op}: {text}"
    if isinstance(error, (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)):
        return RedisAuthError(message)
    if isinstance(error, (rex.ReadOnlyError, rex.OutOfMemoryError, rex.BusyLoadingError)):
        return RedisFull(message)
    if isinstance(error, (rex.ConnectionError, rex.TimeoutError)):
        if any(word in text for word in _AUTH_WORDS):
            return RedisAuthError(message)
        return RedisUnavailable(message)
    if any(text.startswith(word) for word in _FULL_WORDS):
        return RedisFull(message)
    if any(word in text for word in _AUTH_WORDS):
        return RedisAuthError(message)
    return BrokerError(message)


@contextmanager
def redis_errors(op: str) -> Iterator[None]:
    """Raise geoq's BrokerError subclasses instead of redis-py's, naming the operation."""
    try:
        yield
    except rex.RedisError as e:
        raise translate(e, op) from e
    except OSError as e:  # a socket error redis-py did not wrap
        raise RedisUnavailable(f"redis {op}: {e}") from e
