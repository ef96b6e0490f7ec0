"""The config schema: typed, frozen sections, each key declared once.

Every key is one dataclass field declared with ``key(default, check, doc)``:
its default, the check that turns a YAML value into the typed value (raising
``Invalid``), and a one-line doc. The loader walks these fields to read a
file, and ``KEYS`` walks them to give a doc generator (and the tests) the
whole table. Fields marked ``derived`` are computed, never read from YAML.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from geoq import limits as limit_rules
from geoq import names, schedules
from geoq import unique as unique_rules
from geoq.unique import UniqueRule
from geoq.units import parse_duration, parse_rate, parse_size

Check = Callable[[Any], Any]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULTS_PATH = "<defaults>"
REQUIRED: Any = MISSING


class Invalid(Exception):
    """A value failed its check. The loader adds the file, key path and line.

    ``key`` names a sibling key to blame instead (for checks across keys);
    ``got`` describes the value when showing it as written would mislead.
    """

    def __init__(self, expected: str, *, key: str | None = None, got: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.key = key
        self.got = got


class EnvText(str):
    """A plain (unquoted) YAML scalar after ${VAR} substitution.

    ``typed`` holds what YAML would have made of the text had it been written
    in the file, so ``concurrency: ${N:-500}`` is an int while a string key
    such as a password keeps the text as it is.
    """

    typed: Any


# --- field declarations ------------------------------------------------------


def key(default: Any, check: Check, doc: str, *, factory: Callable[[], Any] | None = None,
        repr: bool = True) -> Any:
    """A key read from YAML. ``default`` may be REQUIRED; ``factory`` builds a default that is not hashable."""
    meta = {"check": check, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=repr)
    return field(default=default, metadata=meta, repr=repr)


def section(cls: type, doc: str) -> Any:
    """A nested mapping of keys, read into an instance of ``cls``."""
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


def derived(doc: str, default: Any = REQUIRED) -> Any:
    """A field computed by the loader (never a YAML key)."""
    return field(default=default, metadata={"derived": True, "doc": doc})


# --- checks --------------------------------------------------------------------


def typed(value: Any) -> Any:
    """What a check should type: the YAML-typed form of substituted text, else the value."""
    return value.typed if isinstance(value, EnvText) else value


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("a string")
    return str(value)


def optional_text(value: Any) -> str | None:
    """A string, where "" and null both mean "not set"."""
    return None if value is None or value == "" else text(value)


def readable_file(value: Any) -> str:
    """A path that can be opened for reading now; "" means "not set".

    Checked at load time because the TLS layer opens these files only when
    it connects, and the worker would take that failure for Redis being down.
    """
    path = text(value)
    if path:
        try:
            with open(path, "rb", buffering=0, opener=_open_nonblocking):
                pass
        except OSError as e:
            raise Invalid("a readable file", got=f"{path!r} ({e.strerror or e})") from None
    return path


def _open_nonblocking(path: str, flags: int) -> int:
    # A named pipe with no writer (say, a secret fed by another process) would block a plain open.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def boolean(value: Any) -> bool:
    value = typed(value)
    if not isinstance(value, bool):  # "yes" as a quoted string is not a boolean
        raise Invalid("true or false")
    return value


def integer(minimum: int) -> Check:
    def check(value: Any) -> int:
        value = typed(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"an integer >= {minimum}")
        return value
    return check


def duration(*, positive: bool, most: float | None = None) -> Check:
    bound = f" and <= {most:g}s" if most is not None else ""
    expected = f"a duration {'> 0' if positive else '>= 0'}{bound} such as 500ms, 30s, 5m"

    def check(value: Any) -> float:
        try:
            seconds = parse_duration(typed(value))
        except ValueError:
            raise Invalid(expected) from None
        if (positive and seconds <= 0) or (most is not None and seconds > most):
            raise Invalid(expected)
        return seconds
    return check


def size(minimum: int, shown: str) -> Check:
    def check(value: Any) -> int:
        try:
            nbytes = parse_size(typed(value))
        except ValueError:
            raise Invalid(f"a size >= {shown} such as 512kb, 1mb") from None
        if nbytes < minimum:
            raise Invalid(f"a size >= {shown} such as 512kb, 1mb")
        return nbytes
    return check


def choice(*options: str) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise Invalid("one of " + ", ".join(options))
        return value.lower()
    return check


def handler(value: Any) -> str:
    """The form "pkg.module:attr" only; importing is the worker's job, not the loader's."""
    module, sep, attr = text(value).partition(":")
    names = module.split(".") + attr.split(".")
    if not sep or not all(name.isidentifier() for name in names):
        raise Invalid("a handler of the form pkg.module:attr")
    return module + ":" + attr


def queue_name(value: Any) -> str:
    # Braces would break the per-queue Redis Cluster hash tag, spaces the CLI.
    if not names.is_queue_name(value):
        raise Invalid(f"a queue name of {names.QUEUE_NAME_RULE}")
    return str(value)


def queues(value: Any) -> tuple[str, ...] | dict[str, float]:
    """A list (strict priority) or a mapping {name: weight}; the worker section splits the mapping."""
    if isinstance(value, list):
        names = tuple(queue_name(item) for item in value)
        if not names or len(set(names)) != len(names):
            raise Invalid("a non-empty list of distinct queue names")
        return names
    if isinstance(value, dict):
        if not value:
            raise Invalid("at least one queue")
        return {queue_name(name): _weight(name, weight) for name, weight in value.items()}
    raise Invalid("a list of queue names or a mapping {name: weight}")


def _weight(name: str, value: Any) -> float:
    value = typed(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise Invalid(f"a positive number as the weight of queue {name!r}", got=repr(value))
    return float(value)


def listen(value: Any) -> str:
    """host:port for the metrics server; "" or off (YAML turns a bare off into false) disables it."""
    if value is False:
        return "off"
    split_listen(text(value))
    return str(value).strip()


def dashboard_listen(value: Any) -> str:
    """host:port for the dashboard; it cannot be off (a dashboard that serves nothing is a mistake)."""
    expected = "an address host:port such as 127.0.0.1:9181"
    if value is False:   # YAML reads a bare off as false
        raise Invalid(expected, got="off")
    try:
        host, _ = split_listen(text(value))
    except Invalid:
        raise Invalid(expected) from None
    if not host:
        raise Invalid(expected)
    return str(value).strip()


def split_listen(value: str) -> tuple[str, int]:
    """(host, port) of a listen address; ("", 0) when disabled. Port 0 picks a free port."""
    value = value.strip()
    if value.lower() in ("", "off"):
        return "", 0
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise Invalid("an address host:port, or off")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def options(value: Any) -> Mapping[str, Any]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise Invalid("a mapping of handler options")
    return MappingProxyType({name: _plain(item, name) for name, item in value.items()})


def _plain(value: Any, name: str) -> Any:
    """Options as YAML typed them; substituted secrets stay strings whatever they look like."""
    if isinstance(value, EnvText):
        return str(value) if is_secret(name) or value.typed is None else value.typed
    if isinstance(value, dict):
        return {k: _plain(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, name) for v in value]
    return value


def is_secret(path: str) -> bool:
    """Values under such keys are never shown in messages."""
    path = path.lower()
    return any(word in path for word in ("password", "passwd", "secret", "token", "authorization", "api-key",
                                         "api_key", "apikey", "credential"))


# --- Redis URLs ------------------------------------------------------------------

_NETWORK_SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster")
_SCHEMES = _NETWORK_SCHEMES + ("unix",)


def redis_url(value: Any) -> str:
    url = text(value).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Invalid("a Redis URL such as redis://host:6379/0") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise Invalid("a Redis URL with scheme " + ", ".join(_SCHEMES))
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise Invalid("a socket path, as in unix:///run/redis.sock")
    else:
        _check_hosts(parts)
    _check_db(parts)
    return url


def _check_hosts(parts: SplitResult) -> None:
    hosts = parts.netloc.rpartition("@")[2].split(",")
    if len(hosts) > 1 and parts.scheme.lower() in ("redis", "rediss"):
        raise Invalid("one host in a redis:// URL (redis+sentinel:// or redis+cluster:// take several)")
    for hostport in hosts:
        if hostport.startswith("["):
            host, _, port = hostport[1:].partition("]")
            port = port[1:] if port.startswith(":") else port
        else:
            host, _, port = hostport.partition(":")
        if not host:
            raise Invalid("a host in the Redis URL, as in redis://host:6379/0")
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            raise Invalid("a port number in the Redis URL, as in redis://host:6379/0")


def _check_db(parts: SplitResult) -> None:
    scheme = parts.scheme.lower()
    segments = [s for s in parts.path.split("/") if s] if scheme != "unix" else []
    if scheme == "redis+sentinel":
        if not segments or len(segments) > 2:
            raise Invalid("redis+sentinel://host:port,host:port/MASTER/DB")
        segments = segments[1:]
    dbs = segments + parse_qs(parts.query).get("db", [])
    if len(segments) > 1 or not all(db.isdigit() for db in dbs):
        raise Invalid("a database number in the Redis URL, as in redis://host:6379/0")
    if scheme == "redis+cluster" and any(int(db) != 0 for db in dbs):
        raise Invalid("database 0 in a Redis Cluster URL (a cluster has no other)")


# --- sections ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS for rediss:// connections."""

    ca_file: str = key("", readable_file, "CA bundle that signs the server certificate; empty = system CAs")
    cert_file: str = key("", readable_file, "client certificate (PEM) for mutual TLS; empty = none")
    key_file: str = key("", readable_file, "client private key (PEM); empty = none, or inside cert_file")
    check_hostname: bool = key(True, boolean, "refuse a server certificate that does not name the host")


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """Credentials of the sentinels themselves (their requirepass / ACL), with redis+sentinel://."""

    username: str | None = key(None, optional_text, "sentinels' ACL user; empty = none")
    password: str | None = key(None, optional_text, "sentinels' password; empty = none", repr=False)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where Redis is and how to talk to it."""

    url: str = key(DEFAULT_REDIS_URL, redis_url,
                   "redis://, rediss:// (TLS), unix://, redis+sentinel://h:p,h:p/MASTER/DB, redis+cluster://h:p,h:p")
    username: str | None = key(None, optional_text, "ACL user; empty = the URL's, or none")
    password: str | None = key(None, optional_text, "password; empty = the URL's, or none", repr=False)
    max_connections: int = key(200, integer(1), "Redis connections per process, all its pools together "
                               "(a worker needs at least queues + 6, +2 with metrics on)")
    cluster: bool = key(False, boolean, "true: url is one seed node of a Redis Cluster")
    tls: TLSConfig = section(TLSConfig, "TLS settings, used with rediss://")
    sentinel: SentinelConfig = section(SentinelConfig, "how to log in to the sentinels, used with redis+sentinel://")
    socket_timeout: float = key(5.0, duration(positive=True), "longest wait for a Redis reply (blocking fetches add theirs)")
    connect_timeout: float = key(5.0, duration(positive=True), "longest wait to open a connection")


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Delay before retry n: drawn from [0, min(max, base * 2^(n-1))] with full jitter."""

    base: float = key(1.0, duration(positive=False), "delay before the first retry, doubled for each next one")
    max: float = key(600.0, duration(positive=True), "longest delay between two runs")
    jitter: str = key("full", choice("full", "none"), "full = random in [0, delay]; none = exactly delay")


