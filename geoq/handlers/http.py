"""`geoq.handlers.http:fetch` — one HTTP request per job over pooled keep-alive connections.

Route options (all optional; checked once when the worker starts):

    timeout: 10s                 connect and read timeout of each request (a payload may ask for less or more)
    max_connections: 100         open connections per host; more jobs for one host wait for a free one
    max_body: 64kb               response bytes kept in the result; the rest is not read
    headers: {}                  default request headers (may hold secrets: they never reach results or logs)
    allow_hosts: []              host patterns a URL may name (empty: any); see geoq.handlers.netguard
    block_private_networks: false   refuse hosts that are or resolve to loopback, private, link-local ... addresses
    idempotency_key: (by method)    send `Idempotency-Key: <job id>`; default true for POST, PUT and PATCH

Payload: ``{url, method?, headers?, json? | body?, timeout?, expect?}``. The
method defaults to GET, or POST when the job carries a json or body. `expect`
lists the statuses that count as success: numbers, ranges "200-299" or
classes "2xx" (default: 200-299). Redirects are not followed; list 3xx in
`expect` to accept them and read the result's `location`.

Each request carries ``Idempotency-Key: <job id>`` (unless the payload sets its own), so a job
run twice after a worker's crash is recognisable at the other end: by default for POST, PUT and
PATCH, or always / never with the option.

Outcome: an expected status returns ``{"status", "headers", "body",
"truncated"}`` (headers: content-type, content-length, location, etag if
present; body: text cut at max_body). 429, and 503 with a Retry-After, raise
geoq.errors.Throttled: a retry after their Retry-After (seconds or an HTTP date),
or with the route's backoff when a 429 names none, and on a route with
``limits.adaptive`` a pause of the job's key for every worker instead; 408 and 5xx
retry with the route's backoff, as do network errors and timeouts; any other
status, a malformed payload and a refused host fail at once. Error messages
show the method and the URL without its query string or credentials.

The client is geoq.handlers.wire (HTTP/1.1 on one socket, with http.client's
wire behaviour and exception classes) behind a small pool per host
(`HostPools`). In bare gevent loops at concurrency 1,000 (bench/io_handlers.py
cpu, row 4) it spent 95 us of CPU per keep-alive request where http.client
spent 154 and geventhttpclient 162, and 229 us per new connection where they
spent 330 and 322; it adds no dependency (http.client had spent half the CPU
of urllib3). Each host's resolved addresses are kept for 30 s
(netguard.Addresses). The pools use the
threading module, so they are thread-safe in a plain program and cooperative
in the monkeypatched worker.
"""

from __future__ import annotations

import base64
import email.message
import email.utils
import http.client
import functools
import json
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple
from urllib.parse import SplitResult, quote, unquote, urlsplit

from geoq.config.schema import Check, Invalid, boolean, duration, integer, size
from geoq.errors import ConfigError, Fail, Retry, Throttled
from geoq.handlers.netguard import Addresses, NetGuard, RefusedAddress
from geoq.handlers.options import checked
from geoq.handlers.pools import ConnectionPool, Stale, discard
from geoq.handlers.wire import Answer, Wire, check_host, host_header, request_head
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
    idempotency_key: bool | None = None   # None: for POST, PUT and PATCH only

    def __repr__(self) -> str:  # default headers may hold credentials
        return (f"FetchOptions(timeout={self.timeout}, max_connections={self.max_connections}, "
                f"max_body={self.max_body}, headers=<{len(self.headers)} hidden>, guard={self.guard})")


def _host_patterns(value: Any) -> list[str]:
    """allow_hosts: one pattern or a list of them; null or empty: none. NetGuard.build checks each."""
    patterns = value or []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list):
        raise Invalid("a list of host patterns")
    return patterns


def _default_headers(value: Any) -> MappingProxyType[str, str]:
    return MappingProxyType(_headers(value, "option 'headers'", ConfigError))  # its values never shown


