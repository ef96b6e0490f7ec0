"""Job type -> Route -> handler, resolved once when the worker starts."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from geoq import plugins
from geoq.config import Config, RouteConfig
from geoq.config.schema import LimitsConfig
from geoq.errors import ConfigError
from geoq.job import Job
from geoq.limits import LimitSpec
from geoq.outcome import RetryPolicy

Handler = Callable[[Job], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A job type's handler and the limits its jobs run under."""

    type: str
    queue: str
    handler: Handler
    timeout: float
    retry: RetryPolicy
    options: Mapping[str, Any]
    limit: LimitSpec | None = None   # None: the route sets no limit, and its jobs pay nothing for limits


class Router:
    """Looks up a route by job type; unknown types return None (the executor dead-letters them)."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._routes = dict(routes)

    def __getitem__(self, job_type: str) -> Route | None:
        return self._routes.get(job_type)

    def get(self, job_type: object) -> Route | None:
        """The route of whatever an envelope's "t" holds (None for anything not a configured type)."""
        return self._routes.get(job_type) if isinstance(job_type, str) else None

    @property
    def types(self) -> list[str]:
        return list(self._routes)


def build_router(config: Config) -> Router:
    """Import every route's handler; a handler that cannot be imported or built is a ConfigError."""
    return Router({name: _build_route(config.path, rc) for name, rc in config.routes.items()})


def _build_route(path: str, rc: RouteConfig) -> Route:
    where = f"{path}: routes.{rc.type}.handler"
    target = plugins.load(rc.handler, where)
    if not inspect.isclass(target) and not callable(target):
        raise ConfigError(f"{where}: expected a function or class, got {type(target).__name__} at {rc.handler}")
    handler = plugins.build(target, rc.handler, {} if not inspect.isclass(target) else rc.options,
                            f"{path}: routes.{rc.type}.options")
    if not callable(handler):
        raise ConfigError(f"{where}: {rc.handler} instances are not callable")
    b = rc.backoff
    return Route(type=rc.type, queue=rc.queue, handler=handler, timeout=rc.timeout,
                 retry=RetryPolicy(rc.max_retries, b.base, b.max, b.jitter), options=rc.options,
                 limit=limit_spec(rc.type, rc.limits))


def limit_spec(route: str, c: LimitsConfig) -> LimitSpec | None:
    """The route's limits, or None when its `limits` block sets none (adaptive alone is a limit:
    it pauses the whole route)."""
    if not c.any:
        return None
    k = c.per_key
    return LimitSpec(route, c.rate, c.concurrency, k.key, k.rate, k.concurrency, c.adaptive, c.pause, c.max_pause)
