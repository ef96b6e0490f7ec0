"""`geoq.handlers.http:fetch` — one HTTP request per job over pooled keep-alive connections.

Route options (all optional; checked once when the worker starts):

    timeout: 10s                 connect and read timeout of each request (a payload may ask for less or more)
    max_connections: 100         open connections per host; more jobs for one host wait for a free one
    max_body: 64kb               response bytes kept in the result; the rest is not read
    headers: {}                  default request headers (may hold secrets: they never reach results or logs)
    allow_hosts: []              host patterns a URL may name (empty: any); see geoq.handlers.netguard
    block_private_networks: false   refuse hosts that are or resolve to loopback, private, link-local ... addresses

Payload: ``{url, method?, headers?, json? | body?, timeout?, expect?}``. The
method defaults to GET, or POST when the job carries a json or body. `expect`
lists the statuses that count as success: numbers, ranges "200-299" or
classes "2xx" (default: 200-299). Redirects are not followed; list 3xx in
`expect` to accept them and read the result's `location`.

Outcome: an expected status returns ``{"status", "headers", "body",
"truncated"}`` (headers: content-type, content-length, location, etag if
present; body: text cut at max_body). 429 and 503 retry after their
Retry-After (seconds or an HTTP date) when they carry one; 408, 429 and 5xx
retry with the route's backoff, as do network errors and timeouts; any other
status, a malformed payload and a refused host fail at once. Error messages
show the method and the URL without its query string or credentials.

The client is urllib3 (see the note that added this handler for the
measurements that chose it): its pools are thread-safe, and so cooperative
in the monkeypatched worker.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import json
import socket
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import SplitResult, unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from geoq.config.schema import Invalid, boolean, duration, integer, size
from geoq.errors import ConfigError, Fail, Retry
from geoq.handlers.netguard import NetGuard, RefusedAddress
from geoq.job import Job

__all__ = ["Fetch", "FetchOptions", "fetch"]

KEPT_HEADERS = ("content-type", "content-length", "location", "etag")
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 86400.0  # a server asking for more than a day is capped, not obeyed
NUM_POOLS = 256            # hosts whose pools stay open; the least recently used beyond are closed
USER_AGENT = "geoq"
DEFAULT_EXPECT = frozenset(range(200, 300))


@dataclass(frozen=True, slots=True)
class FetchOptions:
    timeout: float = 10.0
    max_connections: int = 100
    max_body: int = 64 * 1024
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    guard: NetGuard = NetGuard()

    def __repr__(self) -> str:  # default headers may hold credentials
        return (f"FetchOptions(timeout={self.timeout}, max_connections={self.max_connections}, "
                f"max_body={self.max_body}, headers=<{len(self.headers)} hidden>, guard={self.guard})")


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "timeout": duration(positive=True),
    "max_connections": integer(1),
    "max_body": size(0, "0"),
    "block_private_networks": boolean,
}


def parse_options(given: Mapping[str, Any]) -> FetchOptions:
    """Route options -> FetchOptions; ConfigError naming the option for anything wrong."""
    known = set(_CHECKS) | {"headers", "allow_hosts"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; expected some of {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        if name in given:
            try:
                values[name] = check(given[name])
            except Invalid as e:
                raise ConfigError(f"option {name!r}: expected {e.expected}, got {given[name]!r}") from None
    allow = given.get("allow_hosts") or []
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list):
        raise ConfigError(f"option 'allow_hosts': expected a list of host patterns, got {allow!r}")
    try:
        guard = NetGuard.build(allow, values.pop("block_private_networks", False))
    except ValueError as e:
        raise ConfigError(f"option {e}") from None
    headers = _headers(given.get("headers"), "option 'headers'", ConfigError)
    return FetchOptions(guard=guard, headers=MappingProxyType(headers), **values)


# --- the request a job asks for ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    shown: str                # the URL as messages may show it
    headers: dict[str, str] = field(repr=False)
    body: bytes | None = field(repr=False)
    timeout: float
    expect: frozenset[int]


def parse_request(payload: Any, options: FetchOptions) -> Request:
    """The payload as a Request; Fail (no retry can fix it) when it is malformed or its host refused."""
    if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
        raise Fail("payload must be an object with a 'url' string")
    unknown = sorted(set(payload) - {"url", "method", "headers", "json", "body", "timeout", "expect"})
    if unknown:
        raise Fail(f"unknown payload key {unknown[0]!r}")
    parts = _split_url(payload["url"])
    shown = _shown(parts)
    try:
        options.guard.check_host(parts.hostname or "")
    except RefusedAddress as e:
        raise Fail(f"{e} (url {shown})") from None
    headers = {"user-agent": USER_AGENT, **{k.lower(): v for k, v in options.headers.items()},
               **{k.lower(): v for k, v in _headers(payload.get("headers"), "payload 'headers'", Fail).items()}}
    url, credentials = _without_credentials(parts)
    if credentials and "authorization" not in headers:
        headers["authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    body = _body(payload, headers)
    method = payload.get("method") or ("POST" if body is not None else "GET")
    if not isinstance(method, str) or not method.isalpha():
        raise Fail(f"payload 'method' must be an HTTP method name, got {method!r}")
    return Request(method.upper(), url, shown, headers, body, _timeout(payload, options),
                   _expect(payload.get("expect")))


def _split_url(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise Fail("payload 'url' is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Fail(f"payload 'url' must be an http:// or https:// URL with a host, got scheme {parts.scheme!r}")
    return parts


def _shown(parts: SplitResult) -> str:
    """scheme://host[:port]/path: no credentials, no query (tokens often ride in it)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}" + ("?..." if parts.query else "")