def optional_rate(value: Any) -> float | None:
    """A rate such as 100/s, 10/m, 5/h (> 0); null or absent: no rate limit."""
    value = typed(value)
    if value is None:
        return None
    try:
        rate = parse_rate(value)
    except ValueError:
        raise Invalid("a rate > 0 such as 100/s, 10/m, 5/h") from None
    if rate <= 0:
        raise Invalid("a rate > 0 such as 100/s, 10/m, 5/h")
    return rate


def optional_count(value: Any) -> int | None:
    """An integer >= 1; null or absent: no such limit."""
    return None if typed(value) is None else int(integer(1)(value))


def limit_key(value: Any) -> limit_rules.KeyRule | None:
    """url_host, recipient_domain or a template over the payload; null or absent: no per-key limit."""
    if typed(value) is None:
        return None
    try:
        return limit_rules.parse_key(value)
    except ValueError:
        raise Invalid(limit_rules.KEY_RULE) from None


_setting = key  # PerKeyConfig has a field named `key`, which hides the function inside its class body


@dataclass(frozen=True, slots=True)
class PerKeyConfig:
    """A separate rate and concurrency for each value of a key taken from the job's payload."""

    key: limit_rules.KeyRule | None = key(None, limit_key, "url_host (payload.url), recipient_domain (payload.to's "
                                          "first), or a template such as \"{payload.account_id}\"")
    rate: float | None = _setting(None, optional_rate, "runs per key value, all workers together: n/s, n/m, n/h")
    concurrency: int | None = _setting(None, optional_count, "runs at once per key value, all workers together")


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """A route's fleet-wide limits: a job held back waits (no pool slot, no attempt), never fails."""

    rate: float | None = key(None, optional_rate, "runs of this route, all workers together: n/s, n/m, n/h")
    concurrency: int | None = key(None, optional_count, "runs of this route at once, all workers together")
    per_key: PerKeyConfig = section(PerKeyConfig, "limits for each value of a key of the payload")
    adaptive: bool = key(False, boolean, "HTTP 429/503 Retry-After and SMTP 421/451 pause the job's key "
                         "(the route, without per_key) for every worker")
    pause: float = key(30.0, duration(positive=False), "adaptive pause when the server names no time")
    max_pause: float = key(300.0, duration(positive=True), "longest adaptive pause, whatever the server asks")

    @property
    def any(self) -> bool:
        """Whether this block sets any limit (adaptive alone is one: it pauses the whole route)."""
        return self.rate is not None or self.concurrency is not None or self.per_key.key is not None or self.adaptive
