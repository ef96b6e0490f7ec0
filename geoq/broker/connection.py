"""Redis clients built from config, with every timeout and retry chosen on purpose.

redis-py's defaults are wrong for a job queue: it may retry a command on a
timeout (sending a non-idempotent write twice) and, with no socket timeout,
a read can block for minutes. geoq never lets redis-py retry by itself: each
caller decides, knowing whether its command is safe to repeat.

One function, four kinds of Redis, chosen by the URL (and `redis.cluster`):

- ``redis://`` / ``rediss://`` / ``unix://``: one server (rediss: TLS with
  ``redis.tls``: CA, client certificate and key, hostname checking on by default);
- ``redis+cluster://h:p,h:p`` or ``redis.cluster: true``: Redis Cluster (see
  cluster.py for what differs from redis-py's own cluster client);
- ``redis+sentinel://h:p,h:p/MASTER/DB``: the master that Sentinel names; after a
  failover each new connection asks the sentinels again, and a connection still
  on the demoted master fails (READONLY becomes a connection error) instead of
  writing to a replica.

Credentials: ``redis.username`` / ``redis.password`` win over those in the URL.
Every client's pool blocks (up to the socket timeout) when all its connections
are busy, instead of failing or growing without bound.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable, cast
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis._parsers.encoders import Encoder
from redis.connection import PythonRespSerializer
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from geoq.broker.cluster import ClusterClient
from geoq.config import RedisConfig

SENTINEL_PORT = 26379
REDIS_PORT = 6379


def connect(cfg: RedisConfig, *, read_timeout: float | None = None, max_connections: int | None = None,
            name: str = "geoq") -> "redis.Redis":
    """A client for cfg.url. read_timeout overrides the socket timeout (a blocking fetch needs more).

    Nothing connects here: the first command does (so a producer can be built while Redis is down).
    A cluster client is typed as redis.Redis: geoq calls only commands both clients have.
    """
    parts = urlsplit(cfg.url)
    scheme = parts.scheme.lower()
    kwargs = _common(cfg, read_timeout, max_connections, name)
    if scheme == "redis+sentinel":
        return _sentinel(cfg, parts, kwargs)
    if scheme == "redis+cluster" or cfg.cluster:
        return cast("redis.Redis", _cluster(cfg, parts, kwargs))
    if scheme == "rediss":
        kwargs.update(_tls_kwargs(cfg))
    if scheme == "unix":  # redis-py's Unix socket connection refuses the TCP-only option
        del kwargs["socket_keepalive"]
    # redis-py lets a URL's credentials override keyword ones; ours must win, so the URL loses them.
    kwargs = {**_url_credentials(parts), **kwargs}
    pool = redis.BlockingConnectionPool.from_url(_without_credentials(cfg.url), retry=_no_retry(),
                                                 health_check_interval=0, command_packer=PACKER, **kwargs)
    return redis.Redis(connection_pool=pool)


class Packer:
    """Packs a command into Redis's protocol as redis-py's hiredis packer does, minus its Python
    call per argument. That packer passes every argument through Encoder.encode before hiredis
    sees it, which a settle of 1,000 jobs pays some 3,000 times; hiredis itself takes str (as
    UTF-8, the encoder's default), bytes, int and float, and formats a float as repr() does, as
    the encoder does. Anything else, and any memoryview (which redis-py sends as a chunk of its
    own, uncopied: geoq.broker.broker._bulk), goes to redis-py's Python packer, which also
    raises redis-py's DataError for a value Redis cannot take (None, a bool).

    One instance serves every connection: it holds no state. A cluster's node clients keep
    redis-py's packer (its client passes on only the options it knows)."""

    def __init__(self) -> None:
        serializer = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)  # type: ignore[no-untyped-call]
        self._python: Callable[..., list[bytes | memoryview]] = serializer.pack

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        if memoryview in map(type, args):   # C loops: no Python frame per argument
            return self._python(*args)
        name = args[0]
        if type(name) is str and " " in name:   # "SCRIPT LOAD": Redis takes it as two words
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._python(*args)


PACKER = Packer()


def _common(cfg: RedisConfig, read_timeout: float | None, max_connections: int | None, name: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        socket_timeout=cfg.socket_timeout if read_timeout is None else read_timeout,
        socket_connect_timeout=cfg.connect_timeout,
        socket_keepalive=True,
        retry_on_timeout=False,
        max_connections=max_connections or cfg.max_connections,
        timeout=cfg.socket_timeout,  # longest wait for a free connection of the pool
        client_name=name,
        decode_responses=False,
    )
    if cfg.username:
        kwargs["username"] = cfg.username
    if cfg.password:
        kwargs["password"] = cfg.password
    return kwargs


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def renew(client: "redis.Redis") -> None:
    """Drop what a failover makes stale, before a read is tried again: a cluster's slot map, and
    the idle pooled connections of the others (a new one asks the sentinels where the master is
    now). Connections in use are left to their callers: one may be carrying a write."""
    if isinstance(client, ClusterClient):
        client.refresh()
    else:
        client.connection_pool.disconnect(inuse_connections=False)


