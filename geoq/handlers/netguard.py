"""Which hosts a URL taken from a job may reach. Pure, except for the DNS look-up in `resolve`.

Two independent rules, both applied when set:

- ``allow_hosts``: patterns a URL's host must match. ``example.com`` matches that
  name only, ``*.example.com`` any name under it (not the name itself), ``*``
  anything, an IP address that address, and a network such as ``10.1.0.0/16``
  any IP address written in a URL inside it. Matching ignores case and a
  trailing dot.
- ``block_private_networks``: every address the host resolves to must be
  globally routable: no loopback, link-local, private, unique-local,
  unspecified, multicast or reserved address, whether written out, spelled in
  another notation (``2130706433``, ``0x7f.1``) or embedded in an IPv6 address
  (IPv4-mapped, 6to4, Teredo, NAT64).

The block is checked on the addresses a connection is actually made to
(`connect` opens sockets only to the addresses `resolve` vetted), so a name
whose DNS answer changes between check and connect (DNS rebinding) is
refused as well. `Addresses` keeps each host's vetted answer for a while and
connects only to it (the answer is pinned), so a rebinding answer is vetted
like any other before any socket is opened to it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Union

from geoq.errors import GeoqError

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")


class RefusedAddress(GeoqError):
    """A URL's host is not one a route may reach. The message names the host and the rule, never the URL."""


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allow_hosts entry, parsed once at start-up."""

    text: str
    suffix: str | None = None            # "*.example.com" -> ".example.com"
    network: IPNetwork | None = None     # an address or network
    any_host: bool = False

    def matches(self, host: str) -> bool:
        if self.any_host:
            return True
        if self.network is not None:
            ip = parse_ip(host)
            return ip is not None and ip.version == self.network.version and ip in self.network
        if self.suffix is not None:
            return host.endswith(self.suffix) and len(host) > len(self.suffix)
        return host == self.text


def parse_pattern(text: object) -> HostPattern:
    """An allow_hosts pattern; ValueError with a one-line reason for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"allow_hosts: expected host name patterns (strings), got {text!r}")
    pattern = normalise_host(text.strip())
    if pattern == "*":
        return HostPattern(pattern, any_host=True)
    try:
        return HostPattern(pattern, network=ipaddress.ip_network(pattern.strip("[]"), strict=False))
    except ValueError:
        pass
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if not name or "*" in name or "/" in name or ":" in name or " " in name:
        raise ValueError(f"allow_hosts: {text!r} is not a host name, *.domain, *, an IP address or a network")
    return HostPattern(pattern, suffix="." + name) if pattern.startswith("*.") else HostPattern(pattern)


def normalise_host(host: str) -> str:
    return host.lower().rstrip(".")


def parse_ip(host: str) -> IPAddress | None:
    """The address a host names literally (IPv6 with or without brackets), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def non_public(ip: IPAddress) -> str | None:
    """Why an address is not globally routable (e.g. "loopback"), or None when it is."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner = non_public(embedded)
        return f"{inner} (IPv4 {embedded} embedded)" if inner else None
    checks = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
              ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
              ("unique-local", ip in _UNIQUE_LOCAL if ip.version == 6 else False),
              ("private", ip.is_private), ("shared (carrier-grade NAT)", ip in _SHARED if ip.version == 4 else False),
              ("reserved", ip.is_reserved))
    for name, hit in checks:
        if hit:
            return f"{name} address"
    return None if ip.is_global else "address not globally routable"


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class NetGuard:
    """A route's rules for the hosts its URLs may name. The default guard allows everything."""

    allow_hosts: tuple[HostPattern, ...] = ()
    block_private_networks: bool = False

    @classmethod
    def build(cls, allow_hosts: Iterable[object] | None, block_private_networks: bool) -> "NetGuard":
        return cls(tuple(parse_pattern(p) for p in allow_hosts or ()), block_private_networks)

    @property
    def active(self) -> bool:
        return bool(self.allow_hosts) or self.block_private_networks

    def check_host(self, host: str) -> None:
        """Refuse a host before any look-up: the allow list, and an address written out in the URL."""
        if not self.active:
            return
        name = normalise_host(host)
        if self.allow_hosts and not any(p.matches(name) for p in self.allow_hosts):
            raise RefusedAddress(f"host {name!r} is not in allow_hosts")
        ip = parse_ip(name)
        if self.block_private_networks and ip is not None:
            self._check_address(name, ip)

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for host:port, each checked; RefusedAddress if any is not public.

        Every address of the answer must pass, not only the first: a client may
        fall back to any of them.
        """
        return [str(sockaddr[0]) for _family, sockaddr in self.vetted(host, port)]

    def vetted(self, host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        """resolve's answer as (address family, socket address) pairs, each address once, in DNS order."""
        found: dict[str, tuple[int, tuple[Any, ...]]] = {}
        for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            found.setdefault(str(sockaddr[0]), (int(family), tuple(sockaddr)))
        if self.block_private_networks:
            for text in found:
                ip = parse_ip(text)
                if ip is None:
                    raise RefusedAddress(f"host {normalise_host(host)!r} resolves to {text!r}, which is not an address")
                self._check_address(normalise_host(host), ip)
        return list(found.values())

    def connect(self, address: tuple[str, int], timeout: float | None = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """socket.create_connection, but only to addresses `resolve` vetted (a drop-in for http.client)."""
        host, port = address
        return open_socket(self.vetted(host, port), timeout, source_address)

    @staticmethod
    def _check_address(host: str, ip: IPAddress) -> None:
        why = non_public(ip)
        if why is None:
            return
        target = str(ip) if parse_ip(host) is not None else f"{host!r}, which resolves to {ip}"
        raise RefusedAddress(f"block_private_networks refuses {target}: {why}")


def open_socket(addresses: list[tuple[int, tuple[Any, ...]]], timeout: float | None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
    """A socket connected to the first of `addresses` that accepts (socket.create_connection's fallback,
    with no look-up: the addresses are already vetted); the last failure when none does."""
    error: OSError | None = None
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            sock.close()
            error = e
    assert error is not None  # getaddrinfo answers at least one address or raises
    raise error


class Addresses:
    """Each host's vetted addresses (NetGuard.vetted), kept `ttl` seconds, for the `size` hosts looked up last.

    Why: a look-up per connection goes through gevent's resolver (a thread pool round trip even
    for an address written out), which cost a fifth of the CPU of a request on a connection
    the server closes. Only vetted answers are kept, and sockets open only to them; a refusal
    or a failed look-up is not kept, so the next job asks again.
    """

    def __init__(self, guard: NetGuard, ttl: float = 30.0, size: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.guard, self.ttl, self.size, self._clock = guard, ttl, size, clock
        self._kept: dict[tuple[str, int], tuple[float, list[tuple[int, tuple[Any, ...]]]]] = {}

    def lookup(self, host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        """host:port's vetted (family, socket address) pairs, from the cache while fresh."""
        now = self._clock()
        kept = self._kept.get((host, port))
        if kept is not None and kept[0] > now:
            return kept[1]
        addresses = self.guard.vetted(host, port)  # raises RefusedAddress or OSError: nothing kept
        self._kept.pop((host, port), None)
        if len(self._kept) >= self.size:
            self._kept.pop(next(iter(self._kept)), None)  # the oldest entry
        self._kept[(host, port)] = (now + self.ttl, addresses)
        return addresses

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        return open_socket(self.lookup(host, port), timeout)
