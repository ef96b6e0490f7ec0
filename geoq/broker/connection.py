"""Redis clients built from config, with every timeout and retry chosen on purpose.

redis-py's defaults are wrong for a job queue: it may retry a command on a
timeout (sending a non-idempotent write twice) and, with no socket timeout,
a read can block for minutes. geoq never lets redis-py retry by itself: each
caller decides, knowing whether its command is safe to repeat.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from geoq.config import RedisConfig


def connect(cfg: RedisConfig, *, read_timeout: float | None = None, max_connections: int | None = None,
            name: str = "geoq") -> "redis.Redis":
    """A client for cfg.url. read_timeout overrides the socket timeout (a blocking fetch needs more)."""
    kwargs: dict[str, Any] = dict(
        socket_timeout=cfg.socket_timeout if read_timeout is None else read_timeout,
        socket_connect_timeout=cfg.connect_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        max_connections=max_connections or cfg.max_connections,
        client_name=name,
        decode_responses=False,
    )
    if cfg.username:
        kwargs["username"] = cfg.username
    if cfg.password:
        kwargs["password"] = cfg.password
    if urlsplit(cfg.url).scheme == "rediss":
        kwargs.update(_tls_kwargs(cfg))
    pool = redis.BlockingConnectionPool.from_url(cfg.url, timeout=cfg.socket_timeout, **kwargs)
    return redis.Redis(connection_pool=pool)


def _tls_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    tls = cfg.tls
    out: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": tls.check_hostname}
    if tls.ca_file:
        out["ssl_ca_certs"] = tls.ca_file
    if tls.cert_file:
        out["ssl_certfile"] = tls.cert_file
    if tls.key_file:
        out["ssl_keyfile"] = tls.key_file
    return out