def _without_credentials(parts: SplitResult) -> tuple[str, str | None]:
    if "@" not in parts.netloc:
        return parts.geturl(), None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), f"{unquote(user)}:{unquote(password)}"


def _headers(value: Any, where: str, error: type[Exception]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error(f"{where}: expected a mapping of header names to strings")
    for name, item in value.items():
        if not isinstance(name, str) or not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise error(f"{where}: header {name!r} must have a string value")  # the value is never shown
        if any(c in f"{name}{item}" for c in "\r\n\0"):
            raise error(f"{where}: header {name!r} contains a line break")
    return {name: str(item) for name, item in value.items()}


def _body(payload: dict[str, Any], headers: dict[str, str]) -> bytes | None:
    if "json" in payload and "body" in payload:
        raise Fail("payload may carry 'json' or 'body', not both")
    if "json" in payload:
        headers.setdefault("content-type", "application/json")
        return json.dumps(payload["json"], separators=(",", ":"), ensure_ascii=False).encode()
    body = payload.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        raise Fail("payload 'body' must be a string (use 'json' for structured data)")
    headers.setdefault("content-type", "text/plain; charset=utf-8")
    return body.encode()


def _timeout(payload: dict[str, Any], options: FetchOptions) -> float:
    value = payload.get("timeout", options.timeout)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 86400:
        raise Fail(f"payload 'timeout' must be a number of seconds > 0, got {value!r}")
    return float(value)


def _expect(value: Any) -> frozenset[int]:
    if value is None:
        return DEFAULT_EXPECT
    items = value if isinstance(value, list) else [value]
    codes: set[int] = set()
    for item in items:
        codes |= _status_set(item)
    if not codes:
        raise Fail("payload 'expect' lists no status")
    return frozenset(codes)


def _status_set(item: Any) -> set[int]:
    if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
        return {item}
    if isinstance(item, str):
        text = item.strip().lower()
        if len(text) == 3 and text[0] in "12345" and text[1:] == "xx":
            first = int(text[0]) * 100
            return set(range(first, first + 100))
        low, sep, high = text.partition("-")
        if sep and low.isdigit() and high.isdigit() and 100 <= int(low) <= int(high) <= 599:
            return set(range(int(low), int(high) + 1))
    raise Fail(f"payload 'expect': {item!r} is not a status, a range such as 200-299 or a class such as 2xx")


# --- what a response means -------------------------------------------------------------


def judge(request: Request, status: int, reason: str, headers: Mapping[str, str], now: float) -> None:
    """Raise Retry or Fail for a status the job did not expect; return for one it did."""
    if status in request.expect:
        return
    what = f"HTTP {status} {reason}".rstrip() + f" from {request.method} {request.shown}"
    if status in (429, 503):
        delay = retry_after(headers.get("retry-after"), now)
        if delay is not None:
            raise Retry(delay=delay, reason=f"{what} (Retry-After {delay:g}s)")
    if status in RETRY_STATUSES:
        raise Retry(reason=what)
    raise Fail(what)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def network_error(request: Request, error: Exception) -> Retry:
    """A Retry describing a transport failure in our own words: library messages may quote the full URL."""
    kinds: tuple[tuple[type[Exception], str], ...] = (
        (NameResolutionError, "host name did not resolve"), (socket.gaierror, "host name did not resolve"), (ConnectTimeoutError, "connect timed out"),
        (NewConnectionError, "connection failed"), (ReadTimeoutError, "read timed out"),
        (SSLError, "TLS failed"), (EmptyPoolError, "no free connection"), (TimeoutError, "timed out"),
    )
    chain = _chain(error)
    kind = next((text for e in chain for cls, text in kinds if isinstance(e, cls)), "connection broken")
    cause = next((e for e in reversed(chain) if isinstance(e, OSError) and e.strerror), None)
    detail = f" ({type(cause).__name__}: {cause.strerror})" if cause is not None else ""
    return Retry(reason=f"{kind}{detail}: {request.method} {request.shown}")


def _chain(error: BaseException) -> list[BaseException]:
    """The error, the errors it wraps (as arguments or causes), outermost first."""
    found: list[BaseException] = []
    todo = [error]
    while todo and len(found) < 10:
        e = todo.pop(0)
        if e in found:
            continue
        found.append(e)
        todo += [a for a in e.args if isinstance(a, BaseException)]
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
    return found


# --- the handler -----------------------------------------------------------------------


class Fetch:
    """The handler built once per route: one pool manager, shared by every job of the route."""

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(options)
        self._pools = _pool_manager(self.options)

    def __repr__(self) -> str:
        return f"Fetch({self.options!r})"

    def __call__(self, job: Job) -> dict[str, Any]:
        request = parse_request(job.payload, self.options)
        try:
            response = self._pools.urlopen(
                request.method, request.url, body=request.body, headers=request.headers,
                redirect=False, retries=False, preload_content=False,
                timeout=urllib3.Timeout(connect=request.timeout, read=request.timeout))
        except RefusedAddress as e:
            raise Fail(f"{e} (url {request.shown})") from None
        except LocationParseError:
            raise Fail(f"payload 'url' is not a valid URL: {request.shown}") from None
        except (HTTPError, OSError) as e:
            raise network_error(request, e) from None
        try:
            result = self._result(request, response)
        finally:
            response.release_conn()
        judge(request, response.status, response.reason or "", response.headers, time.time())
        return result

    def _result(self, request: Request, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
        limit = self.options.max_body
        try:
            data = response.read(limit + 1)
        except (HTTPError, OSError) as e:
            raise network_error(request, e) from None
        truncated = len(data) > limit
        if truncated:  # reading the rest could be unbounded: give up this connection instead
            data = data[:limit]
            response.close()
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        return {"status": response.status, "headers": headers,
                "body": data.decode(_charset(headers.get("content-type")), "replace"), "truncated": truncated}


def _charset(content_type: str | None) -> str:
    message = email.message.Message()
    message["content-type"] = content_type or "text/plain"
    charset = message.get_content_charset() or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


fetch = Fetch  # DESIGN.md routes to geoq.handlers.http:fetch; a class there is built once per route


# --- pools -------------------------------------------------------------------------------


def _pool_manager(options: FetchOptions) -> urllib3.PoolManager:
    """block=True: a host's pool never opens more than max_connections; jobs beyond wait for one."""
    manager = urllib3.PoolManager(num_pools=NUM_POOLS, maxsize=options.max_connections, block=True, retries=False)
    if options.guard.block_private_networks:
        manager.pool_classes_by_scheme = {"http": _guarded_pool(urllib3.HTTPConnectionPool, options.guard),
                                          "https": _guarded_pool(urllib3.HTTPSConnectionPool, options.guard)}
    return manager


def _guarded_pool(pool_cls: type, guard: NetGuard) -> type:
    return type(f"Guarded{pool_cls.__name__}", (pool_cls,),
                {"ConnectionCls": _guarded_connection(pool_cls.ConnectionCls, guard)})


def _guarded_connection(connection_cls: type[HTTPConnection], guard: NetGuard) -> type[HTTPConnection]:
    """A connection class that connects only to addresses the guard vetted, so DNS cannot change in between."""

    class GuardedConnection(connection_cls):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> Any:
            name = self._dns_host
            addresses = guard.resolve(name, self.port)
            error: Exception | None = None
            try:
                for address in addresses:  # urllib3 resolves an address to itself, then connects
                    self._dns_host = address
                    try:
                        return super()._new_conn()
                    except (NewConnectionError, ConnectTimeoutError) as e:
                        error = e
            finally:
                self._dns_host = name
            assert error is not None
            raise error

    GuardedConnection.__name__ = f"Guarded{connection_cls.__name__}"
    return GuardedConnection

