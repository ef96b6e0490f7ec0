"""Job type -> Route -> handler, resolved once when the worker starts."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from geoq.config import BackoffConfig, Config, RouteConfig
from geoq.errors import ConfigError
from geoq.job import Job

Handler = Callable[[Job], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A job type's handler and the limits its jobs run under."""

    type: str
    queue: str
    handler: Handler
    timeout: float
    max_retries: int
    backoff: BackoffConfig
    options: Mapping[str, Any]


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
    target = _import(path, rc)
    handler: Handler
    if inspect.isclass(target):
        try:  # a class is built once per route with the route's options, and validates them
            built = target(**dict(rc.options))
        except Exception as e:
            raise ConfigError(f"{path}: routes.{rc.type}.options: {rc.handler} rejected its options: {e}") from e
        if not callable(built):
            raise ConfigError(f"{path}: routes.{rc.type}.handler: {rc.handler} instances are not callable")
        handler = built
    elif callable(target):
        handler = target
    else:
        raise ConfigError(f"{path}: routes.{rc.type}.handler: expected a function or class, "
                          f"got {type(target).__name__} at {rc.handler}")
    return Route(type=rc.type, queue=rc.queue, handler=handler, timeout=rc.timeout,
                 max_retries=rc.max_retries, backoff=rc.backoff, options=rc.options)


def _import(path: str, rc: RouteConfig) -> Any:
    module_name, _, attr = rc.handler.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any import-time failure of user code is a start-up config error
        raise ConfigError(f"{path}: routes.{rc.type}.handler: cannot import module {module_name!r}: "
                          f"{type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ConfigError(f"{path}: routes.{rc.type}.handler: module {module_name!r} has no attribute {attr!r}") from e
