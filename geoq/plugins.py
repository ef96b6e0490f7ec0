"""User code named in the config as "pkg.module:attr": route handlers and middleware, imported once.

Importing runs the user's module, so it happens when a worker or a producer is
built from a config, never when the config is read. Every failure is a one-line
ConfigError naming the file and the key.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from geoq.config import Config
from geoq.errors import ConfigError
from geoq.middleware import Middleware


def load(spec: str, where: str) -> Any:
    """The object "pkg.module:attr" names; `where` ("file: key.path") starts each error."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any import-time failure of user code is a start-up config error
        raise ConfigError(f"{where}: cannot import module {module_name!r}: {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r}") from e


def build(target: Any, spec: str, options: Mapping[str, Any], where: str) -> Any:
    """A class built once with `options` as keyword arguments (it validates them), or `target` itself."""
    if not inspect.isclass(target):
        if options:
            raise ConfigError(f"{where}: {spec} is not a class, so it takes no options")
        return target
    try:
        return target(**dict(options))
    except Exception as e:
        raise ConfigError(f"{where}: {spec} rejected its options: {type(e).__name__}: {e}") from e


def middleware(config: Config) -> list[Middleware]:
    """The config's `middleware:` list, each built once, in order."""
    built = []
    for n, entry in enumerate(config.middleware):
        where = f"{config.path}: middleware[{n}]"
        found = build(load(entry.handler, where), entry.handler, entry.options, where)
        if not isinstance(found, Middleware):
            raise ConfigError(f"{where}: expected a geoq.Middleware subclass or instance, "
                              f"got {type(found).__name__} at {entry.handler}")
        built.append(found)
    return built