def unique(value: Any) -> UniqueRule | None:
    """A route's unique block: {key: TEMPLATE, for: DURATION}, either key optional (geoq.unique)."""
    if value is None:
        return None
    expected = "a mapping {key: \"{payload.FIELD}\", for: 10m} with key and/or for"
    if not isinstance(value, dict) or not value or set(value) - {"key", "for"}:
        raise Invalid(expected)
    template = value.get("key", "")
    if not isinstance(template, str):
        raise Invalid(f"unique.key as {unique_rules.TEMPLATE_RULE}", got=repr(template))
    try:
        unique_rules.check_template(template)
    except ValueError as e:
        raise Invalid(f"unique.key as {unique_rules.TEMPLATE_RULE}", got=f"{template!r} ({e})") from None
    window = duration(positive=False)(value.get("for", 0))
    return unique_rules.UniqueRule(template, window)


def _empty_options() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One job type: its handler and the limits its jobs run under."""

    type: str = derived("the job type: this route's name under routes")
    handler: str = key(REQUIRED, handler, "pkg.module:attr, a function or a class (required)")
    queue: str = key("default", queue_name, "queue its jobs go to unless enqueued with queue=")
    timeout: float = key(300.0, duration(positive=True), "a run longer than this is interrupted and fails")
    max_retries: int = key(5, integer(0), "retries after the first failed run before the job is dead")
    backoff: BackoffConfig = section(BackoffConfig, "delay between retries")
    unique: UniqueRule | None = key(None, unique, "{key: \"{payload.user_id}\", for: 10m}: one job per key while "
                                    "it is live and for the window after (key default: type plus payload)")
    options: Mapping[str, Any] = key(None, options, "passed to the handler (job.options, or class kwargs)",
                                       factory=_empty_options)
    limits: LimitsConfig = section(LimitsConfig, "fleet-wide rate and concurrency limits (none by default)")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How one worker process fetches and runs jobs."""

    concurrency: int = key(2000, integer(1), "greenlet pool size: jobs in flight per process")
    processes: int = key(1, integer(1), "worker processes on this machine")
    queues: tuple[str, ...] = key((), queues,
                                  "[a, b] = strict priority; {a: 3, b: 1} = weighted; "
                                  "absent = default, then each route's queue")
    weights: tuple[float, ...] | None = derived("weights of queues in order; None for strict priority", None)
    fetch_batch: int = key(100, integer(1), "most jobs moved per fetch round trip")
    shutdown_grace: float = key(30.0, duration(positive=False), "time in-flight jobs get to finish on SIGTERM")
    heartbeat: float = key(5.0, duration(positive=True), "how often the worker proves it is alive")
    dead_after: float = key(15.0, duration(positive=True), "a worker silent this long is dead; its jobs are requeued")
    max_deliveries: int = key(3, integer(1), "runs ended by a dying worker before the job is dead")
    max_payload: int = key(1048576, size(1024, "1kb"), "largest encoded job, checked on enqueue and fetch")
    # Bounded: a stop waits for a fetch blocked in Redis (cutting it short could leave a job
    # moved into the processing list of a worker that has already deregistered).
    block_timeout: float = key(1.0, duration(positive=True, most=10.0),
                               "how long an idle fetch blocks in Redis before re-checking (at most 10s)")