# -- one server ----------------------------------------------------------------------------------

class _TLSConnection(redis.connection.SSLConnection):
    """A TLS connection that tells a refused certificate from an outage.

    With TLS 1.3 the client's side of the handshake is done before the server has
    judged the client certificate; a server that refuses it (or its absence) just
    closes the connection, which the first command then meets as an EOF. Met while
    the connection is being set up, that is a certificate failure (exit 2), not a
    Redis to wait for.
    """

    def on_connect_check_health(self, check_health: bool = True) -> None:
        try:
            super().on_connect_check_health(check_health)
        except redis.ConnectionError as e:
            if isinstance(e.__cause__ or e.__context__, ssl.SSLError) and not isinstance(e, redis.AuthenticationError):
                raise redis.AuthenticationError(
                    f"the server refused the TLS session (client certificate missing or not trusted?): {e}") from e
            raise


def _tls_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    tls = cfg.tls
    out: dict[str, Any] = {"connection_class": _TLSConnection, "ssl_cert_reqs": ssl.CERT_REQUIRED,
                           "ssl_check_hostname": tls.check_hostname}
    if tls.ca_file:
        out["ssl_ca_certs"] = tls.ca_file
    if tls.cert_file:
        out["ssl_certfile"] = tls.cert_file
    if tls.key_file:
        out["ssl_keyfile"] = tls.key_file
    return out


# -- Redis Cluster -------------------------------------------------------------------------------

def _cluster(cfg: RedisConfig, parts: SplitResult, kwargs: dict[str, Any]) -> ClusterClient:
    seeds = _hosts(parts, REDIS_PORT)
    tls = parts.scheme.lower() == "rediss"
    kwargs = {**_url_credentials(parts), **kwargs}
    if tls:
        kwargs.update(_tls_kwargs(cfg))
    first = seeds[0]
    # A seed URL without credentials (those are in kwargs and must win) is the only way
    # redis-py takes a pool class for its node clients: it builds them "from a URL".
    seed = f"{'rediss' if tls else 'redis'}://{_bracket(first[0])}:{first[1]}"

    def factory() -> RedisCluster:
        nodes = [ClusterNode(h, p) for h, p in seeds[1:]]  # type: ignore[no-untyped-call]
        return RedisCluster(url=seed, startup_nodes=nodes,
                            retry=_no_retry(), connection_pool_class=redis.BlockingConnectionPool,
                            **kwargs)

    return ClusterClient(factory)


# -- Sentinel ------------------------------------------------------------------------------------

class _BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's master discovery with a pool that waits for a free connection instead of failing."""


def _sentinel(cfg: RedisConfig, parts: SplitResult, kwargs: dict[str, Any]) -> "redis.Redis":
    segments = [s for s in parts.path.split("/") if s]
    dbs = segments[1:] or parse_qs(parts.query).get("db", [])
    service, db = segments[0], int(dbs[0]) if dbs else 0
    kwargs = {**_url_credentials(parts), **kwargs}
    # Sentinels answer "where is the master?": quick timeouts, their own credentials (not the
    # data nodes'), and no retries (the next sentinel of the list is the retry).
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": cfg.connect_timeout,
                                       "socket_connect_timeout": cfg.connect_timeout, "retry": _no_retry()}
    if cfg.sentinel.username:
        sentinel_kwargs["username"] = cfg.sentinel.username
    if cfg.sentinel.password:
        sentinel_kwargs["password"] = cfg.sentinel.password
    sentinel = Sentinel(_hosts(parts, SENTINEL_PORT), sentinel_kwargs=sentinel_kwargs)
    master = sentinel.master_for(service, connection_pool_class=_BlockingSentinelPool,
                                 db=db, retry=_no_retry(), health_check_interval=0, command_packer=PACKER,
                                 **kwargs)
    return cast("redis.Redis", master)


# -- URL parts -----------------------------------------------------------------------------------

def _hosts(parts: SplitResult, default_port: int) -> list[tuple[str, int]]:
    """(host, port) of each comma-separated address of a URL (IPv6 in brackets)."""
    out = []
    for hostport in parts.netloc.rpartition("@")[2].split(","):
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port = rest[1:]
        else:
            host, _, port = hostport.partition(":")
        out.append((host, int(port) if port else default_port))
    return out


def _url_credentials(parts: SplitResult) -> dict[str, str]:
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at:
        return {}
    user, colon, password = userinfo.partition(":")
    out = {}
    if user:
        out["username"] = unquote(user)
    if colon and password:
        out["password"] = unquote(password)
    return out


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