_CHECKS: dict[str, Check] = {
    "timeout": duration(positive=True),
    "max_connections": integer(1),
    "max_body": size(0, "0"),
    "headers": _default_headers,
    "allow_hosts": _host_patterns,
    "block_private_networks": boolean,
    "idempotency_key": boolean,
}


def parse_options(given: Mapping[str, Any]) -> FetchOptions:
    """Route options -> FetchOptions; ConfigError naming the option for anything wrong."""
    values = checked(given, _CHECKS)
    try:
        guard = NetGuard.build(values.pop("allow_hosts", []), values.pop("block_private_networks", False))
    except ValueError as e:
        raise ConfigError(f"option {e}") from None
    return FetchOptions(guard=guard, **values)


# --- the request a job asks for ------------------------------------------------------


class Request(NamedTuple):  # a tuple: built once per job, a third of a frozen dataclass's cost
    method: str
    origin: tuple[str, str, int]   # scheme, host, port: the pool it uses
    target: str                    # path and query, as sent
    shown: str                     # the URL as messages may show it
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    expect: frozenset[int]
    head: bytes                    # the request line and headers, as sent

    def __repr__(self) -> str:  # headers and body may hold credentials
        return f"Request({self.method} {self.shown}, timeout={self.timeout})"


class Origin(NamedTuple):
    """What a URL's scheme and netloc decide, worked out once per netloc (see Origins)."""

    key: tuple[str, str, int]      # scheme, host, port: the pool it uses
    shown: str                     # scheme://host[:port], as messages may show it
    host_header: str
    authorization: str | None      # Basic credentials written in the URL


class Origins:
    """Each netloc's Origin, for the `size` netlocs seen last.

    Why: urllib's hostname and port properties parse the netloc again on each
    read (eight reads a request), and the guard's verdict on a host name is the
    same every time (addresses are vetted when connecting, netguard.Addresses).
    A refused or malformed netloc is not kept."""

    def __init__(self, guard: NetGuard, size: int = 1024) -> None:
        self.guard, self.size = guard, size
        self._kept: dict[tuple[str, str], Origin] = {}

    def get(self, parts: SplitResult) -> Origin:
        """Fail for a URL with no valid port or host or another scheme; RefusedAddress from the guard."""
        found = self._kept.get((parts.scheme, parts.netloc))
        if found is None:
            found = _origin(parts, self.guard)
            if len(self._kept) >= self.size:
                self._kept.pop(next(iter(self._kept)), None)
            self._kept[(parts.scheme, parts.netloc)] = found
        return found


def _origin(parts: SplitResult, guard: NetGuard) -> Origin:
    try:
        port = parts.port
    except ValueError:  # a port out of range
        raise Fail("payload 'url' is not a valid URL") from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise Fail(f"payload 'url' must be an http:// or https:// URL with a host, got scheme {parts.scheme!r}")
    guard.check_host(host)
    default_port = 443 if parts.scheme == "https" else 80
    shown = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{f':{port}' if port else ''}"
    credentials = _credentials(parts)
    authorization = "Basic " + base64.b64encode(credentials.encode()).decode() if credentials else None
    return Origin((parts.scheme, host, port or default_port), shown, host_header(host, port or default_port,
                  default_port), authorization)


_PAYLOAD_KEYS = frozenset({"url", "method", "headers", "json", "body", "timeout", "expect"})