@dataclass(frozen=True, slots=True)
class DeadConfig:
    """The dead-letter list, trimmed oldest first past either bound."""

    max_jobs: int = key(100000, integer(1), "most dead jobs kept")
    max_age: float = key(30 * 86400.0, duration(positive=True), "oldest dead job kept")


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log lines of the worker and the CLI."""

    format: str = key("plain", choice("plain", "json"), "plain | json (one object per line)")
    level: str = key("info", choice("debug", "info", "warning", "error", "critical"), "least severe level logged")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The worker's Prometheus endpoint: /metrics, /healthz, /readyz."""

    listen: str = key("0.0.0.0:9108", listen, 'host:port to serve on; "" or off = no server (host "", port 0)')
    host: str = derived("host part of listen; \"\" when disabled", "0.0.0.0")
    port: int = derived("port part of listen; 0 when disabled (or a free port if host is set)", 9108)

    @property
    def enabled(self) -> bool:
        return self.host != ""


@dataclass(frozen=True, slots=True)
class ResultsConfig:
    """Finished jobs' status and return values."""

    keep: float = key(86400.0, duration(positive=False), "how long status and results are kept; 0 = not stored")


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """Per-minute job counts and wait times that workers write to Redis (geoq.history)."""

    keep: float = key(7 * 86400.0, duration(positive=True, most=366 * 86400.0),
                      "how long per-minute history is kept in Redis (at most 366d)")
    flush_every: float = key(5.0, duration(positive=True, most=60.0),
                             "how often a worker adds its counts to the history (at most 60s)")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """The web dashboard (`geoq dashboard`, geoq.dashboard.wsgi_app)."""

    listen: str = key("127.0.0.1:9181", dashboard_listen, "host:port `geoq dashboard` serves on (loopback by default)")
    username: str | None = key(None, optional_text, "HTTP basic auth user; auth is on when username and password are set")
    password: str | None = key(None, optional_text, "HTTP basic auth password; empty = no auth", repr=False)
    read_only: bool = key(False, boolean, "true: show no actions and refuse every POST")

    @property
    def auth(self) -> bool:
        return bool(self.username and self.password)


