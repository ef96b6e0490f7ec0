"""URL host safety: allow_hosts patterns and the private-network block, decided on resolved addresses."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from geoq.handlers.netguard import NetGuard, RefusedAddress, non_public, parse_pattern

BLOCKING = NetGuard.build(None, block_private_networks=True)


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.9", "private"),
    ("172.16.5.5", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fd00::7", "unique-local"), ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"), ("100.64.0.1", "shared"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"), ("2002:a00:1::", "private"), ("64:ff9b::a9fe:a9fe", "link-local"),
])
def test_non_public_addresses_are_named_by_their_kind(address, why):
    assert why in non_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert non_public(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "10.0.0.8", "169.254.1.1"])
def test_an_address_written_in_the_url_is_refused_before_any_lookup(host):
    with pytest.raises(RefusedAddress, match="block_private_networks refuses"):
        BLOCKING.check_host(host)


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "127.1"])
def test_a_name_or_odd_spelling_that_resolves_to_loopback_is_refused(host):
    with pytest.raises(RefusedAddress, match="loopback"):
        BLOCKING.resolve(host, 80)


def test_connect_never_opens_a_socket_to_a_refused_address():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(0.2)
    try:
        with pytest.raises(RefusedAddress):
            BLOCKING.connect(("localhost", port), 1)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_without_the_block_private_addresses_resolve_and_connect():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        sock = NetGuard().connect(("127.0.0.1", listener.getsockname()[1]), 1)
        sock.close()
    finally:
        listener.close()


@pytest.mark.parametrize("pattern, host, matches", [
    ("api.example.com", "api.example.com", True), ("api.example.com", "API.Example.com.", True),
    ("api.example.com", "x.api.example.com", False), ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False), ("*.example.com", "evilexample.com", False),
    ("*", "anything.test", True), ("10.0.0.0/8", "10.2.3.4", True), ("10.0.0.0/8", "11.0.0.1", False),
    ("::1", "[::1]", True), ("10.0.0.0/8", "ten.example", False),
])
def test_allow_host_patterns(pattern, host, matches):
    guard = NetGuard.build([pattern], block_private_networks=False)
    if matches:
        guard.check_host(host)
    else:
        with pytest.raises(RefusedAddress, match="not in allow_hosts"):
            guard.check_host(host)


@pytest.mark.parametrize("pattern", ["", "a*.example.com", "http://x.com", 7, "exa mple.com"])
def test_a_malformed_pattern_is_an_error_at_start_up(pattern):
    with pytest.raises(ValueError, match="allow_hosts"):
        parse_pattern(pattern)
