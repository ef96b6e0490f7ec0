"""Translation of redis-py's exceptions into geoq's tree, at the broker's edge.

A failover in progress (a Sentinel or Cluster master being replaced) shows up
as CLUSTERDOWN, MASTERDOWN, TRYAGAIN, a storm of MOVED, UNBLOCKED (a blocked command cut short
when its server became a replica), LOADING (a restarted server still reading its
data) or a connection error: all are RedisUnavailable, which every caller waits
out. READONLY (a write reached a replica) and OOM are RedisFull. redis-py's cluster client raises some errors
outside its RedisError tree (no reachable node, an uncovered slot); they are
translated too, by what caused them.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

import redis.exceptions as rex
from redis.sentinel import MasterNotFoundError

from geoq.errors import BrokerError, RedisAuthError, RedisFull, RedisUnavailable

_AUTH_WORDS = ("NOAUTH", "WRONGPASS", "NOPERM", "invalid username-password", "certificate verify failed",
               "Authentication required", "CERTIFICATE_VERIFY_FAILED", "no permissions",
               # TLS alerts: the server refused our certificate (unknown CA, bad, missing, revoked ...)
               "ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED",
               "ALERT_CERTIFICATE_UNKNOWN", "ALERT_CERTIFICATE_REVOKED", "ALERT_CERTIFICATE_EXPIRED",
               "ALERT_ACCESS_DENIED")
_FULL_WORDS = ("OOM", "READONLY")
_FAILOVER_WORDS = ("UNBLOCKED", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING")
_PIPELINE_NOTE = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ")
_SENTINEL_PROBLEM = re.compile(r">\)>\)> - (.+?)(?=, <redis\.|$)")
_AUTH_TYPES = (rex.AuthenticationError, rex.AuthorizationError, rex.NoPermissionError)
# MASTERDOWN is a ClusterDownError; a bare ClusterError is redis-py's "TTL exhausted": redirections
# (MOVED, ASK) kept coming, as while a failover or a resharding changes the slot map.
_FAILOVER_TYPES = (rex.ClusterError, rex.TryAgainError)


def translate(error: BaseException, op: str) -> BrokerError:
    """The geoq error for a redis-py error raised during `op` (one line, no secrets)."""
    if isinstance(error, MasterNotFoundError):
        return _no_master(error, op)
    text = _first_line(error)
    message = f"redis {op}: {text}"
    if isinstance(error, rex.RedisClusterException) and not isinstance(error, rex.RedisError):
        return _cluster_client(error, message)
    if isinstance(error, _AUTH_TYPES):
        return RedisAuthError(message)
    if isinstance(error, (rex.ReadOnlyError, rex.OutOfMemoryError)):
        return RedisFull(message)
    if isinstance(error, _FAILOVER_TYPES):
        return RedisUnavailable(message)
    if isinstance(error, (rex.ConnectionError, rex.TimeoutError)):
        if any(word in text for word in _AUTH_WORDS):
            return RedisAuthError(message)
        return RedisUnavailable(message)
    if any(text.startswith(word) for word in _FAILOVER_WORDS):
        return RedisUnavailable(message)
    if any(text.startswith(word) for word in _FULL_WORDS):
        return RedisFull(message)
    if any(word in text for word in _AUTH_WORDS):
        return RedisAuthError(message)
    return BrokerError(message)


def _no_master(error: MasterNotFoundError, op: str) -> BrokerError:
    """redis-py names each sentinel it asked by the whole repr of its client: keep what went wrong.

    Its text is "No master found for 'NAME' : <client repr> - <error repr>, <client repr> - ...".
    """
    text = _first_line(error)
    head = text.split(" : ", 1)[0]
    problems = list(dict.fromkeys(_SENTINEL_PROBLEM.findall(text)))
    if any("AuthenticationError" in p or any(word in p for word in _AUTH_WORDS) for p in problems):
        return RedisAuthError(f"redis {op}: the sentinels refused the login "
                              "(check redis.sentinel.username and redis.sentinel.password)")
    asked = f" (sentinels: {'; '.join(problems)})" if problems else ""
    return RedisUnavailable(f"redis {op}: {head[:1].lower()}{head[1:]}{asked}")


def _cluster_client(error: BaseException, message: str) -> BrokerError:
    """An error of redis-py's cluster client itself: judged by the server error behind it, if any."""
    for cause in _causes(error):
        if isinstance(cause, _AUTH_TYPES) or any(word in _first_line(cause) for word in _AUTH_WORDS):
            detail = _first_line(cause) if cause is not error else ""
            return RedisAuthError(f"{message} ({detail})" if detail and detail not in message else message)
    if isinstance(error, rex.SlotNotCoveredError) or "cannot be connected" in message:
        return RedisUnavailable(message)
    return BrokerError(message)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(error: BaseException) -> str:
    """The error's own words: without redis-py's pipeline note, which quotes the command (a payload)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return _PIPELINE_NOTE.sub("", text, count=1)


@contextmanager
def redis_errors(op: str) -> Iterator[None]:
    """Raise geoq's BrokerError subclasses instead of redis-py's, naming the operation."""
    try:
        yield
    except (rex.RedisError, rex.RedisClusterException) as e:
        raise translate(e, op) from e
    except OSError as e:  # a socket error redis-py did not wrap
        raise RedisUnavailable(f"redis {op}: {e}") from e