@dataclass(frozen=True, slots=True)
class MiddlewareConfig:
    """One entry of the `middleware:` list: what to import and the options a class is built with."""

    handler: str
    options: Mapping[str, Any]


def middleware(value: Any) -> tuple[MiddlewareConfig, ...]:
    """A list of "pkg.module:attr" or {handler: pkg.module:attr, options: {...}}, run in this order."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise Invalid(MIDDLEWARE_FORM)
    return tuple(_middleware_entry(n, item) for n, item in enumerate(value))


MIDDLEWARE_FORM = "a list of pkg.module:attr or {handler: pkg.module:attr, options: {...}}"


def _middleware_entry(n: int, item: Any) -> MiddlewareConfig:
    if not isinstance(item, dict):
        return MiddlewareConfig(_entry_part(handler, item, f"entry {n}", show=True), MappingProxyType({}))
    if "handler" not in item or not set(item) <= {"handler", "options"}:
        raise Invalid(MIDDLEWARE_FORM, got=f"entry {n} with keys {', '.join(map(str, item))}")
    return MiddlewareConfig(_entry_part(handler, item["handler"], f"entry {n}'s handler", show=True),
                            _entry_part(options, item.get("options"), f"entry {n}'s options"))


def _entry_part(check: Check, value: Any, where: str, show: bool = False) -> Any:
    """check(value), its error naming the entry (the loader would describe the whole list as what it
    got). Only a handler's text is shown: options may hold secrets."""
    try:
        return check(value)
    except Invalid as e:
        shown = repr(value)[:80] if show and isinstance(value, str) else f"a value of type {type(value).__name__}"
        raise Invalid(e.expected, got=f"{where}: {shown}") from None


