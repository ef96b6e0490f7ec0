"""geoq: a Redis job queue whose gevent worker keeps thousands of I/O-heavy jobs in flight.

The producer side (``Client``) works in any Python program. Importing geoq
imports no gevent, patches nothing, spawns nothing and connects nothing.
"""

from geoq.client import Client
from geoq.errors import (BrokerError, ConfigError, Fail, GeoqError, InvalidJob, JobCancelled, JobDead, PayloadTooLarge,
                         RedisAuthError, RedisFull, RedisUnavailable, ResultTimeout, Retry)
from geoq.job import Job, JobStatus
from geoq.middleware import Middleware, WorkerInfo

__version__ = "0.1.0"

__all__ = [
    "BrokerError", "Client", "ConfigError", "Fail", "GeoqError", "InvalidJob", "Job", "JobCancelled", "JobDead",
    "JobStatus",
    "Middleware", "PayloadTooLarge", "RedisAuthError", "RedisFull", "RedisUnavailable", "ResultTimeout", "Retry",
    "WorkerInfo", "__version__",
]
