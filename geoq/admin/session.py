"""What every command needs: the config, a Redis connection made for a person at a terminal,
the admin broker, and the list of queues to look at."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, TypeVar

import redis

from geoq.broker.admin import AdminBroker, QueueScan
from geoq.broker.connection import connect, renew
from geoq.broker.retry import read_patience, retry_read
from geoq.client import Client
from geoq.config import Config, default_config, load_config

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0  # a person waiting on an unreachable Redis should hear so quickly


def resolve_config(path: str | None, url: str | None, env: Mapping[str, str]) -> Config:
    """-c PATH, else $GEOQ_CONFIG, else the defaults; --redis-url replaces the file's redis.url."""
    path = path or env.get("GEOQ_CONFIG") or None
    if path is None:
        config = default_config(url) if url else default_config()
    else:
        config = load_config(path, producer=True)
        if url:
            config = dataclasses.replace(config, redis=dataclasses.replace(config.redis,
                                                                          url=default_config(url).redis.url))
    quick = dataclasses.replace(config.redis, connect_timeout=min(config.redis.connect_timeout, CONNECT_TIMEOUT))
    return dataclasses.replace(config, redis=quick)


class Session:
    """Connects on first use, so a usage error never waits on Redis."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._redis: redis.Redis | None = None
        self._broker: AdminBroker | None = None
        self._client: Client | None = None

    @property
    def broker(self) -> AdminBroker:
        if self._broker is None:
            self._redis = connect(self.config.redis, max_connections=4, name="geoq-admin")
            self._broker = AdminBroker(self._redis)
        return self._broker

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(config=self.config)
        return self._client

    def read(self, read: Callable[[], T]) -> T:
        """read() (a command's reads, which change nothing) tried again through a failover,
        for up to read_patience seconds; the client's own reads inside it try once."""
        return retry_read(read, self._renew, read_patience(self.config.redis))

    def _renew(self) -> None:
        for client in (self._redis, self._client.broker.client if self._client else None):
            if client is not None:
                renew(client)

    def known_queues(self) -> list[str]:
        """The queues the config names: the worker's, then each route's."""
        routes = [route.queue for route in self.config.routes.values()]
        return list(dict.fromkeys([*self.config.worker.queues, *routes]))

    def queues(self, scan: QueueScan | None = None) -> list[str]:
        """The config's queues, then any other queue found in Redis, by name."""
        scan = scan or self.broker.scan_queues()
        known = self.known_queues()
        return known + sorted(scan.queues.difference(known))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._redis is not None:
            self._redis.close()