# --- schedules ------------------------------------------------------------------------


SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""A schedule's name goes into its ticks' job ids (geoq.ticker), so only characters an id may hold."""


def cron(value: Any) -> str:
    try:
        return schedules.check_cron(text(value).strip())
    except schedules.BadTiming as e:
        raise Invalid(schedules.CRON_FORM, got=str(e)) from None


def time_zone(value: Any) -> str:
    try:
        schedules.zone(text(value))
    except schedules.BadTiming:
        raise Invalid(schedules.ZONE_FORM) from None
    return str(value)


def optional(check: Check) -> Check:
    """`check`, where null and "" mean "not set" (None)."""
    def maybe(value: Any) -> Any:
        return None if value is None or value == "" else check(value)
    return maybe


def payload(value: Any) -> Any:
    """Any JSON value, as YAML typed it (what `enqueue(type, payload)` would take)."""
    plain = _plain(value, "payload")
    try:
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError):
        raise Invalid("a JSON value (quote dates and times)", got=f"a value holding {_unjson(plain)}") from None
    return plain


def _unjson(value: Any) -> str:
    """What JSON cannot hold in `value` (which it cannot encode): the type of its first such part."""
    parts = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else None
    if parts is None:
        return f"a {type(value).__name__}"
    for part in parts:
        try:
            json.dumps(part, allow_nan=False)
        except (TypeError, ValueError):
            return _unjson(part)
    return "a key that is not a string"


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """One recurring job: a cron expression in a zone, or every: an interval; one job per tick."""

    name: str = derived("the schedule's name under schedules")
    type: str = key(REQUIRED, text, "the job type each tick enqueues: a route's name (required)")
    cron: str | None = key(None, optional(cron), "cron expression, 5 fields (minute hour day month weekday); or every:")
    every: float | None = key(None, optional(duration(positive=True)),
                              "an interval such as 10m, aligned to the epoch; or cron:")
    timezone: str = key("UTC", time_zone, "the zone cron: is read in (IANA name)")
    payload: Any = key(None, payload, "the payload of each job")
    queue: str | None = key(None, optional(queue_name), "queue of its jobs; default: the route's")
    catch_up: float = key(0.0, duration(positive=False),
                          "on start, the last missed tick runs once if it is younger than this; 0 = skip it")

    @property
    def timing(self) -> schedules.Timing:
        return schedules.Timing(cron=self.cron, zone=self.timezone, every=self.every)


def _finish_schedule(values: dict[str, Any]) -> None:
    if values["cron"] is not None and values["every"] is not None:
        raise Invalid("cron or every, not both", key="every", got="both")
    if values["cron"] is None and values["every"] is None:
        raise Invalid("cron: or every: (when its jobs run)", got="neither")


def _no_schedules() -> Mapping[str, ScheduleConfig]:
    return MappingProxyType({})


def _no_routes() -> Mapping[str, RouteConfig]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Config:
    """A whole config file. Built once, then passed to what needs it."""

    path: str = derived("the file this was read from, or <defaults>", DEFAULTS_PATH)
    redis: RedisConfig = section(RedisConfig, "the Redis server")
    worker: WorkerConfig = section(WorkerConfig, "the worker process")
    dead: DeadConfig = section(DeadConfig, "the dead-letter list")
    logging: LoggingConfig = section(LoggingConfig, "logging")
    metrics: MetricsConfig = section(MetricsConfig, "the Prometheus endpoint")
    results: ResultsConfig = section(ResultsConfig, "job status and results")
    history: HistoryConfig = section(HistoryConfig, "per-minute job history in Redis")
    middleware: tuple[MiddlewareConfig, ...] = key((), middleware, "run around every job, in this order: "
                                                   "pkg.module:attr or {handler: pkg.module:attr, options: {...}}")
    routes: Mapping[str, RouteConfig] = field(
        default_factory=_no_routes, metadata={"routes": RouteConfig, "doc": "job type -> route"})
    # After routes: the loader checks each schedule's type against the routes read before it.
    schedules: Mapping[str, ScheduleConfig] = field(
        default_factory=_no_schedules, metadata={"schedules": ScheduleConfig, "doc": "name -> recurring job"})
    dashboard: DashboardConfig = section(DashboardConfig, "the web dashboard")


# --- checks across keys ------------------------------------------------------------


def _finish_redis(values: dict[str, Any]) -> None:
    if values["cluster"] and values["url"].split(":", 1)[0].lower() not in ("redis", "rediss", "redis+cluster"):
        raise Invalid("false with a unix:// or redis+sentinel:// url", key="cluster", got="true")


def _finish_backoff(values: dict[str, Any]) -> None:
    if values["max"] < values["base"]:
        raise Invalid(f"a duration >= base ({values['base']:g}s)", key="max", got=f"{values['max']:g}s")


def _finish_worker(values: dict[str, Any]) -> None:
    if isinstance(values["queues"], dict):
        values["weights"] = tuple(values["queues"].values())
        values["queues"] = tuple(values["queues"])
    if values["heartbeat"] >= values["dead_after"]:
        raise Invalid(f"a duration shorter than dead_after ({values['dead_after']:g}s)",
                      key="heartbeat", got=f"{values['heartbeat']:g}s")


def _finish_tls(values: dict[str, Any]) -> None:
    if values["key_file"] and not values["cert_file"]:  # ssl wants the certificate the key belongs to
        raise Invalid("a cert_file for this key_file (or the key inside cert_file)", key="key_file",
                      got=repr(values["key_file"]))


def _finish_metrics(values: dict[str, Any]) -> None:
    values["host"], values["port"] = split_listen(values["listen"])


def _finish_per_key(values: dict[str, Any]) -> None:
    limited = values["rate"] is not None or values["concurrency"] is not None
    if values["key"] is None and limited:
        raise Invalid(f"a key ({limit_rules.KEY_RULE}) for the per-key rate or concurrency", key="key")


def _finish_limits(values: dict[str, Any]) -> None:
    k = values["per_key"]
    if k.key is not None and k.rate is None and k.concurrency is None and not values["adaptive"]:
        raise Invalid("a per-key rate or concurrency, or adaptive: true, for the key", key="per_key",
                      got=f"key {k.key.text} alone")
    if values["max_pause"] < values["pause"]:
        raise Invalid(f"a duration >= pause ({values['pause']:g}s)", key="max_pause",
                      got=f"{values['max_pause']:g}s")


def _finish_dashboard(values: dict[str, Any]) -> None:
    if values["username"] and ":" in values["username"]:
        raise Invalid("a user name without ':' (HTTP basic auth splits on it)", key="username", got="a name with ':'")
    if bool(values["username"]) != bool(values["password"]):
        missing = "password" if values["username"] else "username"
        raise Invalid(f"a {missing} too: basic auth needs both (or neither)", key=missing, got="empty")


FINISH: Mapping[type, Callable[[dict[str, Any]], None]] = MappingProxyType({
    RedisConfig: _finish_redis, TLSConfig: _finish_tls, BackoffConfig: _finish_backoff,
    WorkerConfig: _finish_worker, MetricsConfig: _finish_metrics, ScheduleConfig: _finish_schedule,
    PerKeyConfig: _finish_per_key, LimitsConfig: _finish_limits, DashboardConfig: _finish_dashboard,
})


def default_queues(routes: Mapping[str, RouteConfig]) -> tuple[str, ...]:
    """"default" first, then each route's queue in order of first appearance."""
    return tuple(dict.fromkeys(["default"] + [route.queue for route in routes.values()]))