def parse_request(payload: Any, options: FetchOptions, origins: Origins | None = None,
                  job_id: str | None = None) -> Request:
    """The payload as a Request; Fail (no retry can fix it) when it is malformed or its host refused.

    `origins` keeps what each netloc decides (a handler passes its own); without it, it is worked out anew.
    `job_id` becomes the Idempotency-Key header where the options call for one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
        raise Fail("payload must be an object with a 'url' string")
    if not payload.keys() <= _PAYLOAD_KEYS:
        raise Fail(f"unknown payload key {sorted(set(payload) - _PAYLOAD_KEYS)[0]!r}")
    parts = _split_url(payload["url"])
    try:
        origin = (origins or Origins(options.guard)).get(parts)
    except RefusedAddress as e:
        raise Fail(f"{e} (url {_shown(parts)})") from None
    shown = origin.shown + (parts.path or "/") + ("?..." if parts.query else "")
    headers = {"user-agent": USER_AGENT, **{k.lower(): v for k, v in options.headers.items()}}
    if payload.get("headers") is not None:
        headers.update({k.lower(): v for k, v in _headers(payload["headers"], "payload 'headers'", Fail).items()})
    if origin.authorization and "authorization" not in headers:
        headers["authorization"] = origin.authorization
    body = _body(payload, headers)
    method = payload.get("method") or ("POST" if body is not None else "GET")
    if not isinstance(method, str) or not method.isalpha():
        raise Fail(f"payload 'method' must be an HTTP method name, got {method!r}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _PLAIN_TARGET.fullmatch(target):  # spaces, non-ASCII: quote what is not already valid
        target = quote(parts.path or "/", safe=_SAFE) + (f"?{quote(parts.query, safe=_SAFE)}" if parts.query else "")
    method = method.upper()
    if job_id is not None and _wants_key(options, method):
        headers.setdefault("idempotency-key", job_id)
    return Request(method, origin.key, target, shown, headers, body, _timeout(payload, options),
                   _expect(payload.get("expect")), request_head(method, target, origin.host_header, headers, body))


IDEMPOTENT_BY_DEFAULT = frozenset({"POST", "PUT", "PATCH"})   # methods a retry could repeat with effect


def _wants_key(options: FetchOptions, method: str) -> bool:
    return method in IDEMPOTENT_BY_DEFAULT if options.idempotency_key is None else options.idempotency_key


_SAFE = "/?&=%:@!$'()*+,;~-._[]"  # already-valid URL characters stay as written; spaces and non-ASCII are quoted
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9/?&=%:@!$'()*+,;~._\[\]-]+")


def _split_url(url: str) -> SplitResult:
    """The URL's parts; its port, scheme and host are checked by Origins."""
    try:
        return urlsplit(url.strip())
    except ValueError:
        raise Fail("payload 'url' is not a valid URL") from None


def _shown(parts: SplitResult) -> str:
    """scheme://host[:port]/path: no credentials, no query (tokens often ride in it)."""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/'}" + ("?..." if parts.query else "")


def _credentials(parts: SplitResult) -> str | None:
    """user:password written in the URL, sent as Basic auth (http.client would not)."""
    if "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    return f"{unquote(user)}:{unquote(password)}"


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


def judge(request: Request, status: int, reason: str, retry_after_value: str | None, now: float) -> None:
    """Raise Retry or Fail for a status the job did not expect; return for one it did."""
    if status in request.expect:
        return
    what = f"HTTP {status} {reason}".rstrip() + f" from {request.method} {request.shown}"
    if status in (429, 503):
        delay = retry_after(retry_after_value, now)
        if delay is not None:
            raise Throttled(delay=delay, reason=f"{what} (Retry-After {delay:g}s)")
        if status == 429:  # too many requests, no time named: the route's backoff, or its pause default
            raise Throttled(reason=what)
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


def network_error(request: Request, error: BaseException) -> Retry:
    """A Retry describing a transport failure in our own words (never the query string or headers)."""
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (socket.gaierror, "host name did not resolve"), (ConnectionRefusedError, "connection refused"),
        (TimeoutError, "timed out"), (ssl.SSLCertVerificationError, "TLS certificate not trusted"),
        (ssl.SSLError, "TLS failed"), (http.client.RemoteDisconnected, "server closed the connection"),
        (http.client.HTTPException, "malformed response"), (ConnectionError, "connection broken"),
    )
    kind = next((text for cls, text in kinds if isinstance(error, cls)), "network error")
    detail = f" ({type(error).__name__}: {error.strerror})" if isinstance(error, OSError) and error.strerror else ""
    return Retry(reason=f"{kind}{detail}: {request.method} {request.shown}")


