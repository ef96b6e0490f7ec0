"""The config file: typed, frozen sections (schema) and the strict YAML loader (loader).

``load_config(path)`` reads a file; ``default_config(url=...)`` builds the
same Config with every default, for programs that have no file.
"""

from geoq.config.loader import default_config, load_config
from geoq.config.schema import (KEYS, BackoffConfig, Config, ConnectionSplit, DeadConfig, Key, LoggingConfig,
                                MetricsConfig, MiddlewareConfig, RedisConfig, ResultsConfig, RouteConfig, ScheduleConfig,
                                SentinelConfig, TLSConfig,
                                WorkerConfig, connection_split, least_connections)

__all__ = [
    "KEYS", "BackoffConfig", "Config", "ConnectionSplit", "DeadConfig", "Key", "LoggingConfig", "MetricsConfig",
    "MiddlewareConfig",
    "RedisConfig", "ResultsConfig", "RouteConfig", "ScheduleConfig", "SentinelConfig", "TLSConfig", "WorkerConfig", "connection_split",
    "default_config", "least_connections", "load_config",
]