def complete(config: Config) -> Config:
    """Fill in what depends on more than one section: the queues of a worker that names none."""
    if config.worker.queues:
        return config
    worker = replace(config.worker, queues=default_queues(config.routes), weights=None)
    return replace(config, worker=worker)


@dataclass(frozen=True, slots=True)
class ConnectionSplit:
    """How one worker process shares redis.max_connections among its connection pools.

    Each pool is a BlockingConnectionPool: a caller that finds every connection of its
    pool busy waits for one (up to redis.socket_timeout, then a Redis error its loop backs
    off from), so no pool can grow past its share and the sum is the process's bound.
    """

    fetch: int      # blocking fetches: one waiter per queue at once, plus the single-queue fetch
    heartbeat: int  # the heartbeat thread's own (one beat at a time)
    metrics: int    # the /metrics endpoint's queue-depth reads; 0 with metrics off
    main: int       # the rest: outcomes, non-blocking fetches, scheduler, reaper, handbacks

    @property
    def total(self) -> int:
        return self.fetch + self.heartbeat + self.metrics + self.main


MAIN_LEAST = 4  # settler, fetch sweep, scheduler and reaper each hold one at a time


def connection_split(config: Config) -> ConnectionSplit:
    """The fixed shares first, the rest of redis.max_connections to the main pool (at least MAIN_LEAST)."""
    fetch, heartbeat = len(config.worker.queues) + 1, 1
    metrics = 2 if config.metrics.enabled else 0
    return ConnectionSplit(fetch, heartbeat, metrics, config.redis.max_connections - fetch - heartbeat - metrics)


def least_connections(config: Config) -> int:
    """The smallest redis.max_connections this worker can run with."""
    split = connection_split(config)
    return split.total - split.main + MAIN_LEAST


# --- the key table -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: its dotted path (routes as routes.<type>), default, check and doc."""

    path: str
    default: Any
    check: Check | None  # None for a section or the routes mapping, which hold keys
    doc: str


def default_of(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def walk(cls: type, prefix: str = "") -> Iterator[Key]:
    """Every key under ``cls``, depth first, in declaration order."""
    for f in fields(cls):
        meta, path = f.metadata, prefix + f.name
        if "derived" in meta:
            continue
        yield Key(path, default_of(f), meta.get("check"), meta["doc"])
        if "routes" in meta:
            yield from walk(meta["routes"], path + ".<type>.")
        elif "schedules" in meta:
            yield from walk(meta["schedules"], path + ".<name>.")
        elif "section" in meta:
            yield from walk(meta["section"], path + ".")


KEYS: tuple[Key, ...] = tuple(walk(Config))