# --- connections ---------------------------------------------------------------------------


HostPool = ConnectionPool[Wire]  # the connections to one origin


class HostPools:
    """One HostPool per origin, for the NUM_POOLS origins used last (older pools close their idle connections)."""

    def __init__(self, options: FetchOptions) -> None:
        self.options = options
        self._tls = ssl.create_default_context()
        self._tls.set_alpn_protocols(["http/1.1"])  # as http.client's own HTTPS context offers
        self._addresses = Addresses(options.guard)   # vetted, and the only addresses connected to
        self._pools: OrderedDict[tuple[str, str, int], HostPool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, origin: tuple[str, str, int]) -> HostPool:
        pool = self._pools.get(origin)
        if pool is not None and not pool.closed:  # the common case takes no lock (a lock is a hub round trip)
            try:
                self._pools.move_to_end(origin)
                return pool
            except KeyError:
                pass  # evicted meanwhile
        with self._lock:
            pool = self._pools.get(origin)
            if pool is None:
                pool = self._pools[origin] = HostPool(self.options.max_connections, lambda: self._connection(origin))
                if len(self._pools) > NUM_POOLS:
                    self._pools.popitem(last=False)[1].close()
            else:
                self._pools.move_to_end(origin)
            return pool

    def _connection(self, origin: tuple[str, str, int]) -> Wire:
        scheme, host, port = origin
        check_host(host)  # where http.client checked it: a Retry as a malformed request, before any look-up
        sock = self._addresses.connect(host, port, self.options.timeout)
        if scheme == "https":
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return Wire(sock)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def exchange(conn: Wire, request: Request, max_body: int, reused: bool) -> Answer:
    """Send the request and read at most max_body bytes of the answer (truncated says whether there was more)."""
    if conn.sock is not None:
        conn.sock.settimeout(request.timeout)
    data = request.head + request.body if request.body is not None else request.head
    try:
        return conn.exchange(data, request.method, max_body)
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
        if reused:
            raise Stale("connection closed before the server answered") from e
        raise


# --- the handler -----------------------------------------------------------------------


class Fetch:
    """The handler built once per route: its options and its connection pools, shared by every job of the route."""

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(options)
        self.pools = HostPools(self.options)
        self.origins = Origins(self.options.guard)

    def __repr__(self) -> str:
        return f"Fetch({self.options!r})"

    def __call__(self, job: Job) -> dict[str, Any]:
        request = parse_request(job.payload, self.options, self.origins, job.id)
        pool = self.pools.get(request.origin)
        try:  # the pool replaces a reused connection the server closed while idle (nothing was answered)
            answer = pool.use(lambda conn, reused: self._on(pool, conn, request, reused=reused))
        except RefusedAddress as e:
            raise Fail(f"{e} (url {request.shown})") from None
        except (OSError, http.client.HTTPException) as e:
            raise network_error(request, e) from None
        if answer.status not in request.expect:
            judge(request, answer.status, answer.reason, answer.headers.get("retry-after"), time.time())
        headers = {name: answer.headers[name] for name in KEPT_HEADERS if name in answer.headers}
        return {"status": answer.status, "headers": headers,
                "body": answer.body.decode(_charset(headers.get("content-type")), "replace"),
                "truncated": answer.truncated}

    def _on(self, pool: HostPool, conn: Wire, request: Request, *, reused: bool) -> Answer:
        """One exchange on conn; conn goes back to the pool only when its answer was read to the end
        and neither side asked to close."""
        keep = False
        try:
            answer = exchange(conn, request, self.options.max_body, reused)
            keep = answer.reusable
            return answer
        finally:
            if keep:
                pool.give(conn)
            else:  # unread body, a timeout, an error, or a server that will close: never reuse
                discard(conn)

    def close(self) -> None:
        """Close idle connections (the worker simply exits; tests and scripts may call this)."""
        self.pools.close()


@functools.lru_cache(maxsize=256)
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
