"""geoq.handlers.wire against a real socket server that answers canned bytes, and netguard.Addresses."""

from __future__ import annotations

import http.client
import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from geoq.handlers.netguard import Addresses, NetGuard, RefusedAddress
from geoq.handlers.wire import Wire, check_host, host_header, request_head

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Canned:
    """A server on 127.0.0.1 answering its one connection's requests with the given bytes, in turn;
    it records each request and closes the connection after the last answer."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers, self.requests, self.connections = answers, [], 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.connections += 1
        with conn:
            for answer in self.answers:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                self.requests.append(data)
                conn.sendall(answer)

    def wire(self) -> Wire:
        return Wire(socket.create_connection(("127.0.0.1", self.port), timeout=5))


@contextmanager
def canned(*answers: bytes) -> Iterator[Canned]:
    server = Canned(list(answers))
    try:
        yield server
    finally:
        server.listener.close()
        server.thread.join(5)


def test_a_content_length_answer_is_read_whole_and_the_connection_reused():
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    with canned(ok, ok) as server:
        wire = server.wire()
        first = wire.exchange(GET, "GET", 100)
        second = wire.exchange(GET, "GET", 100)
        wire.close()
    assert first == second
    assert (first.status, first.reason, first.body, first.truncated, first.reusable) == (200, "OK", b"hello", False, True)
    assert first.headers == {"content-type": "text/plain", "content-length": "5"}


def test_a_chunked_body_is_joined_with_extensions_and_trailers_skipped():
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    with canned(answer, answer) as server:
        wire = server.wire()
        assert wire.exchange(GET, "GET", 100)[3:] == (b"hello world", False, True)
        assert wire.exchange(GET, "GET", 100).body == b"hello world"


def test_a_chunked_body_beyond_max_body_is_cut_without_reading_the_rest():
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n100000\r\n" + b"x" * 10
    with canned(answer) as server:
        result = server.wire().exchange(GET, "GET", 8)
    assert (result.body, result.truncated, result.reusable) == (b"abcxxxxx", True, False)


def test_a_body_without_length_is_read_until_the_server_closes_and_the_connection_not_reused():
    with canned(b"HTTP/1.1 200 OK\r\n\r\nuntil the end") as server:
        result = server.wire().exchange(GET, "GET", 100)
    assert (result.body, result.truncated, result.reusable) == (b"until the end", False, False)


def test_http_1_0_closes_unless_it_asks_to_keep_alive_and_1_1_closes_when_it_says_so():
    answers = [b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]
    with canned(*answers) as server:
        wire = server.wire()
        assert [wire.exchange(GET, "GET", 10).reusable for _ in answers] == [False, True, False]


def test_interim_answers_are_skipped_and_bare_line_feeds_accepted():
    answer = b"HTTP/1.1 100 Continue\n\nHTTP/1.1 103 Early Hints\nLink: </a>\n\nHTTP/1.1 201 Created\nContent-Length: 2\n\nok"
    with canned(answer) as server:
        result = server.wire().exchange(GET, "GET", 100)
    assert (result.status, result.reason, result.body, result.reusable) == (201, "Created", b"ok", True)


def test_head_and_204_answers_have_no_body_to_read():
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"]
    with canned(*answers) as server:
        wire = server.wire()
        head, empty = wire.exchange(GET, "HEAD", 10), wire.exchange(GET, "GET", 10)
    assert (head.body, head.reusable, empty.status, empty.body, empty.reusable) == (b"", True, 204, b"", True)


def test_repeated_and_folded_headers_read_as_http_client_reads_them():
    answer = (b"HTTP/1.1 503 Busy\r\nETag: one\r\nETag: two\r\nRetry-After: 7\r\nRetry-After: 8\r\n"
              b"X-Long: a\r\n  b\r\nContent-Length: 0\r\n\r\n")
    with canned(answer) as server:
        headers = server.wire().exchange(GET, "GET", 10).headers
    assert (headers["etag"], headers["retry-after"], headers["x-long"]) == ("one", "7, 8", "a b")


@pytest.mark.parametrize("answer, error", [
    (b"", http.client.RemoteDisconnected),
    (b"NOT HTTP AT ALL\r\n\r\n", http.client.BadStatusLine),
    (b"HTTP/2.0 200 OK\r\n\r\n", http.client.UnknownProtocol),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", http.client.IncompleteRead),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", http.client.IncompleteRead),
    (b"HTTP/1.1 200 OK\r\nContent-Le", http.client.IncompleteRead),
])
def test_a_broken_answer_raises_http_clients_own_error(answer, error):
    with canned(answer) as server:
        wire = server.wire()
        with pytest.raises(error):
            wire.exchange(GET, "GET", 100)


@pytest.mark.parametrize("method, headers, body, host, port", [
    ("GET", {"user-agent": "geoq"}, None, "example.com", 80),
    ("POST", {"user-agent": "geoq", "content-type": "application/json"}, b'{"n":1}', "example.com", 8080),
    ("PUT", {"user-agent": "geoq", "host": "other.example"}, None, "::1", 8080),
    ("DELETE", {"accept-encoding": "gzip", "authorization": "Basic eA=="}, None, "bücher.example", 80),
    ("POST", {"content-length": "3"}, b"abc", "127.0.0.1", 80),
])
def test_the_request_head_is_the_bytes_http_client_sends(method, headers, body, host, port):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn = http.client.HTTPConnection(host, port)
        conn.sock = ours
        conn.request(method, "/p?q=1", body=body, headers=headers)
        sent = theirs.recv(65536)
    assert request_head(method, "/p?q=1", host_header(host, port, 80), headers, body) + (body or b"") == sent


def test_header_names_and_values_http_client_refuses_are_refused_with_its_error():
    with pytest.raises(ValueError, match="Invalid header name"):
        request_head("GET", "/", "x", {"bad:name": "v"}, None)
    with pytest.raises(UnicodeEncodeError, match="latin-1"):
        request_head("GET", "/", "x", {"x-name": "\u2603"}, None)
    with pytest.raises(http.client.InvalidURL):
        check_host("a b")


# --- netguard.Addresses: each host's vetted answer, kept a while -----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_its_ttl_then_looked_up_again():
    clock = Clock()
    addresses = Addresses(NetGuard(), ttl=30, clock=clock)
    first = addresses.lookup("127.0.0.1", 80)
    clock.now = 29
    assert addresses.lookup("127.0.0.1", 80) is first
    clock.now = 31
    again = addresses.lookup("127.0.0.1", 80)
    assert again is not first and again == first == [(socket.AF_INET, ("127.0.0.1", 80))]


def test_only_the_hosts_looked_up_last_are_kept():
    addresses = Addresses(NetGuard(), size=2)
    first = addresses.lookup("127.0.0.1", 1)
    addresses.lookup("127.0.0.1", 2)
    addresses.lookup("127.0.0.1", 3)
    assert addresses.lookup("127.0.0.1", 1) is not first


def test_a_refused_answer_is_never_kept_nor_connected_to():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    addresses = Addresses(NetGuard.build([], block_private_networks=True))
    with listener:
        for _ in range(2):
            with pytest.raises(RefusedAddress, match="block_private_networks refuses 'localhost'"):
                addresses.connect("localhost", listener.getsockname()[1], 1)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert addresses._kept == {}
